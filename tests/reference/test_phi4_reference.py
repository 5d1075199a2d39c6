"""φ⁴ has no exact answers: its observables' reference values come from a stored
reference set (``boltzgen reference phi4_2d --method pt``), and only from a set made
with the same energy parameters and temperature."""

from __future__ import annotations

import pytest
import torch

from boltzgen.observables.lattice import scaled_magnetization
from boltzgen.records.reference_sets import load_reference
from boltzgen.reference import TorchPTReferenceSettings, generate_torch_pt_reference
from boltzgen.systems import load_system

SETTINGS = TorchPTReferenceSettings(
    n_temperatures=2, t_max=1.3, n_iterations=300, n_chains=4, n_discard=30, n_frames=400
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A small PT (HMC-move) reference set of φ⁴ at L = 4 in a fresh data folder."""
    folder = tmp_path_factory.mktemp("data")
    generate_torch_pt_reference(load_system("phi4_2d", L=4), SETTINGS, root=folder)
    return folder


def test_the_card_reads_the_pt_route():
    assert load_system("phi4_2d").reference_kind == "pt"


def test_reference_observables_are_the_evaluation_frames_statistics(root, monkeypatch):
    """χ₂ is the mean of (Σφ)²/V (⟨M⟩ = 0 by φ ↦ −φ), ⟨|M|⟩ the mean of |Σφ|/V, over the
    evaluation half."""
    monkeypatch.setenv("BOLTZGEN_DATA", str(root))
    system = load_system("phi4_2d", L=4)
    frames = load_reference("phi4_2d", "pt", root, part="evaluation").x.to(torch.float64)
    m = scaled_magnetization(frames)
    reference = system.reference_observables()
    assert reference["chi2"] == pytest.approx(float(m.square().mean()), rel=1e-12)
    assert reference["abs_magnetization"] == pytest.approx(float(m.abs().mean() / 4), rel=1e-12)
    assert min(reference.values()) > 0


@pytest.mark.parametrize("overrides", [{"L": 4, "m2": -3.0}, {"L": 4, "lam": 6.0}, {}])
def test_a_set_made_at_other_parameters_is_not_used(root, monkeypatch, overrides):
    monkeypatch.setenv("BOLTZGEN_DATA", str(root))
    assert load_system("phi4_2d", **overrides).reference_observables() == {}
