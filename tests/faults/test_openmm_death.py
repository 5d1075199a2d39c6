"""An OpenMM worker dying mid-batch: once, it is replaced and the task's result is the
same as without the death; on every try, the task ends with a clear error in
``status``, the other tasks finish and no result is written for it."""

import functools
import os
import re
import signal
import time

import numpy as np
import pytest
import yaml

import boltzgen.energies.openmm as openmm_energy
from boltzgen.runner.config import parse_experiment
from boltzgen.runner.executors import run_debug
from boltzgen.runner.manifest import task_status, write_manifest
from boltzgen.runner.tasks import plan, run_task
from boltzgen.systems import CATALOG

pytestmark = pytest.mark.faults

HMC = {
    "method": "hmc",
    "n_chains": 4,
    "n_warmup": 5,
    "n_steps": 10,
    "n_leapfrog": 3,
    "step_size": 0.0005,
}


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    """Alanine dipeptide in vacuum, evaluated by one OpenMM worker process."""
    raw = yaml.safe_load((CATALOG / "alanine_dipeptide_vacuum.yaml").read_text())
    raw["energy"]["structure"] = str(CATALOG / raw["energy"]["structure"])
    raw["energy"].update(backend="openmm", n_workers=1, platform="Reference")
    raw.pop("reference")
    path = tmp_path_factory.mktemp("card") / "ala2_pool.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def experiment(card, systems=None):
    raw = {
        "name": "openmm",
        "systems": systems or [card],
        "seeds": [0],
        "n_reference": 200,
        "methods": {"hmc": HMC},
    }
    return parse_experiment(raw, "openmm.yaml")


def killing_on_call(calls: int):
    """A ``_WorkerPool.evaluate`` that SIGKILLs a worker before its ``calls``-th batch."""
    original, seen = openmm_energy._WorkerPool.evaluate, []

    def evaluate(self, positions, with_forces):
        seen.append(1)
        if len(seen) == calls:
            victim = self.pids[0]
            os.kill(victim, signal.SIGKILL)
            while self._workers[0].process.is_alive():
                time.sleep(0.01)
        return original(self, positions, with_forces)

    return evaluate, seen


def test_a_worker_killed_mid_batch_is_replaced_and_the_result_is_unchanged(
    tmp_path, card, monkeypatch
):
    (task,) = plan(experiment(card))
    clean = run_task(task, tmp_path / "clean")
    evaluate, seen = killing_on_call(7)
    monkeypatch.setattr(openmm_energy._WorkerPool, "evaluate", evaluate)
    killed = run_task(task, tmp_path / "killed")
    assert len(seen) > 7
    for key in ("x", "log_weights", "energies"):
        with (
            np.load(task.directory(tmp_path / "clean") / "samples.npz") as a,
            np.load(task.directory(tmp_path / "killed") / "samples.npz") as b,
        ):
            np.testing.assert_array_equal(a[key], b[key])
    assert clean["cost"]["energy_evals"] == killed["cost"]["energy_evals"]


def dies_on_every_request(conn, *args):
    """A worker body that starts, then exits abruptly on its first batch."""
    conn.send(("ready", os.getpid()))
    conn.recv()
    os._exit(9)


def test_a_worker_that_always_dies_fails_its_task_and_the_sweep_goes_on(
    tmp_path, card, monkeypatch
):
    dying = functools.partial(openmm_energy._WorkerPool, target=dies_on_every_request)
    monkeypatch.setattr(openmm_energy, "_WorkerPool", dying)
    sweep = experiment(card, [card, "double_well_2d"])
    tasks = plan(sweep)
    write_manifest(tmp_path, sweep, "debug", tasks)
    reported = {}
    run_debug(tasks, tmp_path, lambda t, r, e: reported.update({t.key: (r, e)}), sweep)
    result, error = reported["ala2_pool/hmc/seed0"]
    assert result is None
    assert re.match(r"RuntimeError: rows \d+\.\.\d+: OpenMM worker process", error)
    assert "died (exit code 9)" in error and "died too" in error
    assert reported["double_well_2d/hmc/seed0"][1] is None
    states = {key: (state, detail) for key, state, detail in task_status(tmp_path)}
    assert states["ala2_pool/hmc/seed0"] == ("failed", error)
    assert states["double_well_2d/hmc/seed0"] == ("done", "")
    assert not (tmp_path / "ala2_pool" / "hmc" / "seed0" / "result.json").exists()
