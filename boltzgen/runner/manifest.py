"""The run folder's ``manifest.yaml`` and the status of its tasks.

The manifest records what was run and where: the resolved experiment, the task
list, the git commit of the code, package versions, the machine, and start and
end times. ``boltzgen status RUN_DIR`` reads it back with each task's state.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from boltzgen.records.provenance import git_commit, versions
from boltzgen.runner.config import Experiment
from boltzgen.runner.tasks import Task, is_finished, settings_hash


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
    (run_dir / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def _update(run_dir: Path, **fields: Any) -> None:
    path = run_dir / "manifest.yaml"
    manifest: dict[str, Any] = yaml.safe_load(path.read_text())
    manifest.update(fields)
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))


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


def resume_point(folder: Path) -> str:
    """Where a started task continues: the last checkpointed training or MD step."""
    import numpy as np
    import torch

    checkpoint = folder / "checkpoint"
    for stage in ("finetune", "train"):
        path = checkpoint / stage / "checkpoint.pt"
        if path.exists():
            step = torch.load(path, map_location="cpu", weights_only=False).get("step", 0)
            return f"{'training' if stage == 'train' else 'fine-tuning'} step {step}"
    if (checkpoint / "md.npz").exists():
        with np.load(checkpoint / "md.npz") as data:
            return f"MD step {int(data['steps'])}"
    return "the start (no step checkpointed yet)"


def task_status(run_dir: Path) -> list[tuple[str, str, str]]:
    """``(task key, state, detail)`` for every task of the run.

    States: ``done`` (result written), ``failed`` (error.txt, detail is its last
    line), ``interrupted`` (started, and the run was stopped with Ctrl-C), ``running``
    (started, the run not stopped), ``pending`` (not started).
    """
    path = run_dir / "manifest.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: not a run folder")
    manifest = yaml.safe_load(path.read_text())
    started = "interrupted" if manifest.get("interrupted") else "running"
    return [_state(run_dir / key, key, started) for key in manifest.get("tasks", [])]


def _state(folder: Path, key: str, started: str) -> tuple[str, str, str]:
    if (folder / "result.json").exists():
        return key, "done", ""
    if (folder / "error.txt").exists():
        lines = (folder / "error.txt").read_text().strip().splitlines()
        return key, "failed", lines[-1] if lines else ""
    if (folder / "checkpoint").exists():
        return (
            key,
            started,
            f"resumes from {resume_point(folder)}" if started == "interrupted" else "",
        )
    return key, "pending", ""
