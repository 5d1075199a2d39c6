"""The umbrella route: biases and their gradients, the double well's ΔF within 4 standard
errors of the exact one, the manifest a card reads its reference ΔF from, and the CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from boltzgen.errors import ConfigError
from boltzgen.kernels.potential import from_energy
from boltzgen.records.reference_sets import load_manifest, reference_dir
from boltzgen.reference.umbrella import (
    UmbrellaSettings,
    biased_potential,
    collective_variable,
    generate_umbrella_reference,
    make_windows,
    pair_bounds,
    reanalyse_umbrella,
)
from boltzgen.reference.umbrella_mbar import UmbrellaEstimate, Windows, in_interval
from boltzgen.systems import load_system
from tests.reference.umbrella_settings import DOUBLE_WELL

ROOT = Path(__file__).resolve().parents[2]
NAME = "double_well_2d"
SETTINGS = DOUBLE_WELL


def test_periodic_bias_has_curvature_k_at_its_centre_and_period_two_pi():
    windows = Windows(torch.tensor([0.3, -3.0], dtype=torch.float64), 50.0, 2 * math.pi)
    s = torch.tensor([0.3 + 1e-3, 0.3 + 2 * math.pi + 1e-3], dtype=torch.float64)
    bias = windows.matrix(s)
    assert bias.shape == (2, 2)
    assert bias[0, 0] == pytest.approx(0.5 * 50.0 * 1e-6, rel=1e-5)
    torch.testing.assert_close(bias[:, 0], bias[:, 1])
    # the centre −3 and s = 3.2 are 0.08 rad apart through ±π
    deviation = windows.deviation(torch.tensor([3.2], dtype=torch.float64), windows.centres[1:])
    assert float(deviation) == pytest.approx(3.2 - (2 * math.pi - 3.0))


def test_default_spring_makes_windows_half_a_spacing_wide():
    windows = make_windows(UmbrellaSettings(n_windows=36), 2 * math.pi)
    spacing = 2 * math.pi / 36
    assert windows.spring == pytest.approx(4.0 / spacing**2)
    assert float(windows.centres[0]) == pytest.approx(-math.pi)
    with pytest.raises(ValueError, match="cv_range"):
        make_windows(UmbrellaSettings(n_windows=3), None)


def test_in_interval_wraps_through_pi_like_the_phi_states():
    s = torch.tensor([-3.0, -1.0, 0.5, 3.0])
    assert in_interval(s, 0.0, 2.0).tolist() == [False, False, True, False]
    assert in_interval(s, 2.5, -2.5).tolist() == [True, False, False, True]


def test_biased_potential_adds_the_spring_force_along_the_coordinate():
    system = load_system(NAME)
    cv = collective_variable(system.states["left"])
    windows = Windows(torch.tensor([0.5], dtype=torch.float64), 10.0, None)
    x = torch.tensor([[-1.0, 0.3], [2.0, -0.5]], dtype=torch.float64)
    centres = torch.tensor([0.5, -1.0], dtype=torch.float64)
    u, grad = biased_potential(from_energy(system.energy), cv, windows, centres)(x)
    u0, grad0 = from_energy(system.energy)(x)
    torch.testing.assert_close(u, u0 + 5.0 * (x[:, 0] - centres).square())
    torch.testing.assert_close(grad[:, 0], grad0[:, 0] + 10.0 * (x[:, 0] - centres))
    torch.testing.assert_close(grad[:, 1], grad0[:, 1])


@pytest.fixture(scope="module")
def double_well(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    system = load_system(NAME)
    out = generate_umbrella_reference(system, SETTINGS, root=root)
    return system, out, root


def test_double_well_free_energy_is_within_4_sigma_of_the_exact_one(double_well):
    system, out, root = double_well
    manifest = load_manifest(NAME, "umbrella", root)
    assert out == reference_dir(NAME, "umbrella", root)
    exact = system.reference_estimates()["right_vs_left"].value
    fe = manifest["free_energies"]["right_vs_left"]
    checks = manifest["free_energy_checks"]["right_vs_left"]
    assert 0 < fe["stderr"] < 0.6  # a useful error bar, not one that cannot fail
    assert fe["stderr"] == max(checks["stderr_mbar"], checks["stderr_jackknife"])
    assert len(checks["strides"]) == SETTINGS.n_windows and min(checks["strides"]) >= 1
    assert abs(fe["value"] - exact) < 4 * fe["stderr"]
    assert manifest["cost"]["force_evals"] > 0 and manifest["iterations_run"] == 240
    assert not (out / "reference.npz").exists()  # biased frames are no reference set


def test_configurations_travel_between_windows(double_well):
    manifest = load_manifest(NAME, "umbrella", double_well[2])
    rates = [r for r in manifest["exchange_acceptance"] if r is not None]
    assert len(rates) == SETTINGS.n_windows - 1  # every neighbour pair of a line of windows
    assert all(0.0 < r <= 1.0 for r in rates)
    assert manifest["exchange_visited_fraction"] > 2.0 / SETTINGS.n_windows


@pytest.mark.parametrize(
    ("first", "second", "converged"), [(4.0, 4.5, True), (4.0, 5.3, False), (5.16, 3.83, False)]
)
def test_halves_that_disagree_beyond_three_standard_errors_mark_the_estimate_unconverged(
    first, second, converged
):
    # stderr 0.19: each half has ≈ 0.27, their difference ≈ 0.38, so 3 σ ≈ 1.14 kT
    estimate = UmbrellaEstimate(4.5, 0.19, 0.17, 0.19, first, second, [1])
    assert estimate.drift_z == pytest.approx(abs(first - second) / 0.38)
    assert estimate.converged is converged


def test_the_double_well_run_has_no_drift(double_well):
    manifest = load_manifest(NAME, "umbrella", double_well[2])
    assert manifest["free_energies"]["right_vs_left"]["converged"] is True
    checks = manifest["free_energy_checks"]["right_vs_left"]
    assert 0 <= checks["drift_z"] <= 3.0


def test_a_stored_run_is_analysed_again_with_the_same_result(double_well):
    system, _, root = double_well
    before = load_manifest(NAME, "umbrella", root)
    reanalyse_umbrella(system, root)
    after = load_manifest(NAME, "umbrella", root)
    for key in ("value", "stderr"):
        value = after["free_energies"]["right_vs_left"][key]
        assert value == pytest.approx(before["free_energies"]["right_vs_left"][key], rel=1e-6)
    assert after["cost"] == before["cost"]


def test_the_manifest_is_checksummed(double_well):
    _, out, root = double_well
    with (out / "windows.npz").open("ab") as handle:
        handle.write(b"0")
    with pytest.raises(ValueError, match="checksum"):
        load_manifest(NAME, "umbrella", root)


def test_a_card_reads_its_reference_free_energy_from_the_umbrella_manifest(
    tmp_path, monkeypatch, vacuum_card
):
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path / "data"))
    card = vacuum_card("{kind: md, free_energies: umbrella}")
    system = load_system(card)
    assert system.free_energies_from == "umbrella"
    missing = system.reference_estimates()["phi_pos_vs_phi_neg"]
    assert missing.value is None and "--method umbrella" in missing.note
    out = reference_dir(system.name, "umbrella")
    out.mkdir(parents=True)
    manifest = {"free_energies": {"phi_pos_vs_phi_neg": {"value": 4.5, "stderr": 0.05}}}
    manifest.update(energy=system.card["energy"], temperature=system.temperature)
    (out / "manifest.json").write_text(json.dumps(manifest))
    estimate = system.reference_estimates()["phi_pos_vs_phi_neg"]
    assert (estimate.value, estimate.stderr, estimate.note) == (4.5, 0.05, "umbrella: MBAR")
    manifest["free_energies"]["phi_pos_vs_phi_neg"]["converged"] = False
    (out / "manifest.json").write_text(json.dumps(manifest))
    drifting = system.reference_estimates()["phi_pos_vs_phi_neg"]
    assert drifting.value is None and "not converged" in drifting.note
    card.write_text(card.read_text().replace("free_energies: umbrella", "free_energies: md"))
    with pytest.raises(ConfigError, match=r"reference\.free_energies"):
        load_system(card)


def test_the_phi_states_give_the_phi_torsion_and_both_bounds():
    system = load_system("alanine_dipeptide_vacuum")
    cv = collective_variable(system.states["phi_neg"])
    assert cv.period == pytest.approx(2 * math.pi)
    bounds = pair_bounds(system, cv)
    assert bounds == {"phi_pos_vs_phi_neg": ((-math.inf, 0.0), (0.0, 2.0))}
    x = system.initial_positions[None]
    assert torch.equal(system.states["phi_neg"](x), cv(x) < 0)


def test_the_cli_writes_an_umbrella_manifest_and_prints_its_free_energy(tmp_path):
    args = ["reference", NAME, "--method", "umbrella", "--windows", "5", "--cv-range", "-2", "2"]
    args += ["--chains", "4", "--iterations", "30", "--steps-per-iteration", "2"]
    out = subprocess.run(
        [sys.executable, "-m", "boltzgen.runner.cli", *args, "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert "ΔF right_vs_left" in out.stdout and "umbrella: MBAR" in out.stdout
    assert "Traceback" not in out.stderr
    assert (tmp_path / NAME / "umbrella" / "manifest.json").exists()
