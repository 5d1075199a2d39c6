"""One task = one (system, method, seed): run it, score it, write its folder.

``RUN_DIR/<system>/<method>/seed<k>/`` receives ``samples.npz``, ``result.json``
and ``checkpoint/`` (what a method saves to resume). A task whose
``result.json`` already exists is finished and is not rerun.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from boltzgen.errors import ConfigError
from boltzgen.runner.config import Experiment, MethodSpec
from boltzgen.runner.evaluate import evaluate, load_reference_for
from boltzgen.runner.registry import METHODS
from boltzgen.systems import load_system


@dataclass(frozen=True)
class Task:
    """What one worker runs."""

    system: str
    method: MethodSpec
    seed: int
    n_reference: int
    energy_backend: str | None = None

    @property
    def key(self) -> str:
        return f"{Path(self.system).stem}/{self.method.label}/seed{self.seed}"

    def directory(self, run_dir: Path) -> Path:
        return run_dir / self.key


def plan(experiment: Experiment) -> list[Task]:
    """Every (system, method, seed) of the experiment, systems outermost.

    With a budget, each method's parameters are first resized to spend it; a budget
    too small for a method is a :class:`ConfigError` before anything runs.
    """
    return [
        Task(system, method, seed, experiment.n_reference, experiment.energy_backend)
        for system in experiment.systems
        for method in _fitted(experiment, system)
        for seed in experiment.seeds
    ]


def _fitted(experiment: Experiment, system_name: str) -> list[MethodSpec]:
    """The experiment's methods, each resized to the budget on this system (its data
    charges differ from system to system)."""
    if experiment.budget is None:
        return list(experiment.methods)
    system = load_system(system_name, backend=experiment.energy_backend)
    try:
        return [_fit(experiment, m, system) for m in experiment.methods]
    finally:
        system.energy.close()


def _fit(experiment: Experiment, method: MethodSpec, system: Any) -> MethodSpec:
    try:
        params = METHODS[method.method].fit_budget(
            method.params, experiment.budget.energy_evals, system
        )
    except ValueError as error:
        raise ConfigError(
            experiment.source, f"budget (methods.{method.label})", str(error)
        ) from error
    return dataclasses.replace(method, params=params)


def versions() -> dict[str, str]:
    """Versions of Python and the libraries results depend on."""
    import numpy
    import openmm

    import boltzgen

    return {
        "boltzgen": getattr(boltzgen, "__version__", "unknown"),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": numpy.__version__,
        "openmm": openmm.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": str(torch.get_num_threads()),
    }


def run_task(task: Task, run_dir: Path, progress: bool = False) -> dict[str, Any]:
    """Run ``task`` unless finished, write its folder, and return its result record."""
    directory = task.directory(run_dir)
    done = directory / "result.json"
    if done.exists() and (directory / "samples.npz").exists():
        return json.loads(done.read_text())
    system = load_system(task.system, backend=task.energy_backend)
    method = METHODS[task.method.method]
    generator = torch.Generator().manual_seed(task.seed)
    started = time.time()
    samples = method.run(system, task.method.params, generator, directory / "checkpoint", progress)
    reference = load_reference_for(system, task.n_reference)
    result: dict[str, Any] = {
        "system": system.name,
        "system_card": task.system,
        "method": task.method.label,
        "method_kind": task.method.method,
        "seed": task.seed,
        **evaluate(system, samples, reference, generator),
        "versions": versions(),
        "config": {
            "method": task.method.method,
            "energy": type(system.energy).__name__,
            **dataclasses.asdict(task.method.params),
        },
        "started": started,
        "finished": time.time(),
    }
    samples.save(directory, result)
    (directory / "error.txt").unlink(missing_ok=True)
    system.energy.close()
    return json.loads(done.read_text())
