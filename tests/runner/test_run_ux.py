"""What a user sees around a run: threads, progress, Ctrl-C, dry runs, missing batch commands."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from boltzgen.runner.cli import main
from boltzgen.runner.config import parse_experiment
from boltzgen.runner.executors import task_threads

HMC = {"method": "hmc", "n_chains": 4, "n_warmup": 5, "n_steps": 20, "n_leapfrog": 3}
RAW = {"name": "u", "systems": ["double_well_2d"], "n_reference": 50, "methods": {"hmc": HMC}}
CLUSTER = {"cpus": 4, "gpus": 1, "memory_gb": 8, "time_min": 30, "jobs": 2}
ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 300
SHUTDOWN_S = 180
"""Waits for a child run to start and to stop after Ctrl-C: generous, since a loaded machine
slows the child's imports and its checkpoint write (no timing is asserted)."""


def write(tmp_path, **changes) -> Path:
    path = tmp_path / "u.yaml"
    path.write_text(yaml.safe_dump({**RAW, **changes}))
    return path


def cli(args, timeout=120, env=None):
    return subprocess.run(
        [sys.executable, "-m", "boltzgen.runner.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


SEEDS = (0, 1)


@pytest.fixture(scope="module")
def two_seed_run(tmp_path_factory):
    """``boltzgen run`` of two seeds on two workers with OMP_NUM_THREADS=2, once per
    executor: its output and run folder, shared by the tests that read them."""
    runs = {}

    def run(executor):
        if executor not in runs:
            tmp_path = tmp_path_factory.mktemp(executor)
            path = write(tmp_path, executor=executor, seeds=list(SEEDS), workers=2)
            out = cli(["run", path, "--out", tmp_path / "run"], env={"OMP_NUM_THREADS": "2"})
            runs[executor] = out, tmp_path / "run"
        return runs[executor]

    return run


@pytest.mark.parametrize("executor", ["debug", "local"])
def test_tasks_run_on_one_thread_and_say_when_they_start_and_finish(two_seed_run, executor):
    out, run_dir = two_seed_run(executor)
    assert out.returncode == 0, out.stderr
    for seed in SEEDS:
        key = f"double_well_2d/hmc/seed{seed}"
        assert f"start  {key}" in out.stdout and f"done   {key}" in out.stdout
        record = json.loads((run_dir / key / "result.json").read_text())
        assert record["versions"]["threads"] == "1"


def test_progress_becomes_labelled_lines_in_a_log(two_seed_run):
    out, _ = two_seed_run("debug")
    lines = [line.strip() for line in out.stderr.splitlines() if "HMC sampling" in line]
    labels = [f"double_well_2d/hmc/seed{seed} |" for seed in SEEDS]
    assert lines and all(line.startswith(tuple(labels)) for line in lines)
    for label in labels:
        assert "20/20" in [line for line in lines if line.startswith(label)][-1]
    assert "\r" not in out.stderr


@pytest.mark.parametrize("executor", ["debug", pytest.param("local", marks=pytest.mark.slow)])
def test_ctrl_c_prints_one_line_and_status_says_interrupted(tmp_path, capsys, executor):
    long = {**HMC, "n_steps": 10**7}
    path = write(tmp_path, executor=executor, methods={"hmc": long})
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "boltzgen.runner.cli", "run", str(path), "--out", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,
    )
    settings = run_dir / "double_well_2d" / "hmc" / "seed0" / "checkpoint" / "settings.json"
    deadline = time.time() + STARTUP_S
    while not settings.exists() and time.time() < deadline:
        time.sleep(0.2)
    if not settings.exists():
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("the run did not start its task")
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=SHUTDOWN_S)
    assert process.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.count("interrupted; rerun the same command to resume") == 1
    assert main(["status", str(run_dir)]) == 0
    assert "interrupted double_well_2d/hmc/seed0" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("scheduler, command", [("pbs", "qsub"), ("slurm", "sbatch")])
def test_dask_without_its_batch_command_fails_at_once(
    tmp_path, monkeypatch, capsys, scheduler, command
):
    resources = {**CLUSTER, "scheduler": scheduler}
    path = write(tmp_path, executor="dask", resources=resources)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    start = time.time()
    status = main(["run", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and time.time() - start < 60
    assert f"`{command}`" in err and "dask" in err
    assert "Traceback" not in err


def test_slurm_dry_run_prints_the_array_job_that_is_submitted(tmp_path, capsys):
    path = write(tmp_path, executor="slurm", seeds=[0, 1, 2], resources=CLUSTER)
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "#SBATCH --array=0-2%" in text
    assert sys.executable in text
    assert f"--output={tmp_path / 'run' / 'submitit'}" in text
    assert "3 tasks" in text and "DryRun" not in text and "HMCParams(" not in text


def test_pbs_dry_run_requests_gpus_inside_select_and_the_env_python(tmp_path, capsys):
    path = write(tmp_path, executor="dask", resources={**CLUSTER, "scheduler": "pbs"})
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "#PBS -l select=1:ncpus=4:ngpus=1:mem=8GB" in text
    assert "-l ngpus" not in text
    assert f"{sys.executable} -m distributed" in text
    assert str(tmp_path / "run" / "dask-logs") in text
    assert "--resources task=1" in text


def test_dask_local_dry_run_is_explained(tmp_path, capsys):
    path = write(tmp_path, executor="dask", resources={"scheduler": "local", "jobs": 2})
    assert main(["run", str(path), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "scheduler: local" in text and "LocalCluster" in text


@pytest.mark.parametrize("executor", ["local", "debug", "dask", "slurm"])
def test_threads_never_oversubscribe_the_cores(executor):
    experiment = parse_experiment({**RAW, "resources": {"scheduler": "local", "jobs": 2}}, "x")
    threads = task_threads(experiment, executor)
    if executor == "dask":
        assert threads * 2 <= max(2, os.cpu_count() or 1)
    elif executor == "slurm":
        assert threads == experiment.resources.cpus
    else:
        assert threads == 1


def test_threads_can_be_set_per_experiment():
    experiment = parse_experiment({**RAW, "threads": 3}, "x")
    assert task_threads(experiment, "local") == 3


def test_ctrl_c_during_training_names_the_step_it_resumes_from(tmp_path, capsys):
    bg = {
        "method": "boltzmann_generator",
        "flow": {"n_layers": 1, "hidden": 8},
        "train": {"steps": 10**6, "batch_size": 16, "n_data": 64, "checkpoint_every": 5},
        "n_samples": 16,
    }
    path = write(tmp_path, executor="debug", methods={"bg": bg})
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "boltzgen.runner.cli", "run", str(path), "--out", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,
    )
    shared = run_dir / "double_well_2d" / "_generators"
    deadline = time.time() + STARTUP_S
    while not list(shared.glob("*/train/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.2)
    if not list(shared.glob("*/train/checkpoint.pt")):
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("the run wrote no training checkpoint")
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=SHUTDOWN_S)
    line = next(x for x in err.splitlines() if x.startswith("interrupted"))
    step = int(line.split("from training step ")[1].split()[0])
    assert step >= 5 and step % 5 == 0
    assert main(["status", str(run_dir)]) == 0
    assert f"resumes from training step {step}" in capsys.readouterr().out


def test_run_dask_itself_refuses_without_qsub(tmp_path, monkeypatch):
    from boltzgen.errors import ConfigError
    from boltzgen.runner.executors import run_dask
    from boltzgen.runner.tasks import plan

    monkeypatch.setenv("PATH", str(tmp_path))
    raw = {**RAW, "executor": "dask", "resources": {**CLUSTER, "scheduler": "pbs"}}
    experiment = parse_experiment(raw, "x.yaml")
    with pytest.raises(ConfigError, match="`qsub`"):
        run_dask(plan(experiment), tmp_path, lambda *a: None, experiment)
