"""A run's trained generator, loaded back: for more draws, a second estimate, or checks.

A task of a generator method (``boltzmann_generator``, ``smc``, ``flow_mcmc``,
``flow_hmc``) trains its flow once, in its own ``checkpoint/`` folder or in the shared
``RUN_DIR/<system>/_generators/<key>-seed<k>/``. :func:`load_trained_generator` rebuilds
the task's system and flow from the task's recorded settings and loads the finished
training from there; it never trains.

    >>> task = Path("runs/aldp/alanine_dipeptide_implicit/bg/seed0")
    >>> system, trained = load_trained_generator(task)
    >>> more = trained.model.sample(10_000, torch.Generator().manual_seed(7))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from boltzgen.records.files import read_verified
from boltzgen.runner.config import parse_dataclass
from boltzgen.runner.methods.boltzmann_generator import (
    GENERATOR_METHODS,
    BoltzmannGeneratorParams,
    TrainedGenerator,
    stages,
    train_generator,
    training_folders,
)
from boltzgen.runner.system_specs import SystemSpec, load_task_system
from boltzgen.systems import System
from boltzgen.training.checkpoint import load_good_checkpoint
from boltzgen.training.generator import CHECKPOINT_NAME


def load_trained_generator(task_dir: Path) -> tuple[System, TrainedGenerator]:
    """The system and the finished generator of the task in ``task_dir``.

    Raises:
        FileNotFoundError: ``task_dir`` holds no task settings (not a task folder).
        ValueError: the task's method trains no generator, or its training has not
            finished (``boltzgen run`` on the same experiment resumes it).
    """
    path = task_dir / "checkpoint" / "settings.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: {task_dir} is not a task folder")
    settings: dict[str, Any] = json.loads(read_verified(path))["settings"]
    method = settings.get("method")
    if method not in GENERATOR_METHODS:
        raise ValueError(
            f"{task_dir}: method {method!r} trains no generator "
            f"(generator methods: {', '.join(GENERATOR_METHODS)})"
        )
    raw = settings["params"] if method == "boltzmann_generator" else settings["params"]["generator"]
    params = parse_dataclass(BoltzmannGeneratorParams, raw, str(path), "params")
    folder = _finished_folder(task_dir, params)
    system = load_task_system(task_system_spec(task_dir), backend=settings.get("energy_backend"))
    seed = int(settings["seed"])
    trained = train_generator(
        system, params, torch.Generator().manual_seed(seed), folder, False, load_trained_generator
    )
    return system, trained


def task_system_spec(task_dir: Path, **overrides: Any) -> SystemSpec:
    """The system of the task in ``task_dir`` as its settings recorded it (card, overrides
    and label), with ``overrides`` on top, e.g. ``temperature=1.5`` for the same system at
    another temperature."""
    path = task_dir / "checkpoint" / "settings.json"
    settings: dict[str, Any] = json.loads(read_verified(path))["settings"]
    return SystemSpec(
        label=task_dir.parent.parent.name,
        card=settings["system"],
        overrides={**settings.get("overrides", {}), **overrides},
        source=str(path),
    )


def _finished_folder(task_dir: Path, params: BoltzmannGeneratorParams) -> Path:
    """The task's training folder in which every stage has finished."""
    for folder in training_folders(task_dir):
        if all(_finished(folder / name, stage.config(0)) for name, stage in stages(params)):
            return folder
    raise ValueError(
        f"{task_dir}: its generator's training has not finished (looked in "
        f"{', '.join(str(f) for f in training_folders(task_dir))}); "
        "`boltzgen run` on the same experiment resumes it"
    )


def _finished(stage_dir: Path, config: Any) -> bool:
    state, _ = load_good_checkpoint(stage_dir / CHECKPOINT_NAME)
    if state is None:
        return False
    stopped = bool(state.get("validation", {}).get("stopped_early", False))
    return int(state.get("step", 0)) >= config.steps or stopped
