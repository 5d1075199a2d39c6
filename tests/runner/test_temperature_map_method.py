"""The temperature_map method: its settings reach the training."""

from __future__ import annotations

import inspect
from dataclasses import replace

import pytest
import torch

from boltzgen.runner.methods import temperature_map as method
from boltzgen.runner.methods.base import MethodContext
from boltzgen.systems import System, load_system
from boltzgen.training.optimise import Optimiser
from boltzgen.training.temperature_map import train_temperature_map

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
    assert method.TemperatureMapParams().weight_decay == library
