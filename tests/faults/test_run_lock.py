"""Two runs on one folder: a lock holding host and pid; a second run refuses with a clear
message or waits (--wait); a lock whose process is gone (same host) is stale and taken."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml

from boltzgen.runner.cli import EXIT_LOCKED, main
from boltzgen.runner.lock import (
    LOCK_NAME,
    RunFolderLocked,
    acquire,
    read_holder,
    release,
    run_folder_lock,
)
from boltzgen.runner.manifest import task_status

EXPERIMENT = {
    "name": "lock",
    "systems": ["double_well_2d"],
    "seeds": [0],
    "executor": "debug",
    "n_reference": 200,
    "methods": {"hmc": {"method": "hmc", "n_chains": 4, "n_warmup": 5, "n_steps": 10}},
}


def dead_pid() -> int:
    """The pid of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def plant(run_dir, host, pid):
    run_dir.mkdir(parents=True, exist_ok=True)
    holder = {"host": host, "pid": pid, "started": 0.0, "process_start": None, "command": "x"}
    (run_dir / LOCK_NAME).write_text(json.dumps(holder))


def test_the_lock_holds_host_and_pid_and_refuses_a_second_holder(tmp_path):
    holder = acquire(tmp_path)
    recorded = read_holder(tmp_path)
    assert (recorded.host, recorded.pid) == (socket.gethostname(), holder.pid)
    with pytest.raises(RunFolderLocked, match=rf"in use by another boltzgen run, pid {holder.pid}"):
        acquire(tmp_path)
    release(tmp_path, holder)
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_whose_process_is_gone_is_stale_and_taken(tmp_path, capfd):
    pid = dead_pid()
    plant(tmp_path, socket.gethostname(), pid)
    holder = acquire(tmp_path)
    assert read_holder(tmp_path).pid == holder.pid
    assert f"removing the stale lock of pid {pid}" in capfd.readouterr().err


def test_a_lock_from_another_host_is_respected_with_a_hint(tmp_path):
    plant(tmp_path, "node-that-is-not-here", 1)
    with pytest.raises(RunFolderLocked, match=r"if no run is active there, delete .*run\.lock"):
        acquire(tmp_path)


def test_wait_polls_until_the_holder_releases(tmp_path, capfd):
    first = acquire(tmp_path)
    polls = []

    def sleep(seconds):
        polls.append(seconds)
        release(tmp_path, first)

    second = acquire(tmp_path, wait=True, poll_s=0.5, sleep=sleep)
    assert polls == [0.5] and read_holder(tmp_path).pid == second.pid
    assert "waiting for the run of pid" in capfd.readouterr().err


def test_a_folder_the_lock_created_and_nothing_used_is_removed(tmp_path):
    with run_folder_lock(tmp_path / "run"):
        assert (tmp_path / "run" / LOCK_NAME).exists()
    assert not (tmp_path / "run").exists()


@pytest.fixture
def experiment_file(tmp_path):
    path = tmp_path / "lock.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT))
    return path


def test_a_second_run_on_a_held_folder_refuses_then_waits(tmp_path, experiment_file, capsys):
    run_dir = tmp_path / "run"
    holder = acquire(run_dir)
    assert main(["run", str(experiment_file), "--out", str(run_dir)]) == EXIT_LOCKED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{run_dir} is in use by another boltzgen run, pid" in err[0]
    assert "--wait" in err[0]
    threading.Timer(1.0, release, (run_dir, holder)).start()
    started = time.monotonic()
    assert main(["run", str(experiment_file), "--out", str(run_dir), "--wait"]) == 0
    assert time.monotonic() - started >= 1.0
    assert not (run_dir / LOCK_NAME).exists()
    assert [state for _, state, _ in task_status(run_dir)] == ["done"]


def test_status_says_interrupted_when_the_holder_is_gone(tmp_path, experiment_file):
    run_dir = tmp_path / "run"
    assert main(["run", str(experiment_file), "--out", str(run_dir)]) == 0
    folder = run_dir / "double_well_2d" / "hmc" / "seed0"
    (folder / "result.json").unlink()
    plant(run_dir, socket.gethostname(), dead_pid())
    assert [state for _, state, _ in task_status(run_dir)] == ["interrupted"]
    plant(run_dir, socket.gethostname(), os.getpid())
    assert [state for _, state, _ in task_status(run_dir)] == ["running"]


def test_two_copies_of_one_task_at_once_compute_it_once(tmp_path):
    """As when dask retries a task it gave up on while the first copy still runs."""
    from concurrent.futures import ThreadPoolExecutor

    from boltzgen.runner.config import parse_experiment
    from boltzgen.runner.tasks import plan, run_task

    (task,) = plan(parse_experiment(dict(EXPERIMENT), "lock.yaml"))
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: run_task(task, tmp_path), range(2))
    assert first == second
    lines = (tmp_path / "completions.log").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["task"] == task.key
