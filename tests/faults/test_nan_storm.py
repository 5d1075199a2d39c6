"""NaN storms: a sampler whose every proposal is non-finite ends its task with a clear
error in ``status``; the other tasks of the sweep finish; no result is written for it."""

import torch
import yaml
from torch import Tensor

from boltzgen.energies import Energy, register_energy_kind
from boltzgen.records import Cost, WeightedSamples
from boltzgen.records.cost import EvaluationCounter
from boltzgen.runner.config import parse_experiment
from boltzgen.runner.executors import run_debug
from boltzgen.runner.manifest import task_status, write_manifest
from boltzgen.runner.tasks import plan, unusable


@register_energy_kind("finite_only_at_origin")
class FiniteOnlyAtOrigin(Energy):
    """u = 0 at the origin and NaN everywhere else: every move away is non-finite."""

    def __init__(self, dim: int = 2):
        super().__init__((dim,), temperature=1.0)

    def _energy(self, x: Tensor) -> Tensor:
        zero = torch.zeros_like(x[:, 0])
        return torch.where((x == 0).all(dim=-1), zero, zero + torch.nan)

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._energy(x), torch.ones_like(x)


CARD = {
    "name": "nan_storm",
    "energy": {"kind": "finite_only_at_origin", "params": {"dim": 2}},
    "temperature": 1.0,
    "initial_positions": [0.0, 0.0],
}


def test_a_nan_storm_fails_its_task_and_the_sweep_goes_on(tmp_path):
    card = tmp_path / "nan_storm.yaml"
    card.write_text(yaml.safe_dump(CARD))
    hmc = {"method": "hmc", "n_chains": 4, "n_warmup": 5, "n_steps": 20, "n_leapfrog": 3}
    raw = {
        "name": "storm",
        "systems": [str(card), "double_well_2d"],
        "seeds": [0],
        "n_reference": 200,
        "methods": {"hmc": hmc},
    }
    experiment = parse_experiment(raw, str(tmp_path / "storm.yaml"))
    tasks = plan(experiment)
    write_manifest(tmp_path, experiment, "debug", tasks)
    reported = {}
    run_debug(tasks, tmp_path, lambda t, r, e: reported.update({t.key: (r, e)}), experiment)
    storm, well = reported["nan_storm/hmc/seed0"], reported["double_well_2d/hmc/seed0"]
    assert storm[0] is None and well[1] is None
    assert storm[1].startswith("NoResultError: hmc on nan_storm: no proposal was accepted")
    assert "target evaluations non-finite" in storm[1] and "no result written" in storm[1]
    states = {key: (state, detail) for key, state, detail in task_status(tmp_path)}
    assert states["nan_storm/hmc/seed0"] == ("failed", storm[1])
    assert states["double_well_2d/hmc/seed0"] == ("done", "")
    assert not (tmp_path / "nan_storm" / "hmc" / "seed0" / "result.json").exists()


def samples(x, energies, log_weights=None, **info):
    lw = torch.zeros_like(energies) if log_weights is None else log_weights
    return WeightedSamples(x, lw, energies, Cost(), info)


def test_unusable_samples_are_named():
    spent = EvaluationCounter(energy=10, nonfinite=10)
    x = torch.zeros(4, 2)
    assert "non-finite coordinates" in unusable(samples(x.fill_(torch.nan), torch.zeros(4)), spent)
    inf = torch.full((4,), torch.inf)
    reason = unusable(samples(torch.zeros(4, 2), inf), spent)
    assert "every sample has a non-finite energy" in reason
    zero_weight = samples(torch.zeros(4, 2), torch.zeros(4), torch.full((4,), -torch.inf))
    assert "zero weight (10 of 10 target evaluations non-finite)" in unusable(zero_weight, spent)
    assert unusable(samples(torch.zeros(4, 2), torch.zeros(4)), EvaluationCounter()) is None
