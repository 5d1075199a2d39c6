"""What every experiment method shares: the context it runs in and its registry entry.

A method is a parameter dataclass (what the YAML may set, with defaults), a function
``run(system, params, generator, context) -> WeightedSamples`` that pays for everything
it does on the system's energy, training included, and a budget rule
``fit_budget(params, energy_evals, system) -> params``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from boltzgen.records import WeightedSamples
from boltzgen.systems import System


@dataclass(frozen=True)
class MethodContext:
    """The folders and switches a task hands to a method's ``run``.

    Attributes:
        checkpoint: the task's ``checkpoint/`` folder, where a method saves what it needs
            to resume (``None``: nothing is saved).
        output: the task's folder, next to ``result.json``: extra results a method writes
            (``trajectory.dcd``, ``ladder.npz``; ``None``: none are written).
        shared: the folder of artifacts shared between the tasks of one system, e.g.
            trained generators (``RUN_DIR/<system>/_generators``; ``None``: none shared).
        seed: the task's seed; it names shared artifacts (randomness comes from the
            ``torch.Generator`` handed to ``run``, never from this number).
        progress: show progress bars.
        load_generator: loads the finished generator of another task from its folder
            (:func:`boltzgen.runner.trained.load_trained_generator`), for a flow that
            starts from it (``flow.init_from``); ``None``: such a flow is refused.
    """

    checkpoint: Path | None = None
    output: Path | None = None
    shared: Path | None = None
    seed: int = 0
    progress: bool = False
    load_generator: Callable[[Path], Any] | None = None


C = TypeVar("C")

RunFunction = Callable[[System, Any, torch.Generator, MethodContext], WeightedSamples]
LogDensity = Callable[[torch.Tensor], torch.Tensor]
"""``x: [n, *event_shape] -> log q(x): [n]`` (float64, on the CPU)."""


@dataclass(frozen=True)
class Method:
    """A registered method: its parameter dataclass, run function and budget rule.

    ``fit_budget(params, energy_evals, system)`` returns the parameters resized so that
    the run on ``system`` spends between 80 % and 100 % of ``energy_evals`` target
    evaluations (energy + force, training and the charge of training data included);
    it raises ``ValueError`` when the budget cannot cover the fixed part.

    ``log_density(system, params, context)``, for a method whose samples are independent
    draws of a density it can evaluate (a Boltzmann generator), gives that log density
    after ``run``: the held-out check scores the draws against reference frames with it
    (:mod:`boltzgen.metrics.held_out`).
    """

    params: type
    run: RunFunction
    fit_budget: Callable[[Any, int, System], Any]
    log_density: Callable[[System, Any, MethodContext], LogDensity] | None = None


def to_cpu(samples: WeightedSamples) -> WeightedSamples:
    """``samples`` with ``x``, ``log_weights`` and ``energies`` moved to the CPU."""
    return replace(
        samples,
        x=samples.x.cpu(),
        log_weights=samples.log_weights.cpu(),
        energies=samples.energies.cpu(),
    )


def library_config(params: Any, config_type: type[C], **runner_settings: Any) -> C:
    """The library's ``config_type`` from the method parameters that derive from it.

    ``params`` (a subclass of ``config_type``) gives every field a user may set; the
    fields it closes to users (``init=False``) come from ``runner_settings``.
    """
    settable = {f.name for f in fields(params) if f.init}
    settings = {f.name: getattr(params, f.name) for f in fields(config_type) if f.name in settable}
    return config_type(**settings, **runner_settings)


def settings_of(params: Any, *, complete: bool = False) -> Any:
    """The settings a user may write, as plain data: the inverse of :func:`parse_dataclass`.

    Nested dataclasses become mappings; fields a user cannot set (``init=False``, e.g. a
    training stage's seed, drawn by the task) are left out, and so is a field declared with
    :data:`ADDED_SETTING` metadata while it holds its default — the form that is hashed.
    ``complete=True`` keeps those defaults: the form a result reports as its ``config``.
    """
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return {
            f.name: settings_of(getattr(params, f.name), complete=complete)
            for f in dataclasses.fields(params)
            if f.init and (complete or not _silent_default(f, getattr(params, f.name)))
        }
    if isinstance(params, list | tuple):
        return [settings_of(value, complete=complete) for value in params]
    return params


ADDED_SETTING = {"omit_at_default": True}
"""Field metadata of a setting added to existing parameters: ``field(default=...,
metadata=ADDED_SETTING)`` is left out of :func:`settings_of` while it holds its default,
so the settings hash (and shared-generator key) of every configuration written before the
field existed stays what it was."""


def _silent_default(f: dataclasses.Field, value: Any) -> bool:
    return bool(f.metadata.get("omit_at_default")) and value == f.default
