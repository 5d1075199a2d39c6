"""Where tasks run: ``debug``, ``local``, ``slurm`` (submitit) or ``dask`` (dask-jobqueue).

* ``debug`` — one after another in this process (progress bars, pdb-friendly).
* ``local`` — a pool of spawned processes on this machine, each with its share of
  the cores (spawned, not forked: safe with OpenMM and torch threads).
* ``slurm`` — a submitit job array, one job per task, with the experiment's
  ``resources``. A job that reaches its time limit or is preempted is requeued by
  submitit and resumes from the task's checkpoint.
* ``dask`` — dask-jobqueue workers on PBS, SGE, LSF or Slurm (``resources.scheduler``),
  or a ``LocalCluster`` on this machine (``scheduler: local``); a task lost with
  its worker is retried and resumes from its checkpoint.

Every executor skips finished tasks (their ``result.json`` exists), and each failure
is written to the task folder's ``error.txt``.
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

from boltzgen.runner.config import Experiment, Resources
from boltzgen.runner.tasks import Task, run_task

Report = Callable[[Task, dict[str, Any] | None, str | None], None]


def run_in_worker(task: Task, run_dir: Path, threads: int) -> dict[str, Any]:
    """Entry point of a task in another process: set its threads, then run it."""
    torch.set_num_threads(threads)
    return run_task(task, run_dir)


def _failure(task: Task, run_dir: Path, error: BaseException) -> str:
    """Write the error to the task folder; return its first line."""
    directory = task.directory(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    text = "".join(traceback.format_exception(error))
    (directory / "error.txt").write_text(text)
    return f"{type(error).__name__}: {error}".splitlines()[0]


def _pending(tasks: Sequence[Task], run_dir: Path, report: Report) -> list[Task]:
    """Report finished tasks at once; return those still to run."""
    todo = []
    for task in tasks:
        if (task.directory(run_dir) / "result.json").exists():
            report(task, run_task(task, run_dir), None)
        else:
            todo.append(task)
    return todo


def run_debug(tasks: Sequence[Task], run_dir: Path, report: Report, experiment: Experiment) -> None:
    """Run tasks one after another in this process."""
    for task in tasks:
        try:
            report(task, run_task(task, run_dir, progress=sys.stderr.isatty()), None)
        except Exception as error:
            report(task, None, _failure(task, run_dir, error))


def run_local(tasks: Sequence[Task], run_dir: Path, report: Report, experiment: Experiment) -> None:
    """Run tasks in a pool of ``experiment.workers`` spawned processes."""
    todo = _pending(tasks, run_dir, report)
    if not todo:
        return
    workers = min(experiment.workers, len(todo))
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(run_in_worker, task, run_dir, threads): task for task in todo}
        for future in as_completed(futures):
            _collect(futures[future], future.result, run_dir, report)


def _collect(task: Task, result: Callable[[], Any], run_dir: Path, report: Report) -> None:
    try:
        report(task, result(), None)
    except Exception as error:
        report(task, None, _failure(task, run_dir, error))


class RequeueableTask:
    """A submitit callable whose jobs are requeued on timeout or preemption.

    submitit calls :meth:`checkpoint` when the job is about to be killed; returning
    the same call requeues it, and the task resumes from its own checkpoint folder.
    """

    def __call__(self, task: Task, run_dir: Path, threads: int) -> dict[str, Any]:
        return run_in_worker(task, run_dir, threads)

    def checkpoint(self, task: Task, run_dir: Path, threads: int) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(RequeueableTask(), task, run_dir, threads)


def submitit_executor(run_dir: Path, resources: Resources, cluster: str | None = None) -> Any:
    """A submitit executor for ``resources`` (``cluster="local"`` runs jobs on this machine)."""
    import submitit

    executor = submitit.AutoExecutor(folder=run_dir / "submitit" / "%j", cluster=cluster)
    executor.update_parameters(
        name="boltzgen",
        timeout_min=resources.time_min,
        cpus_per_task=resources.cpus,
        gpus_per_node=resources.gpus,
        mem_gb=resources.memory_gb,
        slurm_partition=resources.partition,
        slurm_account=resources.account,
        slurm_array_parallelism=resources.array_parallelism,
        slurm_setup=list(resources.setup),
    )
    return executor


def run_slurm(
    tasks: Sequence[Task],
    run_dir: Path,
    report: Report,
    experiment: Experiment,
    cluster: str | None = "slurm",
) -> None:
    """Submit unfinished tasks as one submitit job array and wait for them."""
    todo = _pending(tasks, run_dir, report)
    if not todo:
        return
    executor = submitit_executor(run_dir, experiment.resources, cluster)
    threads = experiment.resources.cpus
    runner = RequeueableTask()
    jobs = executor.map_array(runner, todo, [run_dir] * len(todo), [threads] * len(todo))
    print(f"submitted {len(jobs)} jobs: {jobs[0].job_id.split('_')[0]}", flush=True)
    for task, job in zip(todo, jobs, strict=True):
        _collect(task, job.result, run_dir, report)


def dask_cluster(resources: Resources) -> Any:
    """A dask-jobqueue cluster (not yet scaled) for ``resources``, or a LocalCluster."""
    if resources.scheduler == "local":
        from dask.distributed import LocalCluster

        return LocalCluster(
            n_workers=resources.jobs, threads_per_worker=1, processes=True, dashboard_address=None
        )
    import dask_jobqueue

    kind = {
        "slurm": dask_jobqueue.SLURMCluster,
        "pbs": dask_jobqueue.PBSCluster,
        "sge": dask_jobqueue.SGECluster,
        "lsf": dask_jobqueue.LSFCluster,
    }[resources.scheduler]
    hours, minutes = divmod(resources.time_min, 60)
    extra = _gpu_directives(resources)
    return kind(
        cores=resources.cpus,
        processes=1,
        memory=f"{resources.memory_gb:g}GiB",
        walltime=f"{hours:02d}:{minutes:02d}:00",
        queue=resources.partition,
        account=resources.account,
        job_extra_directives=extra,
        job_script_prologue=list(resources.setup),
        scheduler_options={"dashboard_address": None},
    )


def _gpu_directives(resources: Resources) -> list[str]:
    if resources.gpus == 0:
        return []
    return {
        "slurm": [f"--gres=gpu:{resources.gpus}"],
        "pbs": [f"-l ngpus={resources.gpus}"],
        "sge": [f"-l gpu={resources.gpus}"],
        "lsf": [f'-gpu "num={resources.gpus}"'],
    }[resources.scheduler]


def run_dask(tasks: Sequence[Task], run_dir: Path, report: Report, experiment: Experiment) -> None:
    """Run unfinished tasks on dask workers (each task retried twice if its worker dies)."""
    from dask.distributed import Client, as_completed

    todo = _pending(tasks, run_dir, report)
    if not todo:
        return
    resources = experiment.resources
    with dask_cluster(resources) as cluster, Client(cluster) as client:
        if resources.scheduler != "local":
            cluster.scale(jobs=resources.jobs)
        futures = client.map(
            run_in_worker, todo, run_dir=run_dir, threads=resources.cpus, pure=False, retries=2
        )
        index = {future.key: task for future, task in zip(futures, todo, strict=True)}
        for future in as_completed(futures):
            _collect(index[future.key], future.result, run_dir, report)


def render_job_script(experiment: Experiment, executor: str) -> str:
    """The batch script a cluster executor would submit for one task (for review)."""
    r = experiment.resources
    if executor == "slurm":
        from submitit.slurm.slurm import _make_sbatch_string

        return _make_sbatch_string(
            command="python -u -m submitit.core._submit '%j'",
            folder="runs/submitit/%j",
            job_name="boltzgen",
            partition=r.partition,
            time=r.time_min,
            cpus_per_task=r.cpus,
            gpus_per_node=r.gpus or None,
            mem=f"{int(r.memory_gb * 1024)}MB",
            account=r.account,
            array_parallelism=r.array_parallelism,
            setup=list(r.setup),
        )
    if executor == "dask" and r.scheduler != "local":
        with dask_cluster(r) as cluster:
            return cluster.job_script()
    raise ValueError(f"executor {executor!r} (scheduler {r.scheduler}) submits no batch script")


EXECUTORS: dict[str, Callable[[Sequence[Task], Path, Report, Experiment], None]] = {
    "debug": run_debug,
    "local": run_local,
    "slurm": run_slurm,
    "dask": run_dask,
}
