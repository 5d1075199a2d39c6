"""Experiment files: typed parsing, overrides, and errors that name file and field."""

from pathlib import Path

import pytest
import yaml

from boltzgen.errors import ConfigError
from boltzgen.runner.config import load_experiment
from boltzgen.runner.methods import METHODS
from boltzgen.runner.methods.boltzmann_generator import planned_training_evals, stages
from boltzgen.runner.tasks import plan
from boltzgen.systems import load_system

BASE = {
    "name": "t",
    "systems": ["double_well_2d"],
    "seeds": [0, 1],
    "methods": {"hmc": {"method": "hmc", "n_chains": 8, "n_steps": 20, "n_warmup": 10}},
}


def write(tmp_path, data):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_quickstart_parses_into_typed_params():
    experiment = load_experiment("experiments/quickstart.yaml")
    kinds = {m.label: m.method for m in experiment.methods}
    assert kinds == {"hmc": "hmc", "bg": "boltzmann_generator"}
    for m in experiment.methods:
        assert isinstance(m.params, METHODS[m.method].params)
    assert len(plan(experiment)) == 2 * 2 * 2


def test_overrides_reach_nested_fields(tmp_path):
    experiment = load_experiment(write(tmp_path, BASE), ["methods.hmc.n_steps=40", "seeds=[3]"])
    assert experiment.methods[0].params.n_steps == 40 and experiment.seeds == [3]


@pytest.mark.parametrize(
    "change, field, choice",
    [
        ({"sytems": ["double_well_2d"]}, "sytems", "systems"),
        ({"systems": ["triple_well"]}, "systems[0]", "double_well_2d"),
        ({"methods": {"x": {"method": "nuts"}}}, "methods.x.method", "hmc"),
        ({"methods": {"hmc": {"method": "hmc", "n_stepz": 5}}}, "methods.hmc.n_stepz", "n_steps"),
        ({"methods": {"hmc": {"method": "hmc", "n_steps": "many"}}}, "methods.hmc.n_steps", None),
        ({"executor": "cloud"}, "executor", "debug"),
        ({"seeds": "zero"}, "seeds", None),
    ],
)
def test_bad_values_name_file_field_and_choices(tmp_path, change, field, choice):
    path = write(tmp_path, {**BASE, **change})
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    message = str(info.value)
    assert str(path) in message and f"`{field}`" in message
    if choice is not None:
        assert choice in message


def test_optional_finetune_stage_parses_and_budget_sizes_the_samples(tmp_path):
    bg = {
        "method": "boltzmann_generator",
        "n_samples": 1000,
        "train": {"loss": "forward_kl", "steps": 1000, "batch_size": 100},
        "finetune": {
            "loss": "reverse_kl",
            "steps": 100,
            "batch_size": 100,
            "lr_schedule": "cosine",
        },
    }
    experiment = load_experiment(write(tmp_path, {**BASE, "methods": {"bg": bg}}))
    params = experiment.methods[0].params
    assert params.finetune.loss == "reverse_kl" and params.finetune.lr_schedule == "cosine"
    system = load_system("double_well_2d")
    data = 20_000  # default n_data exact draws, charged one evaluation each
    fitted = METHODS["boltzmann_generator"].fit_budget(params, 11_000 + data + 5_000, system)
    assert (fitted.train.steps, fitted.finetune.steps, fitted.n_samples) == (1000, 100, 5_000)
    with pytest.raises(ValueError, match="budget"):
        METHODS["boltzmann_generator"].fit_budget(params, 11_000 + data, system)
    assert load_experiment(write(tmp_path, BASE)).methods[0].params is not None


def test_polish_stage_is_planned_after_finetune(tmp_path):
    stage = {"loss": "reverse_kl", "steps": 100, "batch_size": 100}
    bg = {
        "method": "boltzmann_generator",
        "train": {"loss": "reverse_kl", "steps": 100, "batch_size": 100},
        "finetune": stage,
        "polish": {**stage, "steps": 50, "lr_schedule": "cosine"},
    }
    params = load_experiment(write(tmp_path, {**BASE, "methods": {"bg": bg}})).methods[0].params
    assert [name for name, _ in stages(params)] == ["train", "finetune", "polish"]
    system = load_system("double_well_2d")
    assert planned_training_evals(params, system) == 100 * 100 + 100 * 100 + 50 * 100


def test_finetune_with_a_bad_field_names_it(tmp_path):
    bg = {"method": "boltzmann_generator", "finetune": {"los": "reverse_kl"}}
    with pytest.raises(ConfigError, match=r"methods\.bg\.finetune\.los"):
        load_experiment(write(tmp_path, {**BASE, "methods": {"bg": bg}}))


@pytest.mark.parametrize(
    "path", sorted(Path("experiments").glob("lattice*.yaml")), ids=lambda p: p.stem
)
def test_shipped_lattice_experiments_parse_and_plan(path):
    """The lattice experiments need no reference data to plan (the molecular ones read
    their PT sets while fitting budgets)."""
    experiment = load_experiment(path)
    assert plan(experiment)
