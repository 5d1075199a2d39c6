"""The torch PT reference route on the double well: the same reference-set files as the
OpenMM routes, and a state free energy within 4 standard errors of the exact one."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from boltzgen.records.reference_sets import load_reference, reference_dir
from boltzgen.reference import TorchPTReferenceSettings, generate_torch_pt_reference
from boltzgen.runner.cli import main
from boltzgen.systems import load_system

ROOT = Path(__file__).resolve().parents[2]
NAME = "double_well_2d"
PARTS = ("training", "evaluation")
SETTINGS = TorchPTReferenceSettings(
    n_temperatures=4, t_max=8.0, n_iterations=1000, n_chains=8, n_discard=100, n_frames=2000
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One torch PT run on ``double_well_2d``, written to a fresh data folder."""
    root = tmp_path_factory.mktemp("data")
    system = load_system(NAME)
    out = generate_torch_pt_reference(system, SETTINGS, root=root)
    return system, out, root


def test_the_set_has_frames_manifest_and_disjoint_halves(reference):
    system, out, root = reference
    assert out == reference_dir(NAME, "pt", root)
    whole = load_reference(NAME, "pt", root)
    train, evaluation = (load_reference(NAME, "pt", root, part=p) for p in PARTS)
    assert whole.x.shape == (SETTINGS.n_frames, *system.energy.event_shape)
    assert whole.phi.shape == (SETTINGS.n_frames, 0)
    assert whole.manifest["split"]["training"] == [0, SETTINGS.n_frames // 2]
    torch.testing.assert_close(torch.cat([train.x, evaluation.x]), whole.x)
    torch.testing.assert_close(whole.energies, system.energy.energy(whole.x))
    assert whole.manifest["method"] == "pt" and whole.manifest["backend"] == "torch"
    assert whole.manifest["transitions"]["right_vs_left"] >= 10


def test_cost_counts_every_replica_of_every_step(reference):
    manifest = load_reference(NAME, "pt", reference[2]).manifest
    replicas = SETTINGS.n_temperatures * SETTINGS.n_chains
    steps = SETTINGS.n_iterations + SETTINGS.n_discard
    assert manifest["cost"]["force_evals"] == replicas * (1 + SETTINGS.n_leapfrog * steps)


def test_free_energy_agrees_with_the_exact_one(reference):
    """MBAR ΔF of the evaluation half within 4 standard errors of the quadrature value."""
    system, _, root = reference
    fe = load_reference(NAME, "pt", root).manifest["free_energies"]["right_vs_left"]
    exact = system.reference_free_energies()["right_vs_left"]
    assert math.isfinite(fe["stderr"]) and 0 < fe["stderr"] < 0.5
    assert abs(fe["value"] - exact) < 4 * fe["stderr"]


def test_every_rung_free_energy_agrees_with_the_exact_one_at_its_temperature(reference):
    """The ladder's hotter rungs: MBAR ΔF at T_k within 4 standard errors of the quadrature
    value at T_k, which moves with T (so a rung that reported T_0's answer would fail)."""
    _, _, root = reference
    manifest = load_reference(NAME, "pt", root).manifest
    rungs = manifest["rung_free_energies"]
    assert [r["temperature"] for r in rungs] == pytest.approx(manifest["ladder"])
    assert rungs[0]["free_energies"] == manifest["free_energies"]
    exact = [
        load_system(NAME, temperature=r["temperature"]).reference_free_energies()["right_vs_left"]
        for r in rungs
    ]
    assert exact[0] - exact[-1] > 1.0
    for rung, value in zip(rungs, exact, strict=True):
        fe = rung["free_energies"]["right_vs_left"]
        assert math.isfinite(fe["stderr"]) and 0 < fe["stderr"] < 0.5
        assert abs(fe["value"] - value) < 4 * fe["stderr"], (rung["temperature"], fe, value)


def _cli(*args: str, data: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "boltzgen.runner.cli", "reference", NAME, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "BOLTZGEN_DATA": str(data)},
    )


def test_cli_defaults_to_torch_for_a_system_without_openmm(tmp_path):
    out = _cli(
        "--method", "pt", "--iterations", "40", "--chains", "2", "--frames", "20",
        "--min-entries", "0", data=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "ΔF right_vs_left" in out.stdout and "exact answers" in out.stdout
    assert "JAX" not in out.stdout + out.stderr
    assert load_reference(NAME, "pt", tmp_path).manifest["backend"] == "torch"


def _main(*args: str, data: Path, monkeypatch, capsys) -> tuple[int, str]:
    """``boltzgen reference NAME *args`` in this process: exit status and standard error.

    The function the command runs (``boltzgen.runner.cli.main``), without the start-up
    of a new interpreter; an exception it did not turn into a status fails the test."""
    monkeypatch.setenv("BOLTZGEN_DATA", str(data))
    status = main(["reference", NAME, *args])
    return status, capsys.readouterr().err


def test_a_run_that_did_not_cross_is_refused_and_says_why(tmp_path, monkeypatch, capsys):
    status, err = _main(
        "--method", "pt", "--iterations", "40", "--chains", "2", "--frames", "20",
        "--min-entries", "1000", data=tmp_path, monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert status == 1 and "fewer than the 1000 entries" in err
    assert "Traceback" not in err
    folder = reference_dir(NAME, "pt", tmp_path)
    assert not (folder / "reference.npz").exists() and (folder / "refused.json").exists()


def test_manifest_counts_crossings(reference):
    manifest = load_reference(NAME, "pt", reference[2]).manifest
    assert min(manifest["entries"].values()) >= 10
    assert manifest["round_trips"] > 0 and manifest["d_frames"] is None
    assert len(manifest["step_size"]) == SETTINGS.n_temperatures


def test_cli_refuses_md_on_the_torch_backend(tmp_path, monkeypatch, capsys):
    status, err = _main(
        "--method", "md", "--backend", "torch", data=tmp_path, monkeypatch=monkeypatch,
        capsys=capsys,
    )  # fmt: skip
    assert status == 2 and "--backend" in err and "Traceback" not in err


def test_wall_clock_limit_stops_sampling_and_is_recorded():
    """max_wall_s = 0: the warm-up runs, then one PT step is kept and the stop is recorded."""
    from dataclasses import replace

    from boltzgen.reference.torch_pt import run_parallel_tempering

    settings = replace(SETTINGS, n_discard=5, n_chains=2, max_wall_s=0.0)
    samples, ladder = run_parallel_tempering(load_system(NAME), settings)
    assert len(samples) == settings.n_chains and len(ladder) == settings.n_temperatures
    assert samples.info["n_steps"] == 1 and samples.info["stopped_by_wall_clock"]
