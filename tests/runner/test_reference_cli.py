"""`boltzgen reference --method pt` on a short run: works, reports its own ΔF, stays quiet."""

import os
import subprocess
import sys
from pathlib import Path

from boltzgen.runner.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_short_pt_reference_runs_quietly_and_reports_its_estimates(tmp_path):
    args = ["reference", "alanine_dipeptide_vacuum", "--method", "pt", "--iterations", "20"]
    args += ["--steps-per-iteration", "10", "--temperatures", "2", "--frames", "10"]
    out = subprocess.run(
        [sys.executable, "-m", "boltzgen.runner.cli", *args, "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "ΔF phi_pos_vs_phi_neg" in out.stdout and "pt: MBAR" in out.stdout
    for noise in ("no reference data", "JAX", "Please cite", "experimental", "Traceback"):
        assert noise not in text, noise
    assert (tmp_path / "alanine_dipeptide_vacuum" / "pt" / "reference.npz").exists()


def test_discard_at_or_beyond_the_iterations_is_a_usage_error(tmp_path, monkeypatch, capsys):
    args = ["reference", "alanine_dipeptide_vacuum", "--method", "pt", "--iterations", "20"]
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path))
    status = main([*args, "--discard", "20"])
    err = capsys.readouterr().err
    assert status == 2 and "--discard" in err and "Traceback" not in err
