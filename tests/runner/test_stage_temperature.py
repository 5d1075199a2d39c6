"""A training stage at another temperature (``train.temperature``): parsed, refused with
data, and trained against the tempered target, charged as the system's energy."""

import pytest
import torch
import yaml

import boltzgen.runner.methods.boltzmann_generator as bg_method
from boltzgen.errors import ConfigError
from boltzgen.runner.config import load_experiment
from boltzgen.runner.methods.boltzmann_generator import planned_training_evals, train_generator
from boltzgen.runner.methods.training import TrainParams
from boltzgen.systems import load_system


def _experiment(tmp_path, stage: dict):
    raw = {
        "name": "t",
        "systems": ["correlated_gaussian_4d"],
        "seeds": [0],
        "methods": {
            "bg": {
                "method": "boltzmann_generator",
                "flow": {"n_layers": 2, "hidden": 16},
                "train": stage,
                "finetune": {"loss": "reverse_kl", "steps": 3, "batch_size": 32},
            }
        },
    }
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_experiment(path)


def test_a_stage_temperature_parses_and_stays_out_of_the_hash_at_its_default(tmp_path):
    params = (
        _experiment(tmp_path, {"loss": "fab", "steps": 3, "batch_size": 32, "temperature": 2})
        .methods[0]
        .params
    )
    assert params.train.temperature == 2.0
    assert params.finetune.temperature is None
    assert "temperature" not in bg_method.settings_of(params)["finetune"]


@pytest.mark.parametrize("loss", ["forward_kl", "mixed", "fab_mixed"])
def test_a_stage_temperature_with_data_is_refused(tmp_path, loss):
    with pytest.raises(ConfigError, match="temperature applies to losses without data"):
        _experiment(tmp_path, {"loss": loss, "steps": 3, "temperature": 2.0})


def test_a_non_positive_temperature_is_refused():
    with pytest.raises(ValueError, match="temperature must be positive"):
        TrainParams(loss="reverse_kl", temperature=0.0)


def test_each_stage_trains_on_its_own_temperature_and_is_charged(tmp_path, monkeypatch):
    params = (
        _experiment(
            tmp_path, {"loss": "reverse_kl", "steps": 3, "batch_size": 32, "temperature": 4.0}
        )
        .methods[0]
        .params
    )
    system = load_system("correlated_gaussian_4d")
    seen = []
    real_train = bg_method.train

    def spy(model, energy, config, *args, **kwargs):
        seen.append(energy)
        return real_train(model, energy, config, *args, **kwargs)

    monkeypatch.setattr(bg_method, "train", spy)
    trained = train_generator(system, params, torch.Generator().manual_seed(0), None, False)
    cost = trained.model.training_cost
    # the tempered stage's evaluations land on the system's counter: both stages charged
    assert cost.energy_evals + cost.force_evals == planned_training_evals(params, system)
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    hot, plain = seen
    assert torch.allclose(hot.energy(x), system.energy.energy(x) / 4.0)
    assert plain is system.energy
