"""Observable kinds a card names: the energy observable of particle cards, the χ₂ of an even
field theory."""

from __future__ import annotations

import math

import pytest
import torch

from boltzgen.errors import ConfigError
from boltzgen.metrics.observables import observable_estimate
from boltzgen.observables.kinds import OBSERVABLE_KINDS
from boltzgen.records import WeightedSamples
from boltzgen.runner.evaluate import evaluate
from boltzgen.systems import load_system

F64 = torch.float64


@pytest.mark.parametrize(
    "card, n", [("kob_andersen_3d", 160), ("kob_andersen_2d_ternary", 80), ("polydisperse_3d", 80)]
)
def test_particle_cards_report_the_energy_per_particle(card, n):
    """The weighted mean of U/N = u·T/N equals Σ w U(x)/N computed from the energy."""
    system = load_system(card, n_particles=n)
    g = torch.Generator().manual_seed(0)
    x0 = system.initial_positions.to(F64)
    x = x0 + 0.02 * torch.randn((6, *x0.shape), generator=g, dtype=F64)
    u = system.energy.energy(x)
    log_w = torch.randn(6, generator=g, dtype=F64)
    samples = WeightedSamples(x, log_w, u)
    result = evaluate(system, samples, None, torch.Generator().manual_seed(1))
    w = torch.softmax(log_w, 0)
    expected = float((w * u).sum()) * system.energy.temperature / n
    entry = result["observables"]["energy_per_particle"]
    assert math.isclose(entry["value"], expected, rel_tol=1e-12)
    assert entry["stderr"] > 0


def test_the_energy_observable_reads_the_energies_not_the_positions():
    observable = OBSERVABLE_KINDS["potential_energy_per_particle"]
    x = torch.zeros(3, 5, 2, dtype=F64)
    u = torch.tensor([1.0, 2.0, -4.0], dtype=F64)
    assert torch.equal(observable.values(x, u, 0.5), u * 0.5 / 5)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("energy_per_particle", "potential_energy_per_particle"),  # unknown: names the known
        ("two_point_susceptibility_symmetric", "relies on the symmetry 'negate'"),
    ],
)
def test_a_card_naming_a_kind_it_cannot_have_is_refused(tmp_path, kind, message):
    """An unknown kind, or one relying on a symmetry the double well does not declare."""
    card = tmp_path / "c.yaml"
    card.write_text(
        "name: c\nenergy: {kind: double_well}\ntemperature: 1.0\ninitial_positions: minimum\n"
        f"observables: {{e: {kind}}}\nreference: {{kind: exact}}\n"
    )
    with pytest.raises(ConfigError, match=message):
        load_system(str(card))


def _gaussian_field(length: int, m2: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """Exact draws of φ⁴ at λ = 0, m² > 0: u = φᵀAφ with A = −Δ + m², so φ ~ N(0, (2A)⁻¹)."""
    phi = torch.eye(length * length, dtype=F64).reshape(-1, length, length)
    laplacian = phi.roll(1, -1) + phi.roll(-1, -1) + phi.roll(1, -2) + phi.roll(-1, -2) - 4 * phi
    a = m2 * torch.eye(length * length, dtype=F64) - laplacian.reshape(length * length, -1)
    chol = torch.linalg.cholesky(torch.linalg.inv(2 * a))
    z = torch.randn(n, length * length, generator=generator, dtype=F64)
    return (z @ chol.T).reshape(n, length, length)


def test_symmetric_chi2_of_the_free_field_is_exact():
    """At λ = 0 the zero mode has A-eigenvalue m², so χ₂ = Var(Σφ/√V) = 1/(2m²) exactly;
    V⟨M²⟩ over exact draws recovers it within 4 standard errors."""
    system = load_system("phi4_2d", L=4, m2=0.5, lam=0.0)
    g = torch.Generator().manual_seed(3)
    x = _gaussian_field(4, 0.5, 20000, g)
    u = system.energy.energy(x)
    samples = WeightedSamples(x, torch.zeros(len(x), dtype=F64), u)
    entry = evaluate(system, samples, None, g)["observables"]["chi2"]
    assert abs(entry["value"] - 1.0) < 4 * entry["stderr"]
    assert entry["stderr"] < 0.03


def test_symmetric_chi2_is_blind_to_the_sign_sector_of_a_chain():
    """Chains each stuck in the + sector of a symmetric two-sector law (y = ±a + N(0, 1)):
    V⟨M²⟩ = E[y²] = a² + 1 holds in either sector, while the variance about the pooled mean
    sees only the width of one sector."""
    g = torch.Generator().manual_seed(4)
    a, n_chains, n_steps = 3.0, 8, 2000
    y = a + torch.randn(n_steps * n_chains, generator=g, dtype=F64)
    samples = WeightedSamples(
        torch.zeros(len(y), 1, dtype=F64),
        torch.zeros(len(y), dtype=F64),
        torch.zeros(len(y), dtype=F64),
        n_chains=n_chains,
    )
    symmetric = OBSERVABLE_KINDS["two_point_susceptibility_symmetric"]
    second_moment = observable_estimate(samples, y.square(), symmetric.statistic)
    assert abs(second_moment.value - (a * a + 1)) < 4 * second_moment.stderr
    assert observable_estimate(samples, y, "variance").value < 1.2
