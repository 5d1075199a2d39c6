"""Where tasks run: ``debug`` (in this process) or ``local`` (a process pool).

Worker processes are spawned, not forked (safe with OpenMM and torch threads), and
each uses ``threads`` torch threads so that a pool does not oversubscribe the cores.
"""

from __future__ import annotations

import multiprocessing
import sys
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from boltzgen.runner.tasks import Task, run_task

Report = Callable[[Task, dict[str, Any] | None, str | None], None]


def _run_in_worker(task: Task, run_dir: Path, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    return run_task(task, run_dir)


def _failure(task: Task, run_dir: Path, error: BaseException) -> str:
    """Write the error to the task folder; return its last line."""
    directory = task.directory(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    text = "".join(traceback.format_exception(error))
    (directory / "error.txt").write_text(text)
    return f"{type(error).__name__}: {error}".splitlines()[0]


def run_debug(tasks: Sequence[Task], run_dir: Path, report: Report, workers: int = 1) -> None:
    """Run tasks one after another in this process, with progress bars."""
    for task in tasks:
        try:
            report(task, run_task(task, run_dir, progress=sys.stderr.isatty()), None)
        except Exception as error:
            report(task, None, _failure(task, run_dir, error))


def run_local(tasks: Sequence[Task], run_dir: Path, report: Report, workers: int = 2) -> None:
    """Run tasks in a pool of ``workers`` spawned processes sharing the machine's cores."""
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_run_in_worker, task, run_dir, threads): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            try:
                report(task, future.result(), None)
            except Exception as error:
                report(task, None, _failure(task, run_dir, error))


EXECUTORS: dict[str, Callable[[Sequence[Task], Path, Report, int], None]] = {
    "debug": run_debug,
    "local": run_local,
}
