"""Checks made before any task runs: every problem of a run is found up front.

:func:`preflight` builds each system of the experiment once, with its overrides (a
force-field typo, a missing structure file or an override the card does not take fails
here), checks that every method that trains on data has
data to train on, and that no task folder holds results of other settings. ``boltzgen
run`` calls it before writing anything, and ``--dry-run`` calls it too, so a dry run
that succeeds means the run will start every task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from boltzgen.errors import ConfigError
from boltzgen.runner.config import Experiment, MethodSpec
from boltzgen.runner.system_specs import SystemSpec, load_task_system
from boltzgen.runner.tasks import Task, check_settings
from boltzgen.systems import System

DATA_LOSSES = ("forward_kl", "mixed")


def preflight(
    experiment: Experiment, tasks: Sequence[Task], run_dir: Path | None, force: bool = False
) -> None:
    """Raise the first :class:`ConfigError` any task would meet; nothing is written.

    With ``run_dir`` given, task folders are checked against the tasks' settings; with
    ``force`` the stale ones are cleared (the only change made).
    """
    for spec in dict.fromkeys(task.system for task in tasks):
        system = _build(spec, experiment)
        for method in experiment.methods:
            _check_training_data(system, spec, method, experiment.source)
        system.energy.close()
    if run_dir is None:
        return
    for task in tasks:
        check_settings(task, run_dir, force)


def _build(spec: SystemSpec, experiment: Experiment) -> System:
    """The system of ``spec``; any failure becomes a ConfigError naming the card (or the
    override that the card refuses)."""
    card = spec.card
    try:
        return load_task_system(spec, backend=experiment.energy_backend)
    except ConfigError:
        raise
    except FileNotFoundError as error:
        raise ConfigError(
            experiment.source, spec.entry, f"names a card that fails: {error}"
        ) from error
    except Exception as error:
        raise ConfigError(
            card, "(card)", f"cannot be built: {type(error).__name__}: {error}"
        ) from error


def training_stages(params: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted path, settings)`` of every training stage (a ``loss`` field) inside ``params``."""
    if not dataclasses.is_dataclass(params):
        return
    if hasattr(params, "loss") and hasattr(params, "n_data"):
        yield path, params
        return
    for f in dataclasses.fields(params):
        yield from training_stages(getattr(params, f.name), f"{path}.{f.name}" if path else f.name)


def has_training_data(system: System, data: str = "auto") -> bool:
    """Exact samples (toy systems) or an MD or PT reference set (the card's kind, or the
    one ``data`` names) made for this system's energy and temperature."""
    if data != "auto":
        return system.stored_reference("all", kind=data).data is not None
    return system.has_exact_reference or system.stored_reference("all").data is not None


def _check_training_data(system: System, spec: SystemSpec, method: MethodSpec, source: str) -> None:
    for path, stage in training_stages(method.params):
        data = getattr(stage, "data", "auto")
        if stage.loss not in DATA_LOSSES or has_training_data(system, data):
            continue
        if data != "auto":
            raise ConfigError(
                source,
                f"methods.{method.label}.{path}.data",
                f"is {data}, and {spec.label} has no {data} reference set made for it "
                f"({system.stored_reference('all', kind=data).note}): generate it with "
                f"`boltzgen reference {system.name} --method {data}`",
            )
        field = f"methods.{method.label}.{path}.loss"
        if spec.overrides:
            raise ConfigError(
                source,
                field,
                f"is {stage.loss}, which needs reference data, and {spec.label} has none "
                f"({system.stored_reference('all').note}; {spec.entry}.overrides may have "
                f"changed its energy or temperature); train on the energy alone with "
                f"`--set {field}=reverse_kl`",
            )
        raise ConfigError(
            source,
            field,
            f"is {stage.loss}, which needs reference data, and {system.name} has none: "
            f"generate it with `boltzgen reference {system.name} --method md --ns 1`, or "
            f"train on the energy alone with `--set {field}=reverse_kl`",
        )
