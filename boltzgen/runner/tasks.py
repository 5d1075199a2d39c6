"""One task = one (system, method, seed): run it, score it, write its folder.

``RUN_DIR/<system label>/<method>/seed<k>/`` receives ``samples.npz``, ``result.json``
and ``checkpoint/`` (what a method saves to resume). Each task's resolved settings
(system card and its overrides, method, parameters, seed, code version) hash to ``settings_hash``,
stored in ``checkpoint/settings.json`` before the task starts and in
``result.json`` when it ends. A task whose ``result.json`` has the same hash is
finished and is not rerun; a folder holding results or a checkpoint of other
settings is refused (:class:`StaleResultError`) unless the run is forced, which
deletes them first.

Faults (docs/faults.md): every file is written atomically with its SHA-256 beside it
(:mod:`boltzgen.records.files`). A result or settings stamp found truncated or
corrupted is deleted with one line on stderr and the task reruns, resuming from its
checkpoint when that checks out. A method whose samples are unusable (non-finite
coordinates, every energy non-finite, no proposal accepted) fails with
:class:`NoResultError` and writes no result. Each computation that finishes appends
one line to ``RUN_DIR/completions.log``, so a task computed twice shows as two lines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from boltzgen.errors import ConfigError
from boltzgen.records import EvaluationCounter, WeightedSamples
from boltzgen.records.files import (
    damage,
    notice,
    read_verified,
    readable_json,
    remove_with_checksum,
    write_json,
)
from boltzgen.records.provenance import versions
from boltzgen.runner.config import Experiment, MethodSpec
from boltzgen.runner.evaluate import evaluate, load_reference_for
from boltzgen.runner.lock import locked
from boltzgen.runner.methods import METHODS, MethodContext
from boltzgen.runner.methods.base import settings_of
from boltzgen.runner.system_specs import SystemSpec, load_task_system
from boltzgen.runner.trained import load_trained_generator
from boltzgen.systems import CATALOG
from boltzgen.version import __version__


@dataclass(frozen=True)
class Task:
    """What one worker runs."""

    system: SystemSpec
    method: MethodSpec
    seed: int
    n_reference: int
    energy_backend: str | None = None

    @property
    def key(self) -> str:
        return f"{self.system.label}/{self.method.label}/seed{self.seed}"

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


def _fitted(experiment: Experiment, spec: SystemSpec) -> list[MethodSpec]:
    """The experiment's methods, each resized to the budget on this system (its data
    charges differ from system to system)."""
    if experiment.budget is None:
        return list(experiment.methods)
    system = load_task_system(spec, backend=experiment.energy_backend)
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
    """Everything a task's result depends on: card text and overrides, method, parameters,
    seed, code version. (``overrides`` appears only when there are some, so the hash of a
    plain card is what it always was.)"""
    card = _card_path(task.system.card)
    overrides = {"overrides": dict(task.system.overrides)} if task.system.overrides else {}
    return {
        "system": task.system.card,
        **overrides,
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


RESULT_FILES = ("samples.npz", "result.json")
"""A task's result: both files, each matching the checksum beside it."""


def stored_hash(directory: Path) -> tuple[bool, str | None]:
    """``(has something, its settings hash)`` of a task folder's result or checkpoint.

    Damaged files count as absent. This only decides whether a folder belongs to other
    settings; whether a result is finished is decided on checksums alone
    (:func:`is_finished`).
    """
    for path in (directory / "result.json", directory / "checkpoint" / "settings.json"):
        record = readable_json(path)
        if record is not None:
            return True, record.get("settings_hash")
    return (directory / "checkpoint").exists(), None


def is_finished(task: Task, run_dir: Path) -> bool:
    """Whether the task's folder holds an intact result of exactly these settings."""
    directory = task.directory(run_dir)
    if any(damage(directory / name) for name in RESULT_FILES):
        return False
    return stored_hash(directory)[1] == settings_hash(task)


def discard_damaged(task: Task, run_dir: Path) -> None:
    """Delete a result or settings stamp that is incomplete or damaged, saying so in one line.

    A damaged result reruns the task (from its checkpoint, if that checks out); a
    damaged settings stamp leaves the checkpoint unattributable, so it is deleted too.
    """
    directory = task.directory(run_dir)
    present = [directory / n for n in RESULT_FILES if (directory / n).exists()]
    problems = [p for p in (damage(path) for path in present) if p is not None]
    if _of_other_settings(task, directory / "result.json"):
        return
    if present and (problems or len(present) < len(RESULT_FILES)):
        reason = problems[0] if problems else f"{present[0]} has no companion result file"
        notice(f"{reason}: rerunning {task.key}")
        for name in RESULT_FILES:
            remove_with_checksum(directory / name)
    stamp = directory / "checkpoint" / "settings.json"
    if _of_other_settings(task, stamp):
        return
    if stamp.exists() and (reason := damage(stamp)) is not None:
        notice(f"{reason}: rerunning {task.key} from the start")
        shutil.rmtree(directory / "checkpoint", ignore_errors=True)


def _of_other_settings(task: Task, path: Path) -> bool:
    """Whether ``path`` reads as a record of another settings hash (damaged or not).

    Such a folder is left to :func:`check_settings`, which refuses it unless forced: a
    record without a checksum (written by an older boltzgen) is never deleted silently.
    """
    record = readable_json(path)
    return record is not None and record.get("settings_hash") != settings_hash(task)


def check_settings(task: Task, run_dir: Path, force: bool = False) -> None:
    """Refuse (or, with ``force``, clear) a task folder made with other settings."""
    directory = task.directory(run_dir)
    present, stored = stored_hash(directory)
    if not present or stored == settings_hash(task):
        return
    if not force:
        raise StaleResultError(directory, _changes(task, directory))
    for name in (*RESULT_FILES, "error.txt"):
        remove_with_checksum(directory / name)
    shutil.rmtree(directory / "checkpoint", ignore_errors=True)


def _changes(task: Task, directory: Path) -> list[str]:
    record = readable_json(directory / "checkpoint" / "settings.json")
    if record is None:
        return []
    stored = record.get("settings", {})
    current = json.loads(json.dumps(task_settings(task), default=str))
    return _differences(stored, current)


def _stamp(task: Task, directory: Path) -> str:
    """Write ``checkpoint/settings.json`` (hash and settings) and return the hash."""
    digest = settings_hash(task)
    record = {"settings_hash": digest, "settings": task_settings(task)}
    plain = json.loads(json.dumps(record, default=str))
    write_json(directory / "checkpoint" / "settings.json", plain, checksum=True)
    return digest


def _context(task: Task, run_dir: Path, progress: bool) -> MethodContext:
    """The folders of ``task``: its checkpoint, its own folder, and its system's shared one."""
    directory = task.directory(run_dir)
    return MethodContext(
        checkpoint=directory / "checkpoint",
        output=directory,
        shared=run_dir / task.system.label / "_generators",
        seed=task.seed,
        progress=progress,
        load_generator=load_trained_generator,
    )


class NoResultError(RuntimeError):
    """A method returned samples that cannot be scored: nothing is written as a result."""


def unusable(samples: WeightedSamples, spent: EvaluationCounter) -> str | None:
    """Why ``samples`` cannot be a result (a NaN storm, chains that never moved), or ``None``.

    ``spent`` is what the run evaluated on the target; its non-finite count is quoted.
    """
    storm = f"{spent.nonfinite:,} of {spent.energy + spent.force:,} target evaluations non-finite"
    bad_x = int((~torch.isfinite(samples.x.flatten(1))).any(dim=1).sum()) if len(samples) else 0
    if bad_x:
        return f"{bad_x} of {len(samples)} samples have non-finite coordinates ({storm})"
    usable = torch.isfinite(samples.energies) & torch.isfinite(samples.log_weights)
    if not bool(usable.any()):
        return f"every sample has a non-finite energy or zero weight ({storm})"
    if samples.is_chain and samples.info.get("acceptance") == 0.0:
        return f"no proposal was accepted: the chains never moved ({storm})"
    return None


def _record_completion(task: Task, run_dir: Path, digest: str) -> None:
    """Append one line to ``RUN_DIR/completions.log`` (one ``write`` with ``O_APPEND``)."""
    line = json.dumps(
        {
            "task": task.key,
            "settings_hash": digest,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "time": time.time(),
        }
    )
    handle = os.open(run_dir / "completions.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(handle, (line + "\n").encode())
    finally:
        os.close(handle)


def run_task(
    task: Task, run_dir: Path, progress: bool = False, force: bool = False
) -> dict[str, Any]:
    """Run ``task`` unless finished, write its folder, and return its result record.

    Raises :class:`StaleResultError` when the folder holds another settings' results
    (``force`` deletes them and reruns), :class:`NoResultError` when the method's
    samples are unusable, and :class:`~boltzgen.records.files.WriteError` when the disk
    is full or the folder unwritable.
    """
    directory = task.directory(run_dir)
    if is_finished(task, run_dir):
        return json.loads(read_verified(directory / "result.json"))
    with _task_lock(directory):
        if is_finished(task, run_dir):
            return json.loads(read_verified(directory / "result.json"))
        return _run_unfinished(task, run_dir, progress, force)


def _task_lock(directory: Path) -> AbstractContextManager[None]:
    """Hold an ``flock`` on ``directory/.task.lock`` (released by the kernel if we die).

    A scheduler may start a second copy of a task while the first still runs (dask
    keeps a task it gave up on running in its worker); the second waits here and then
    finds the result written instead of computing it again.
    """
    return locked(directory / ".task.lock")


def _run_unfinished(task: Task, run_dir: Path, progress: bool, force: bool) -> dict[str, Any]:
    directory = task.directory(run_dir)
    discard_damaged(task, run_dir)
    check_settings(task, run_dir, force)
    digest = _stamp(task, directory)
    system = load_task_system(task.system, backend=task.energy_backend)
    try:
        result = _compute(task, run_dir, system, digest, progress)
    finally:
        system.energy.close()
    (directory / "error.txt").unlink(missing_ok=True)
    _record_completion(task, run_dir, digest)
    return result


def _compute(task: Task, run_dir: Path, system: Any, digest: str, progress: bool) -> dict[str, Any]:
    """Run the method on ``system``, score it, and write ``samples.npz`` and ``result.json``."""
    method = METHODS[task.method.method]
    generator = torch.Generator().manual_seed(task.seed)
    started, before = time.time(), system.energy.counter.snapshot()
    samples = method.run(system, task.method.params, generator, _context(task, run_dir, progress))
    reason = unusable(samples, system.energy.counter.since(before))
    if reason is not None:
        raise NoResultError(
            f"{task.method.label} on {task.system.label}: {reason}; no result written"
        )
    reference = load_reference_for(system, task.n_reference)
    density = None
    if method.log_density is not None and reference is not None and reference.x is not None:
        context = _context(task, run_dir, False)
        density = method.log_density(system, task.method.params, context)
    result: dict[str, Any] = {
        "system": task.system.label,
        "system_name": system.name,
        "system_card": task.system.card,
        "system_overrides": dict(task.system.overrides),
        "method": task.method.label,
        "method_kind": task.method.method,
        "seed": task.seed,
        **evaluate(system, samples, reference, generator, density),
        "settings_hash": digest,
        "versions": versions(),
        "config": {
            "system_card": task.system.card,
            "system_overrides": dict(task.system.overrides),
            "method": task.method.method,
            "energy": type(system.energy).__name__,
            **settings_of(task.method.params, complete=True),
        },
        "started": started,
        "finished": time.time(),
    }
    samples.save(task.directory(run_dir), result)
    return json.loads(read_verified(task.directory(run_dir) / "result.json"))
