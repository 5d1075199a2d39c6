"""The temperature_map method: its settings reach the training, and its cost is complete."""

from __future__ import annotations

import inspect
from dataclasses import replace

import pytest
import torch

from boltzgen.runner.methods import temperature_map as method
from boltzgen.runner.methods.base import MethodContext
from boltzgen.samplers.swap_mc import SwapMonteCarlo
from boltzgen.samplers.temperature_map import HotChains
from boltzgen.systems import System, load_system
from boltzgen.training.optimise import Optimiser
from boltzgen.training.temperature_map import DEFAULT_WEIGHT_DECAY, train_temperature_map

SMALL = method.TemperatureMapParams(
    n_hot_chains=2, hot_warmup=1, hot_sweeps=2, n_layers=1, hidden=4, n_bins=4, train_steps=2
)
"""A few sweeps of two hot chains and two training steps of a one-layer flow."""


def _system() -> System:
    return load_system("kob_andersen_2d_ternary", n_particles=36, temperature=0.8)


def test_the_weight_decay_setting_reaches_adam(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Optimiser] = []
    adam = Optimiser.adam

    def spy(cls: type[Optimiser], *args: object, **kwargs: object) -> Optimiser:
        optimiser = adam(*args, **kwargs)
        made.append(optimiser)
        return optimiser

    monkeypatch.setattr(Optimiser, "adam", classmethod(spy))
    params = replace(SMALL, weight_decay=0.03)
    method.run(_system(), params, torch.Generator().manual_seed(0), MethodContext())
    assert [o.optimizer.param_groups[0]["weight_decay"] for o in made] == [0.03]


def test_the_default_weight_decay_is_the_training_functions() -> None:
    library = inspect.signature(train_temperature_map).parameters["weight_decay"].default
    assert method.TemperatureMapParams().weight_decay == library == DEFAULT_WEIGHT_DECAY


def test_every_evaluation_of_the_run_is_charged_the_hot_stream_start_to_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The energy's counter sees everything the run evaluates; the cost must add up to it.
    Starting the hot stream evaluates each chain once (its pair table), as training cost."""
    starts: list[int] = []

    class Counted(HotChains):
        def __init__(self, sampler: SwapMonteCarlo, x0: torch.Tensor, sweeps: int = 1):
            before = sampler.energy.counter.snapshot()
            super().__init__(sampler, x0, sweeps)
            starts.append(sampler.energy.counter.since(before).energy)

    monkeypatch.setattr(method, "HotChains", Counted)
    system = _system()
    before = system.energy.counter.snapshot()
    samples = method.run(system, SMALL, torch.Generator().manual_seed(0), MethodContext())
    spent = system.energy.counter.since(before)
    assert starts == [SMALL.n_hot_chains]
    cost = samples.cost
    assert cost.energy_evals == SMALL.n_hot_chains * SMALL.hot_sweeps  # the mapping
    assert cost.energy_evals + cost.train_energy_evals == spent.energy
    assert cost.force_evals + cost.train_force_evals == spent.force
