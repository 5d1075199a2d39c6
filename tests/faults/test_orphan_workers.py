"""A ``boltzgen run`` on the local executor that is killed (SIGKILL, or a scheduler's
SIGTERM) takes its pool workers with it: none keeps computing as an orphan.

The harness of ``benchmarks/fault_injection.py`` starts the run; a long HMC task keeps
the workers busy until the parent is killed.
"""

import signal
import time

import psutil
import pytest

pytestmark = pytest.mark.faults

LONG_HMC = {"method": "hmc", "n_chains": 8, "n_warmup": 10, "n_steps": 10**7, "n_leapfrog": 5}


@pytest.mark.parametrize("parent_signal", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_workers_end_with_their_run(harness, tmp_path, parent_signal):
    raw = harness.experiment([0, 1], "local", workers=2)
    raw["methods"] = {"hmc": LONG_HMC}
    path = harness.write_experiment(tmp_path, raw)
    log = tmp_path / "run.log"
    process, workers = harness.start_run(path, tmp_path / "run", log), []
    try:
        deadline = time.monotonic() + 120
        while harness._starts(log) < 2 and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        workers = harness.workers(process.pid)
        assert len(workers) == 2, log.read_text()
        process.send_signal(parent_signal)
        process.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert alive == [], f"workers still running after their run was killed: {alive}"
    finally:
        for worker in workers:
            if worker.is_running():
                worker.kill()
        if process.poll() is None:
            process.kill()
