"""Truncated or corrupted result files and checkpoints: detected by their checksums; the
task reruns (from its last good checkpoint) saying so in one line, and ends with the
same result as an undisturbed run — never a crash, never a wrong result."""

import errno
import json
import os

import numpy as np
import pytest
import torch

from boltzgen.records import files
from boltzgen.records.files import WriteError
from boltzgen.runner.config import parse_experiment
from boltzgen.runner.manifest import task_status, write_manifest
from boltzgen.runner.report import load_results
from boltzgen.runner.tasks import is_finished, plan, run_task
from boltzgen.training.checkpoint import (
    load_good_checkpoint,
    previous_path,
    save_checkpoint,
)

HMC = {"method": "hmc", "n_chains": 8, "n_warmup": 10, "n_steps": 30, "n_leapfrog": 5}
BG = {
    "method": "boltzmann_generator",
    "n_samples": 300,
    "flow": {"n_layers": 2, "hidden": 16},
    "train": {"steps": 30, "batch_size": 32, "n_data": 200, "checkpoint_every": 5},
}


def task(method):
    raw = {"name": "d", "systems": ["double_well_2d"], "seeds": [4], "n_reference": 200}
    experiment = parse_experiment({**raw, "methods": {method["method"]: method}}, "d.yaml")
    return experiment, plan(experiment)[0]


def cut(path, seed):
    """Truncate ``path`` at a random byte (seeded)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(np.random.default_rng(seed).integers(0, len(data)))])


def same_result(a, b):
    with np.load(a / "samples.npz") as x, np.load(b / "samples.npz") as y:
        for key in ("x", "log_weights", "energies"):
            np.testing.assert_array_equal(x[key], y[key])
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (a, b))
    assert ra["free_energies"] == rb["free_energies"]
    assert ra["cost"]["energy_evals"] == rb["cost"]["energy_evals"]
    assert ra["cost"]["train_energy_evals"] == rb["cost"]["train_energy_evals"]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Undisturbed HMC and generator runs."""
    root = tmp_path_factory.mktemp("clean")
    for method in (HMC, BG):
        run_task(task(method)[1], root)
    return root


@pytest.mark.parametrize("name", ["result.json", "samples.npz"])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_cut_result_file_reruns_the_task_to_the_same_result(tmp_path, clean, capfd, name, seed):
    _, t = task(HMC)
    run_task(t, tmp_path)
    cut(t.directory(tmp_path) / name, seed)
    assert not is_finished(t, tmp_path)
    run_task(t, tmp_path)
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("boltzgen:")]
    assert len(lines) == 1 and name in lines[0] and "rerunning double_well_2d/hmc/seed4" in lines[0]
    same_result(t.directory(tmp_path), t.directory(clean))


def test_status_shows_a_damaged_result_as_not_done(tmp_path):
    experiment, t = task(HMC)
    write_manifest(tmp_path, experiment, "debug", [t])
    run_task(t, tmp_path)
    assert task_status(tmp_path)[0][1] == "done"
    cut(t.directory(tmp_path) / "result.json", 3)
    _, state, detail = task_status(tmp_path)[0]
    assert state == "interrupted" and "does not match its checksum" in detail


def test_checkpoints_keep_the_last_good_generation(tmp_path, capfd):
    path = tmp_path / "checkpoint.pt"
    for step in (5, 10):
        save_checkpoint(path, {"step": step, "w": torch.full((3,), float(step))})
    assert load_good_checkpoint(path)[0]["step"] == 10
    cut(path, 0)
    state, line = load_good_checkpoint(path)
    assert state["step"] == 5 and "resuming from the previous checkpoint (step 5)" in line
    cut(previous_path(path), 1)
    state, line = load_good_checkpoint(path)
    assert state is None and "starting this stage over" in line


def test_a_checkpoint_write_failing_on_a_full_disk_keeps_the_last_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 5})

    def full(target, data):
        """The disk fills up just as the new checkpoint's data are written."""
        if target.name != "checkpoint.pt":
            return stage(target, data)
        raise WriteError(target, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    stage = files._stage

    monkeypatch.setattr(files, "_stage", full)
    with pytest.raises(WriteError, match=r"checkpoint.pt: No space left on device \(ENOSPC\)"):
        save_checkpoint(path, {"step": 10})
    assert load_good_checkpoint(path) == ({"step": 5}, None)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_cut_checkpoint_resumes_from_the_previous_one_to_the_same_result(
    tmp_path, clean, capfd, seed
):
    """The generator's newest checkpoint is cut and its result gone (a node died while
    writing): training resumes from the checkpoint before and ends bitwise the same."""
    _, t = task(BG)
    run_task(t, tmp_path)
    folder = t.directory(tmp_path)
    for name in ("result.json", "samples.npz"):
        (folder / name).unlink()
    (training,) = (folder.parent.parent / "_generators").glob("*/train")
    cut(training / "checkpoint.pt", seed)
    run_task(t, tmp_path)
    err = capfd.readouterr().err
    assert "resuming from the previous checkpoint (step 30)" in err or "(step 25)" in err
    same_result(folder, t.directory(clean))


def test_a_cut_settings_stamp_reruns_from_the_start(tmp_path, clean, capfd):
    _, t = task(BG)
    run_task(t, tmp_path)
    folder = t.directory(tmp_path)
    (folder / "result.json").unlink()
    cut(folder / "checkpoint" / "settings.json", 2)
    run_task(t, tmp_path)
    err = capfd.readouterr().err
    assert "rerunning double_well_2d/boltzmann_generator/seed4 from the start" in err
    same_result(folder, t.directory(clean))


def test_the_report_leaves_out_a_damaged_result(tmp_path, capfd):
    _, t = task(HMC)
    run_task(t, tmp_path)
    assert len(load_results(tmp_path)) == 1
    cut(t.directory(tmp_path) / "result.json", 5)
    assert load_results(tmp_path) == []
    assert "left out of the report" in capfd.readouterr().err


def test_results_without_checksums_are_recomputed_not_refused(tmp_path, clean, capfd):
    """A folder from before checksums (same settings) is not stale: its task reruns."""
    _, t = task(HMC)
    run_task(t, tmp_path)
    for path in t.directory(tmp_path).rglob("*.sha256"):
        path.unlink()
    assert not is_finished(t, tmp_path)
    run_task(t, tmp_path)
    assert "has no recorded checksum" in capfd.readouterr().err
    same_result(t.directory(tmp_path), t.directory(clean))
