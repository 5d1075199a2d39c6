"""The run folder's ``manifest.yaml`` and the status of its tasks.

The manifest records what was run and where: the resolved experiment, the task
list, the git commit of the code, package versions, the machine, and start and
end times. ``boltzgen status RUN_DIR`` reads it back with each task's state: a task
is ``done`` only when its result files match their checksums, and a started task is
``running`` only while the run that holds the folder's lock is alive (a run killed
without a chance to say so shows its tasks as ``interrupted``).
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from boltzgen.records.files import DamagedFile, damage, read_verified, write_atomic
from boltzgen.records.provenance import git_commit, versions
from boltzgen.runner.config import Experiment
from boltzgen.runner.lock import is_alive, read_holder
from boltzgen.runner.methods.boltzmann_generator import training_folders
from boltzgen.runner.tasks import RESULT_FILES, Task, is_finished, settings_hash
from boltzgen.training.checkpoint import load_good_checkpoint


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_manifest(
    run_dir: Path, experiment: Experiment, executor: str, tasks: Sequence[Task]
) -> None:
    """Write ``manifest.yaml`` at the start of a run."""
    manifest = {
        "experiment": experiment.raw,
        "source": experiment.source,
        "executor": executor,
        "tasks": [task.key for task in tasks],
        "settings_hashes": {task.key: settings_hash(task) for task in tasks},
        "git_commit": git_commit(),
        "versions": versions(),
        "started": _now(),
        "finished": None,
        "interrupted": None,
    }
    write_atomic(run_dir / "manifest.yaml", yaml.safe_dump(manifest, sort_keys=False).encode())


def _update(run_dir: Path, **fields: Any) -> None:
    path = run_dir / "manifest.yaml"
    manifest: dict[str, Any] = yaml.safe_load(path.read_text())
    manifest.update(fields)
    write_atomic(path, yaml.safe_dump(manifest, sort_keys=False).encode())


def finish_manifest(run_dir: Path) -> None:
    """Stamp the end time into ``manifest.yaml``."""
    _update(run_dir, finished=_now(), interrupted=None)


def mark_interrupted(run_dir: Path, tasks: Sequence[Task]) -> tuple[int, dict[str, str]]:
    """Record an interrupted run; return (tasks done, {started task: where it resumes})."""
    _update(run_dir, interrupted=_now())
    done = sum(is_finished(task, run_dir) for task in tasks)
    started = {
        task.key: resume_point(task.directory(run_dir))
        for task in tasks
        if (task.directory(run_dir) / "checkpoint").exists() and not is_finished(task, run_dir)
    }
    return done, started


_STAGE_NAMES = (("polish", "polishing"), ("finetune", "fine-tuning"), ("train", "training"))


def resume_point(folder: Path) -> str:
    """Where a started task continues: the last good checkpointed training step (in its own
    checkpoint folder or its shared generator's) or MD step."""
    checkpoint = folder / "checkpoint"
    for stage, name in _STAGE_NAMES:
        for training in training_folders(folder):
            state, damaged = load_good_checkpoint(training / stage / "checkpoint.pt")
            if state is not None:
                note = " (its newest copy is damaged)" if damaged else ""
                return f"{name} step {state.get('step', 0)}{note}"
    md = checkpoint / "md.npz"
    if md.exists():
        try:
            with np.load(io.BytesIO(read_verified(md))) as data:
                return f"MD step {int(data['steps'])}"
        except DamagedFile:
            return "the start (its MD checkpoint is damaged)"
    return "the start (no step checkpointed yet)"


def task_status(run_dir: Path) -> list[tuple[str, str, str]]:
    """``(task key, state, detail)`` for every task of the run.

    States: ``done`` (result written and intact), ``failed`` (error.txt, detail is its
    first line), ``interrupted`` (started, and the run was stopped or killed),
    ``running`` (started, and the run holding the folder's lock is alive), ``pending``
    (not started).
    """
    path = run_dir / "manifest.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: not a run folder")
    manifest = yaml.safe_load(path.read_text())
    holder = read_holder(run_dir)
    live = holder is not None and is_alive(holder) is not False
    started = "running" if live and not manifest.get("interrupted") else "interrupted"
    return [_state(run_dir / key, key, started) for key in manifest.get("tasks", [])]


def error_line(folder: Path) -> str:
    """The one-line reason a task failed: the first line of its ``error.txt``.

    (Files written before the summary line was added start with the traceback; their
    last line is the exception.)
    """
    lines = (folder / "error.txt").read_text(errors="replace").strip().splitlines()
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def _state(folder: Path, key: str, started: str) -> tuple[str, str, str]:
    if all(damage(folder / name) is None for name in RESULT_FILES):
        return key, "done", ""
    if (folder / "error.txt").exists():
        return key, "failed", error_line(folder)
    present = [folder / name for name in RESULT_FILES if (folder / name).exists()]
    damaged = [d for path in present if (d := damage(path)) is not None]
    if damaged:
        return key, started, f"{damaged[0]}; the next run redoes it"
    if (folder / "checkpoint").exists():
        return (
            key,
            started,
            f"resumes from {resume_point(folder)}" if started == "interrupted" else "",
        )
    return key, "pending", ""
