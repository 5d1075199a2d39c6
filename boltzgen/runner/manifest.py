"""The run folder's ``manifest.yaml`` and the status of its tasks.

The manifest records what was run and where: the resolved experiment, the task
list, the git commit of the code, package versions, the machine, and start and
end times. ``boltzgen status RUN_DIR`` reads it back with each task's state.
"""

from __future__ import annotations

import datetime
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from boltzgen.runner.config import Experiment
from boltzgen.runner.tasks import Task, versions

REPOSITORY = Path(__file__).resolve().parent.parent.parent


def git_commit() -> str | None:
    """The commit of the boltzgen checkout (with ``-dirty`` if modified), if it is one."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


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
        "git_commit": git_commit(),
        "versions": versions(),
        "started": _now(),
        "finished": None,
    }
    (run_dir / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def finish_manifest(run_dir: Path) -> None:
    """Stamp the end time into ``manifest.yaml``."""
    path = run_dir / "manifest.yaml"
    manifest: dict[str, Any] = yaml.safe_load(path.read_text())
    manifest["finished"] = _now()
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))


def task_status(run_dir: Path) -> list[tuple[str, str, str]]:
    """``(task key, state, detail)`` for every task of the run.

    States: ``done`` (result written), ``failed`` (error.txt, detail is its last
    line), ``running`` (a checkpoint exists: started or interrupted), ``pending``.
    """
    path = run_dir / "manifest.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: not a run folder")
    rows = []
    for key in yaml.safe_load(path.read_text()).get("tasks", []):
        folder = run_dir / key
        if (folder / "result.json").exists():
            rows.append((key, "done", ""))
        elif (folder / "error.txt").exists():
            lines = (folder / "error.txt").read_text().strip().splitlines()
            rows.append((key, "failed", lines[-1] if lines else ""))
        elif (folder / "checkpoint").exists():
            rows.append((key, "running", ""))
        else:
            rows.append((key, "pending", ""))
    return rows
