"""Kill worker processes at random instants during a sweep; count lost or wrong results.

A sweep of short tasks on ``double_well_2d`` (HMC, and a Boltzmann generator trained
for a few checkpointed steps) runs under ``boltzgen run`` on the local executor or on
a dask ``LocalCluster``. While it runs, a seeded harness SIGKILLs a randomly chosen
worker process at random instants (each within a few seconds of a worker beginning a
task); the run is then repeated until it exits cleanly.
Every task's ``samples.npz`` must equal a clean run's bit for bit and its
``result.json`` must equal it outside wall-clock fields, and no task may be computed
to completion twice (``RUN_DIR/completions.log`` holds one line per completion).

    python benchmarks/fault_injection.py --kills 100 --seed 0

prints one line per round and the totals: kill points, lost results (a task without an
intact result after the reruns), wrong results (differing from the clean run) and
tasks completed twice. The goal is zero of each. ``tests/faults`` runs the same
harness on a smaller scale (``make test-faults``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent

HMC = {"method": "hmc", "n_chains": 8, "n_warmup": 20, "n_steps": 60, "n_leapfrog": 5}
BG = {
    "method": "boltzmann_generator",
    "n_samples": 300,
    "flow": {"n_layers": 2, "hidden": 16},
    "train": {"steps": 60, "batch_size": 32, "n_data": 200, "checkpoint_every": 5},
}
VOLATILE = ("started", "finished", "wall_s", "_per_s", "per_second", "seconds")
"""Endings of the result fields that measure wall-clock time, left out of the comparison."""


def experiment(seeds: Iterable[int], executor: str, workers: int = 2) -> dict[str, Any]:
    """The sweep: HMC and a briefly trained generator on the double well, one per seed."""
    return {
        "name": "faults",
        "systems": ["double_well_2d"],
        "seeds": list(seeds),
        "methods": {"hmc": HMC, "bg": BG},
        "n_reference": 200,
        "threads": 1,
        "workers": workers,
        "executor": executor,
        "resources": {"scheduler": "local", "jobs": workers},
    }


def write_experiment(folder: Path, raw: dict[str, Any]) -> Path:
    path = folder / "faults.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def start_run(experiment_file: Path, run_dir: Path, log: Path) -> subprocess.Popen:
    """``boltzgen run`` in a new process (its output appended to ``log``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "boltzgen.runner.cli", "run", str(experiment_file)]
    with open(log, "a") as out:
        return subprocess.Popen(
            [*command, "--out", str(run_dir)], stdout=out, stderr=subprocess.STDOUT, env=env
        )


def workers(pid: int) -> list[psutil.Process]:
    """The worker processes under ``pid``: spawned multiprocessing children, not the
    resource tracker (local pool workers and dask workers alike)."""
    found = []
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for child in children:
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in line and "resource_tracker" not in line:
            found.append(child)
    return found


@dataclass
class Round:
    """One faulted run: kills made, reruns needed, and what the comparison found."""

    kills: list[float] = field(default_factory=list)
    runs: int = 0
    lost: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)


def _starts(log: Path) -> int:
    """Tasks begun so far: the ``start`` lines workers print once they are up."""
    return log.read_text(errors="replace").count("  start  ") if log.exists() else 0


def kill_randomly(
    process: subprocess.Popen, kills: int, rng: random.Random, max_delay_s: float, log: Path
) -> list[float]:
    """SIGKILL a random worker of ``process`` ``kills`` times; the kill instants.

    Before each kill a worker must have begun a task since the last one (so the run
    moves on between kills, and kills land in tasks rather than in interpreter start-up);
    the kill then comes after a random delay of up to ``max_delay_s``.
    """
    start, done, seen = time.monotonic(), [], _starts(log)
    while len(done) < kills and process.poll() is None:
        if _starts(log) <= seen:
            time.sleep(0.1)
            continue
        time.sleep(rng.uniform(0.0, max_delay_s))
        victims = sorted(workers(process.pid), key=lambda p: p.pid)
        if not victims:
            continue
        try:
            os.kill(rng.choice(victims).pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        done.append(time.monotonic() - start)
        seen = _starts(log)
    return done


def run_with_kills(
    experiment_file: Path,
    run_dir: Path,
    kills: int,
    rng: random.Random,
    max_delay_s: float = 4.0,
    max_runs: int = 8,
) -> Round:
    """Run the sweep, killing ``kills`` workers in all (a run that ends first takes the
    rest into its rerun), then rerun until it succeeds (at most ``max_runs`` runs)."""
    result, log = Round(), run_dir.parent / f"{run_dir.name}.log"
    for _ in range(max_runs):
        process = start_run(experiment_file, run_dir, log)
        if len(result.kills) < kills:
            left = kills - len(result.kills)
            result.kills += kill_randomly(process, left, rng, max_delay_s, log)
        code = process.wait(timeout=1800)
        result.runs += 1
        if code == 0:
            break
    return result


def _strip(value: Any) -> Any:
    """``value`` without the wall-clock fields."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.endswith(VOLATILE)}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _samples(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "samples.npz") as data:
        return {key: data[key] for key in data.files}


def compare(clean: Path, faulted: Path, keys: Iterable[str], verdict: Round) -> Round:
    """Record in ``verdict`` the tasks whose result is lost, wrong, or computed twice."""
    from boltzgen.records.files import damage

    completions = count_completions(faulted)
    for key in keys:
        folder = faulted / key
        if any(damage(folder / name) for name in ("samples.npz", "result.json")):
            verdict.lost.append(key)
            continue
        a, b = _samples(clean / key), _samples(folder)
        same_samples = a.keys() == b.keys() and all(
            a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k], equal_nan=True) for k in a
        )
        records = [json.loads((d / key / "result.json").read_text()) for d in (clean, faulted)]
        if not same_samples or _strip(records[0]) != _strip(records[1]):
            verdict.wrong.append(key)
        if completions[key] > 1:
            verdict.twice.append(key)
    return verdict


def count_completions(run_dir: Path) -> Counter:
    """How many times each task was computed to completion in ``run_dir``."""
    log = run_dir / "completions.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(json.loads(line)["task"] for line in lines)


def task_keys(seeds: Iterable[int]) -> list[str]:
    return [f"double_well_2d/{label}/seed{s}" for label in ("hmc", "bg") for s in seeds]


def clean_run(folder: Path, seeds: list[int]) -> Path:
    """The sweep without faults, in this process (debug executor)."""
    from boltzgen.runner.cli import main

    run_dir = folder / "clean"
    path = write_experiment(folder, experiment(seeds, "debug"))
    if main(["run", str(path), "--out", str(run_dir)]) != 0:
        raise RuntimeError(f"the clean sweep failed: see {run_dir}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="kill points in all")
    parser.add_argument("--per-round", type=int, default=10, help="kills during each run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method in a sweep")
    parser.add_argument("--max-delay", type=float, default=4.0, help="seconds between kills")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/fault_injection"))
    args = parser.parse_args(argv)
    rng, seeds = random.Random(args.seed), list(range(args.seeds))
    args.out.mkdir(parents=True, exist_ok=True)
    clean = clean_run(args.out, seeds)
    rounds, total = [], Round()
    while len(total.kills) < args.kills and len(rounds) < 3 * args.kills:
        index = len(rounds)
        executor = ("local", "dask")[index % 2]
        folder = args.out / f"round{index:02d}"
        folder.mkdir(exist_ok=True)
        path = write_experiment(folder, experiment(seeds, executor))
        kills = min(args.per_round, args.kills - len(total.kills))
        verdict = run_with_kills(path, folder / "run", kills, rng, args.max_delay)
        compare(clean, folder / "run", task_keys(seeds), verdict)
        rounds.append(verdict)
        total.kills += verdict.kills
        for name in ("lost", "wrong", "twice"):
            getattr(total, name).extend(getattr(verdict, name))
        print(
            f"round {index:2d} ({executor:5s}): {len(verdict.kills)} kills, {verdict.runs} run(s), "
            f"lost {len(verdict.lost)}, wrong {len(verdict.wrong)}, "
            f"computed twice {len(verdict.twice)}",
            flush=True,
        )
    print(
        f"{len(total.kills)} kill points over {len(rounds)} sweeps of {2 * len(seeds)} tasks: "
        f"{len(total.lost)} lost, {len(total.wrong)} wrong, {len(total.twice)} computed twice"
    )
    return 0 if not (total.lost or total.wrong or total.twice) else 1


if __name__ == "__main__":
    sys.exit(main())
