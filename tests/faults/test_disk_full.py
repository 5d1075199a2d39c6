"""A full disk: writing a result fails with the path and the reason, the run reports the
task as failed, and everything written before stays valid. ``RLIMIT_FSIZE`` (a file-size
limit on the process) stands in for a full disk: a write past it fails with EFBIG."""

import subprocess
import sys

import numpy as np
import pytest
import yaml

from boltzgen.records.files import damage
from boltzgen.runner.manifest import task_status

SMALL = {"method": "hmc", "n_chains": 4, "n_warmup": 5, "n_steps": 10, "n_leapfrog": 3}
LARGE = {"method": "hmc", "n_chains": 16, "n_warmup": 5, "n_steps": 800, "n_leapfrog": 3}
LIMIT = 64 * 1024

LIMITED_RUN = f"""
import resource, signal, sys
from boltzgen.runner.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, {LIMIT}))
sys.exit(main(sys.argv[1:]))
"""


def run(args, limited):
    command = [sys.executable, "-c", LIMITED_RUN] if limited else [sys.executable, "-m"]
    if not limited:
        command.append("boltzgen.runner.cli")
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=600)


def experiment(tmp_path, methods):
    raw = {
        "name": "full",
        "systems": ["double_well_2d"],
        "seeds": [0],
        "executor": "debug",
        "n_reference": 200,
        "methods": methods,
    }
    path = tmp_path / f"full{len(methods)}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.faults
def test_a_full_disk_fails_the_task_cleanly_and_keeps_earlier_results(tmp_path):
    out = tmp_path / "run"
    first = run(["run", experiment(tmp_path, {"small": SMALL}), "--out", str(out)], False)
    assert first.returncode == 0, first.stderr
    small = out / "double_well_2d" / "small" / "seed0"
    with np.load(small / "samples.npz") as data:
        kept = data["x"].copy()

    both = experiment(tmp_path, {"small": SMALL, "large": LARGE})
    full = run(["run", both, "--out", str(out)], True)
    large = out / "double_well_2d" / "large" / "seed0"
    assert full.returncode == 1, full.stderr
    expected = (
        f"large/seed0: WriteError: could not write {large / 'samples.npz'}: "
        "File too large (EFBIG); the files written before it are unchanged"
    )
    assert expected in full.stdout + full.stderr
    assert "Traceback" not in full.stderr
    states = {key: (state, detail) for key, state, detail in task_status(out)}
    assert states["double_well_2d/large/seed0"][0] == "failed"
    assert "File too large (EFBIG)" in states["double_well_2d/large/seed0"][1]
    assert states["double_well_2d/small/seed0"] == ("done", "")
    for path in (small / "samples.npz", small / "result.json", large / "checkpoint/settings.json"):
        assert damage(path) is None, path
    assert not (large / "result.json").exists() and not (large / "samples.npz").exists()
    with np.load(small / "samples.npz") as data:
        np.testing.assert_array_equal(data["x"], kept)

    again = run(["run", both, "--out", str(out)], False)
    assert again.returncode == 0, again.stderr
    assert damage(large / "result.json") is None
