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

Every executor skips finished tasks (an intact ``result.json`` of the same settings),
and each failure is written to the task folder's ``error.txt``, its first line saying
what went wrong. A task whose worker process dies is rerun (local: in a fresh pool,
dask: on another worker), at most twice, and resumes from its checkpoint.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import shlex
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import torch

from boltzgen.errors import ConfigError
from boltzgen.records.files import WriteError, notice, write_atomic
from boltzgen.runner.config import Experiment, Resources
from boltzgen.runner.progress import task_output
from boltzgen.runner.quiet import quiet_imports
from boltzgen.runner.tasks import Task, is_finished, run_task

Report = Callable[[Task, dict[str, Any] | None, str | None], None]

SUBMIT_COMMANDS = {"slurm": "sbatch", "pbs": "qsub", "sge": "qsub", "lsf": "bsub"}
"""The batch command each scheduler submits jobs with."""


def task_threads(experiment: Experiment, executor: str) -> int:
    """Torch (and OpenMP) threads per task.

    ``threads`` in the experiment wins. Otherwise one per task on this machine
    (``debug``, ``local``): small-batch work on many threads is slower, not faster, on
    a shared machine; a cluster task gets its allocation's cores (``resources.cpus``),
    and a dask LocalCluster splits this machine's cores among its workers.
    """
    if experiment.threads is not None:
        return experiment.threads
    r = experiment.resources
    if executor == "slurm" or (executor == "dask" and r.scheduler != "local"):
        return r.cpus
    if executor == "dask":
        return max(1, (os.cpu_count() or 1) // r.jobs)
    return 1


def thread_environment(threads: int) -> None:
    """Environment for processes started from here: OpenMP, OpenMM's CPU platform, idle sleep.

    OpenMP reads its variables when it loads, so they must be set before a worker starts;
    ``OMP_WAIT_POLICY=PASSIVE`` lets idle OpenMP threads sleep while OpenMM works in the
    same process.
    """
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["OPENMM_CPU_THREADS"] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_threads(threads: int) -> None:
    """Pin this process's torch and OpenMM CPU contexts to ``threads``."""
    thread_environment(threads)
    torch.set_num_threads(threads)


def run_in_worker(task: Task, run_dir: Path, threads: int) -> dict[str, Any]:
    """Entry point of a task in another process: set its threads, say so, then run it."""
    set_threads(threads)
    quiet_imports()
    print(f"  start  {task.key}  ({threads} thread{'s' * (threads > 1)})", flush=True)
    with task_output(task.key, lines=True):
        return run_task(task, run_dir, progress=True)


def _worker_start() -> None:
    """Pool workers leave Ctrl-C to the parent, which stops them without tracebacks, and
    end when the parent ends however it ends (killed, out of memory, a scheduler's
    SIGTERM), instead of computing on as orphans; their checkpoints are written
    atomically, so a rerun resumes them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(sentinel: int) -> None:
    """Wait until the parent's ``sentinel`` is ready (the parent has ended), then exit."""
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def _failure(task: Task, run_dir: Path, error: BaseException) -> str:
    """Write the error to the task folder's ``error.txt`` (its first line says what went
    wrong, the traceback follows); return that line.

    When even ``error.txt`` cannot be written (a full disk), the line is only returned.
    """
    line = f"{type(error).__name__}: {error}".splitlines()[0]
    text = line + "\n\n" + "".join(traceback.format_exception(error))
    with contextlib.suppress(WriteError):
        write_atomic(task.directory(run_dir) / "error.txt", text.encode())
    return line


def _pending(tasks: Sequence[Task], run_dir: Path, report: Report) -> list[Task]:
    """Report finished tasks at once; return those still to run."""
    todo = []
    for task in tasks:
        if is_finished(task, run_dir):
            report(task, run_task(task, run_dir), None)
        else:
            todo.append(task)
    return todo


def run_debug(tasks: Sequence[Task], run_dir: Path, report: Report, experiment: Experiment) -> None:
    """Run tasks one after another in this process."""
    set_threads(task_threads(experiment, "debug"))
    quiet_imports()
    for task in _pending(tasks, run_dir, report):
        print(f"  start  {task.key}", flush=True)
        try:
            with task_output(task.key, lines=not sys.stderr.isatty()):
                result = run_task(task, run_dir, progress=True)
            report(task, result, None)
        except Exception as error:
            report(task, None, _failure(task, run_dir, error))


LOCAL_RETRIES = 2
"""Fresh pools in a row the local executor starts after worker deaths with no task finished."""


def run_local(tasks: Sequence[Task], run_dir: Path, report: Report, experiment: Experiment) -> None:
    """Run tasks in a pool of ``experiment.workers`` spawned processes.

    A worker that dies (killed, out of memory) breaks the pool: the tasks it took down
    with it run again in a fresh pool and resume from their checkpoints; finished tasks
    are never rerun. After :data:`LOCAL_RETRIES` fresh pools in a row in which no task
    finished, the tasks left are reported as failed.
    """
    todo, barren = _pending(tasks, run_dir, report), 0
    while todo:
        lost = _local_round(todo, run_dir, report, experiment)
        barren = barren + 1 if len(lost) == len(todo) else 0
        if lost and barren > LOCAL_RETRIES:
            for task in lost:
                error = RuntimeError(
                    f"worker processes died {barren} times in a row with no task finishing; "
                    "rerun to resume from the checkpoints"
                )
                report(task, None, _failure(task, run_dir, error))
            return
        if lost:
            notice(f"a worker process died; rerunning {len(lost)} task(s) from their checkpoints")
        todo = lost


def _local_round(
    todo: Sequence[Task], run_dir: Path, report: Report, experiment: Experiment
) -> list[Task]:
    """Run ``todo`` in one pool; return the tasks lost to a worker that died."""
    workers = min(experiment.workers, len(todo))
    threads = task_threads(experiment, "local")
    thread_environment(threads)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start)
    broken = []
    try:
        futures = {pool.submit(run_in_worker, task, run_dir, threads): task for task in todo}
        for future in as_completed(futures):
            if isinstance(future.exception(), BrokenProcessPool):
                broken.append(futures[future])
            else:
                _collect(futures[future], future.result, run_dir, report)
    except KeyboardInterrupt:
        _stop(pool)
        raise
    pool.shutdown()
    return [task for task in todo if task in broken]


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel queued tasks and end running workers (checkpoints are written atomically)."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def _collect(task: Task, result: Callable[[], Any], run_dir: Path, report: Report) -> None:
    try:
        report(task, result(), None)
    except Exception as error:
        report(task, None, _failure(task, run_dir, error))


def check_executor(experiment: Experiment, executor: str) -> None:
    """Fail at once when a cluster executor's batch command is not on ``PATH``."""
    scheduler = "slurm" if executor == "slurm" else experiment.resources.scheduler
    if executor not in ("slurm", "dask") or scheduler == "local":
        return
    command = SUBMIT_COMMANDS[scheduler]
    if shutil.which(command) is None:
        raise ConfigError(
            experiment.source,
            "executor",
            f"is {executor} (scheduler {scheduler}), which submits jobs with `{command}`, and "
            f"`{command}` is not on PATH here: run on the cluster's login node, or use "
            "--executor local (or resources.scheduler: local for dask on this machine)",
        )


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
    if cluster == "slurm":
        check_executor(experiment, "slurm")
    todo = _pending(tasks, run_dir, report)
    if not todo:
        return
    executor = submitit_executor(run_dir, experiment.resources, cluster)
    threads = task_threads(experiment, "slurm")
    runner = RequeueableTask()
    jobs = executor.map_array(runner, todo, [run_dir] * len(todo), [threads] * len(todo))
    print(f"submitted {len(jobs)} jobs: {jobs[0].job_id.split('_')[0]}", flush=True)
    for task, job in zip(todo, jobs, strict=True):
        _collect(task, job.result, run_dir, report)


def dask_cluster(resources: Resources, run_dir: Path | None = None) -> Any:
    """A dask-jobqueue cluster (not yet scaled) for ``resources``, or a LocalCluster."""
    if resources.scheduler == "local":
        from dask.distributed import LocalCluster

        return LocalCluster(
            n_workers=resources.jobs, threads_per_worker=1, processes=True, dashboard_address=None
        )
    return _jobqueue_cluster(resources, run_dir)


def _jobqueue_cluster(resources: Resources, run_dir: Path | None = None) -> Any:
    """One dask worker per batch job that runs one task at a time (the ``task`` resource).

    The task's torch threads use the job's cores, so worker × torch threads never
    exceed the allocation.
    """
    import dask_jobqueue

    kind = {
        "slurm": dask_jobqueue.SLURMCluster,
        "pbs": dask_jobqueue.PBSCluster,
        "sge": dask_jobqueue.SGECluster,
        "lsf": dask_jobqueue.LSFCluster,
    }[resources.scheduler]
    hours, minutes = divmod(resources.time_min, 60)
    extra = _gpu_directives(resources)
    pbs = {"resource_spec": _pbs_select(resources)} if resources.scheduler == "pbs" else {}
    return kind(
        cores=resources.cpus,
        processes=1,
        worker_extra_args=["--resources", "task=1"],
        python=sys.executable,
        log_directory=None if run_dir is None else str(run_dir / "dask-logs"),
        memory=f"{resources.memory_gb:g}GiB",
        **pbs,
        walltime=f"{hours:02d}:{minutes:02d}:00",
        queue=resources.partition,
        **_account(resources),
        job_extra_directives=extra,
        job_script_prologue=list(resources.setup),
        scheduler_options={"dashboard_address": None},
    )


def _account(resources: Resources) -> dict[str, str | None]:
    """The account to charge, under the keyword each dask-jobqueue cluster takes.

    Slurm and PBS take ``account`` (``--account``, ``-A``); LSF and SGE call it the
    project (``-P``).
    """
    key = "project" if resources.scheduler in ("lsf", "sge") else "account"
    return {key: resources.account}


def _pbs_select(r: Resources) -> str:
    """PBS Pro's chunk request: cores, GPUs and memory in one ``select`` statement."""
    gpus = f":ngpus={r.gpus}" if r.gpus else ""
    return f"select=1:ncpus={r.cpus}{gpus}:mem={r.memory_gb:g}GB"


def _gpu_directives(resources: Resources) -> list[str]:
    if resources.gpus == 0 or resources.scheduler == "pbs":
        return []
    return {
        "slurm": [f"--gres=gpu:{resources.gpus}"],
        "sge": [f"-l gpu={resources.gpus}"],
        "lsf": [f'-gpu "num={resources.gpus}"'],
    }[resources.scheduler]


def run_dask(tasks: Sequence[Task], run_dir: Path, report: Report, experiment: Experiment) -> None:
    """Run unfinished tasks on dask workers (each task retried twice if its worker dies)."""
    from dask.distributed import Client, as_completed

    check_executor(experiment, "dask")
    todo = _pending(tasks, run_dir, report)
    if not todo:
        return
    resources = experiment.resources
    threads = task_threads(experiment, "dask")
    thread_environment(threads)
    with dask_cluster(resources, run_dir) as cluster, Client(cluster) as client:
        if resources.scheduler != "local":
            cluster.scale(jobs=resources.jobs)
        futures = client.map(
            run_in_worker,
            todo,
            run_dir=run_dir,
            threads=threads,
            pure=False,
            retries=2,
            resources=None if resources.scheduler == "local" else {"task": 1},
        )
        index = {future.key: task for future, task in zip(futures, todo, strict=True)}
        if resources.scheduler != "local":
            for future in as_completed(futures):
                _collect(index[future.key], future.result, run_dir, report)
            return
        _gather_local(client, futures, index, run_dir, report)


DASK_NO_WORKERS_S = 120.0
"""Seconds a dask LocalCluster may stay without a worker before its tasks are given up."""


def _gather_local(
    client: Any, futures: list[Any], index: dict[str, Task], run_dir: Path, report: Report
) -> None:
    """Collect the futures of a LocalCluster; if every worker has died and none came back
    for :data:`DASK_NO_WORKERS_S`, report the tasks left as failed instead of waiting."""
    from dask.distributed import TimeoutError as DaskTimeout
    from dask.distributed import wait

    pending, since = set(futures), time.monotonic()
    while pending:
        try:
            done, pending = wait(pending, timeout=5, return_when="FIRST_COMPLETED")
        except DaskTimeout:
            done = set()
        for future in done:
            _collect(index[future.key], future.result, run_dir, report)
        if client.scheduler_info().get("workers"):
            since = time.monotonic()
        elif time.monotonic() - since > DASK_NO_WORKERS_S:
            error = RuntimeError(
                "the dask LocalCluster lost all its workers and none restarted; "
                "rerun to resume from the checkpoints"
            )
            for future in pending:
                report(index[future.key], None, _failure(index[future.key], run_dir, error))
            return


def render_job_script(experiment: Experiment, executor: str, run_dir: Path | None = None) -> str:
    """The batch script a cluster executor submits (for review; nothing is submitted)."""
    r = experiment.resources
    folder = (run_dir or Path("runs") / experiment.name).resolve() / "submitit"
    if executor == "slurm":
        from submitit.slurm.slurm import _make_sbatch_string

        return _make_sbatch_string(
            command=f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {folder}/%j",
            folder=f"{folder}/%j",
            job_name="boltzgen",
            partition=r.partition,
            time=r.time_min,
            cpus_per_task=r.cpus,
            gpus_per_node=r.gpus or None,
            mem=f"{int(r.memory_gb * 1024)}MB",
            account=r.account,
            array_parallelism=r.array_parallelism,
            setup=list(r.setup),
            map_count=len(experiment.systems) * len(experiment.methods) * len(experiment.seeds),
        )
    if executor == "dask" and r.scheduler != "local":
        with _jobqueue_cluster(r, folder.parent) as cluster:
            return cluster.job_script()
    raise ValueError(f"executor {executor!r} (scheduler {r.scheduler}) submits no batch script")


def describe_executor(experiment: Experiment, executor: str, run_dir: Path) -> str:
    """A few lines on where and how the tasks would run, with the job script if any."""
    threads = task_threads(experiment, executor)
    cores = os.cpu_count() or 1
    r = experiment.resources
    if executor == "debug":
        return f"executor: debug — one task after another in this process, {threads} thread(s)"
    if executor == "local":
        w = experiment.workers
        return (
            f"executor: local — {w} worker processes × {threads} thread(s) each "
            f"on this machine's {cores} cores"
        )
    if executor == "dask" and r.scheduler == "local":
        return (
            f"executor: dask with scheduler: local — a dask LocalCluster of {r.jobs} worker "
            f"processes on this machine (no batch jobs), {threads} thread(s) each "
            f"of {cores} cores"
        )
    scheduler = "slurm" if executor == "slurm" else r.scheduler
    command = SUBMIT_COMMANDS[scheduler]
    logs = "submitit" if executor == "slurm" else "dask-logs"
    found = "" if shutil.which(command) else f" (`{command}` is not on PATH here)"
    head = (
        f"executor: {executor} — jobs submitted with `{command}`{found}, {threads} thread(s) "
        f"per task; logs under {run_dir / logs}\njob script:"
    )
    return head + "\n" + render_job_script(experiment, executor, run_dir)


EXECUTORS: dict[str, Callable[[Sequence[Task], Path, Report, Experiment], None]] = {
    "debug": run_debug,
    "local": run_local,
    "slurm": run_slurm,
    "dask": run_dask,
}
