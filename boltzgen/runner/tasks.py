"""One task = one (system, method, seed): run it, score it, write its folder.

``RUN_DIR/<system>/<method>/seed<k>/`` receives ``samples.npz``, ``result.json``
and ``checkpoint/`` (what a method saves to resume). Each task's resolved settings
(system card, method, parameters, seed, code version) hash to ``settings_hash``,
stored in ``checkpoint/settings.json`` before the task starts and in
``result.json`` when it ends. A task whose ``result.json`` has the same hash is
finished and is not rerun; a folder holding results or a checkpoint of other
settings is refused (:class:`StaleResultError`) unless the run is forced, which
deletes them first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from boltzgen.errors import ConfigError
from boltzgen.records.provenance import versions
from boltzgen.runner.config import Experiment, MethodSpec
from boltzgen.runner.evaluate import evaluate, load_reference_for
from boltzgen.runner.methods import METHODS, MethodContext
from boltzgen.runner.methods.base import settings_of
from boltzgen.systems import CATALOG, load_system
from boltzgen.version import __version__


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


class StaleResultError(ConfigError):
    """A task folder holds results or a checkpoint made with other settings."""

    def __init__(self, directory: Path, changes: list[str]):
        what = ", ".join(changes) if changes else "settings of an unknown version"
        ValueError.__init__(
            self,
            f"{directory} holds results made with other settings ({what}); rerun with "
            "--force to delete and recompute them, or choose another --out folder",
        )
        self.source, self.field, self.value, self.choices = str(directory), "settings", None, None


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    """``key: old → new`` for every leaf that differs between two settings mappings."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            line
            for key in sorted(set(old) | set(new), key=str)
            for line in _differences(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        ]
    return [] if old == new else [f"{path.removeprefix('params.')}: {old} → {new}"]


def task_settings(task: Task) -> dict[str, Any]:
    """Everything a task's result depends on: card text, method, parameters, seed, code version."""
    card = _card_path(task.system)
    return {
        "system": task.system,
        "card_sha256": hashlib.sha256(card.read_bytes()).hexdigest() if card.exists() else None,
        "method": task.method.method,
        "params": settings_of(task.method.params),
        "seed": task.seed,
        "n_reference": task.n_reference,
        "energy_backend": task.energy_backend,
        "boltzgen": __version__,
    }


def _card_path(system: str) -> Path:
    path = Path(system)
    return path if path.suffix in (".yaml", ".yml") else CATALOG / f"{system}.yaml"


def settings_hash(task: Task) -> str:
    """SHA-256 (first 16 hex digits) of :func:`task_settings`, keys sorted."""
    text = json.dumps(task_settings(task), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stored_hash(directory: Path) -> tuple[bool, str | None]:
    """``(has something, its settings hash)`` of a task folder's result or checkpoint."""
    for path, key in (
        (directory / "result.json", "settings_hash"),
        (directory / "checkpoint" / "settings.json", "settings_hash"),
    ):
        if path.exists():
            return True, json.loads(path.read_text()).get(key)
    return (directory / "checkpoint").exists(), None


def is_finished(task: Task, run_dir: Path) -> bool:
    """Whether the task's folder holds the result of exactly these settings."""
    directory = task.directory(run_dir)
    if not ((directory / "result.json").exists() and (directory / "samples.npz").exists()):
        return False
    return stored_hash(directory)[1] == settings_hash(task)


def check_settings(task: Task, run_dir: Path, force: bool = False) -> None:
    """Refuse (or, with ``force``, clear) a task folder made with other settings."""
    directory = task.directory(run_dir)
    present, stored = stored_hash(directory)
    if not present or stored == settings_hash(task):
        return
    if not force:
        raise StaleResultError(directory, _changes(task, directory))
    for name in ("result.json", "samples.npz", "error.txt"):
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / "checkpoint", ignore_errors=True)


def _changes(task: Task, directory: Path) -> list[str]:
    record = directory / "checkpoint" / "settings.json"
    if not record.exists():
        return []
    stored = json.loads(record.read_text()).get("settings", {})
    current = json.loads(json.dumps(task_settings(task), default=str))
    return _differences(stored, current)


def _stamp(task: Task, directory: Path) -> str:
    """Write ``checkpoint/settings.json`` (hash and settings) and return the hash."""
    digest = settings_hash(task)
    folder = directory / "checkpoint"
    folder.mkdir(parents=True, exist_ok=True)
    record = {"settings_hash": digest, "settings": task_settings(task)}
    (folder / "settings.json").write_text(json.dumps(record, indent=1, default=str))
    return digest


def _context(task: Task, run_dir: Path, progress: bool) -> MethodContext:
    """The folders of ``task``: its checkpoint, its own folder, and its system's shared one."""
    directory = task.directory(run_dir)
    return MethodContext(
        checkpoint=directory / "checkpoint",
        output=directory,
        shared=run_dir / Path(task.system).stem / "_generators",
        seed=task.seed,
        progress=progress,
    )


def run_task(
    task: Task, run_dir: Path, progress: bool = False, force: bool = False
) -> dict[str, Any]:
    """Run ``task`` unless finished, write its folder, and return its result record.

    Raises :class:`StaleResultError` when the folder holds another settings' results
    (``force`` deletes them and reruns).
    """
    directory = task.directory(run_dir)
    done = directory / "result.json"
    if is_finished(task, run_dir):
        return json.loads(done.read_text())
    check_settings(task, run_dir, force)
    digest = _stamp(task, directory)
    system = load_system(task.system, backend=task.energy_backend)
    method = METHODS[task.method.method]
    generator = torch.Generator().manual_seed(task.seed)
    started = time.time()
    samples = method.run(system, task.method.params, generator, _context(task, run_dir, progress))
    reference = load_reference_for(system, task.n_reference)
    result: dict[str, Any] = {
        "system": system.name,
        "system_card": task.system,
        "method": task.method.label,
        "method_kind": task.method.method,
        "seed": task.seed,
        **evaluate(system, samples, reference, generator),
        "settings_hash": digest,
        "versions": versions(),
        "config": {
            "method": task.method.method,
            "energy": type(system.energy).__name__,
            **settings_of(task.method.params),
        },
        "started": started,
        "finished": time.time(),
    }
    samples.save(directory, result)
    (directory / "error.txt").unlink(missing_ok=True)
    system.energy.close()
    return json.loads(done.read_text())
