"""The glass formers' cards against the numbers of their models: pair energies at known
distances (the prefactor), the smoothing seen through the full energy, the polydisperse
diameters, and berni's functional forms for the bare pair potentials."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from boltzgen.energies.particles import (
    ParticleEnergy,
    kob_andersen_ternary,
    polydisperse_soft_spheres,
)
from boltzgen.energies.particles.models import SIZE_RATIO, TERNARY_EPSILON, TERNARY_SIGMA
from boltzgen.systems import CATALOG

C0, C2, C4 = -28 / 1.25**12, 48 / 1.25**14, -21 / 1.25**16
"""The soft spheres' smoothing of Ninarello, Berthier & Coslovich (arXiv 1704.08864)."""


def _sparse_polydisperse() -> ParticleEnergy:
    """Eight soft spheres in a box of side 20: apart, no two interact."""
    return polydisperse_soft_spheres(n_particles=8, density=8 / 20**3)


def _sparse_ternary() -> ParticleEnergy:
    """Twelve 2-D ternary particles (6 A, 3 B, 3 C) in a square of side 40."""
    return kob_andersen_ternary(n_particles=12, density=12 / 40**2)


def _pair_at(energy: ParticleEnergy, i: int, j: int, distances: torch.Tensor) -> torch.Tensor:
    """Configurations ``[len(distances), N, d]``: particles on a grid of ⌈N^(1/d)⌉ sites a
    side (spacing 10 here, far beyond every cutoff), then j put at distance r from i along
    the first axis."""
    n, d = energy.n_particles, energy.box.numel()
    per_side = math.ceil(n ** (1 / d) - 1e-9)
    axes = [torch.arange(per_side, dtype=torch.float64)] * d
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)[:n]
    x = (grid * energy.box / per_side).expand(len(distances), -1, -1).clone()
    x[:, j] = x[:, i]
    x[:, j, 0] += distances
    return x


def test_a_lone_soft_sphere_pair_has_prefactor_one():
    """At r = σ_ij, v = (σ_ij/r)¹² + c₀ + c₂ + c₄ = 1 + c₀ + c₂ + c₄ ≈ 0.5958: prefactor ε = 1
    as in eq. 1 of Shakerpoor, Flenner & Szamel (Soft Matter 2020, DOI 10.1039/c9sm02022e),
    not 4ε; at r = σ_ij/2 the bare term 2¹² dominates. Particles far apart: U = 0."""
    energy = _sparse_polydisperse()
    i, j = 0, 7  # smallest and largest diameters
    d_i, d_j = float(energy.diameters[i]), float(energy.diameters[j])
    sigma_ij = 0.5 * (d_i + d_j) * (1 - 0.2 * abs(d_i - d_j))
    apart = _pair_at(energy, i, j, torch.tensor([5.0], dtype=torch.float64))
    assert float(energy.potential_energy(apart)[0]) == 0.0
    x = _pair_at(energy, i, j, torch.tensor([sigma_ij, sigma_ij / 2], dtype=torch.float64))
    expected = [1 + C0 + C2 + C4, 2.0**12 + C0 + C2 / 4 + C4 / 16]
    torch.testing.assert_close(
        energy.potential_energy(x), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0
    )


def test_a_lone_ternary_pair_at_the_lennard_jones_minimum_is_minus_eps_plus_the_smoothing():
    """At r = 2^(1/6) σ_αβ the bare 4ε(x⁻¹² − x⁻⁶) is −ε_αβ; the smoothing adds
    ε(c₀ + c₂x² + c₄x⁴), with (c₀, c₂, c₄) those of v = 4x⁻¹² − 4x⁻⁶ cut at 2.5."""
    energy = _sparse_ternary()
    c0, c2, c4 = energy.potential.coefficients
    x_min = 2 ** (1 / 6)
    for i, j, a, b in [(0, 1, 0, 0), (0, 6, 0, 1), (0, 9, 0, 2), (6, 9, 1, 2)]:
        eps, sig = TERNARY_EPSILON[a][b], TERNARY_SIGMA[a][b]
        x = _pair_at(energy, i, j, torch.tensor([x_min * sig], dtype=torch.float64))
        expected = -eps + eps * (c0 + c2 * x_min**2 + c4 * x_min**4)
        assert float(energy.potential_energy(x)[0]) == pytest.approx(expected, rel=1e-12), (a, b)


@pytest.mark.parametrize(
    "build, i, j", [(_sparse_polydisperse, 0, 7), (_sparse_ternary, 0, 6)], ids=["poly", "ka2d"]
)
def test_the_full_energy_and_its_force_vanish_at_the_cut_to_second_order(build, i, j):
    """With V(r_c) = V′(r_c) = V″(r_c) = 0, a pair at r = r_c(1 − δ) has U = O(δ³) and a
    force O(δ²): shrinking δ tenfold divides U by about 1000 and the force by about 100
    (a shifted cut would leave U = O(δ) and a force O(1))."""
    energy = build()
    r_cut = energy.potential.x_cut * float(energy.sigma2[i, j].sqrt())
    deltas = torch.tensor([1e-3, 1e-4], dtype=torch.float64)
    x = _pair_at(energy, i, j, r_cut * (1 - deltas)).requires_grad_(True)
    u = energy.potential_energy(x)
    (grad,) = torch.autograd.grad(u.sum(), x)
    u, force = u.detach(), grad[:, j, 0].abs()
    assert float(u.abs()[1]) < 1e-9
    assert 800 < float(u[0] / u[1]) < 1200
    assert 80 < float(force[0] / force[1]) < 120
    beyond = _pair_at(energy, i, j, torch.tensor([r_cut * (1 + 1e-9)], dtype=torch.float64))
    assert float(energy.potential_energy(beyond)[0]) == 0.0


def _card_energy() -> ParticleEnergy:
    card = yaml.safe_load((CATALOG / "polydisperse_3d.yaml").read_text())
    return polydisperse_soft_spheres(**card["energy"]["params"])


def test_the_polydisperse_card_is_at_the_published_state_point():
    """ρ = N/V = 1 in three dimensions, where T_MCT ≈ 0.108 (Shakerpoor, Flenner & Szamel,
    Soft Matter 2020, DOI 10.1039/c9sm02022e, §2.1); the card's T lies above it."""
    card = yaml.safe_load((CATALOG / "polydisperse_3d.yaml").read_text())
    energy = _card_energy()
    assert energy.box.numel() == 3
    assert energy.n_particles / float(energy.box.prod()) == pytest.approx(1.0, rel=1e-12)
    assert card["temperature"] > 0.108


def _continuous_moments(size_ratio: float, points: int = 200_001) -> tuple[float, float]:
    """Mean and relative width δ of P(σ) ∝ σ⁻³ on [r σ_max, σ_max] with σ_max = 1, by the
    trapezoid rule (independent of the closed forms in the model)."""
    sigma = torch.linspace(size_ratio, 1.0, points, dtype=torch.float64)
    weight = sigma**-3
    norm = torch.trapezoid(weight, sigma)
    mean = torch.trapezoid(weight * sigma, sigma) / norm
    second = torch.trapezoid(weight * sigma**2, sigma) / norm
    return float(mean), float((second - mean**2).sqrt() / mean)


def test_the_card_s_diameters_have_unit_mean_the_size_ratio_and_the_width_of_p():
    """N = 256 quantiles of P(σ) ∝ σ⁻³ with σ_min/σ_max = 0.45: mean 1, extreme diameters
    inside [σ_min, σ_max] = [0.45, 1] × σ_max with σ_max = 1/⟨σ⟩ of the unit-σ_max law,
    and the polydispersity δ of the continuous law (≈ 0.229 at 0.45)."""
    sigma = _card_energy().diameters
    mean, width = _continuous_moments(SIZE_RATIO)
    sigma_max, sigma_min = 1 / mean, SIZE_RATIO / mean
    assert float(sigma.mean()) == pytest.approx(1.0, abs=1e-4)
    assert sigma_min < float(sigma.min()) < sigma_min * 1.01
    assert sigma_max * 0.99 < float(sigma.max()) < sigma_max
    assert float(sigma.std(correction=0) / sigma.mean()) == pytest.approx(width, rel=1e-2)
    assert width == pytest.approx(0.2293, abs=1e-3)


def test_the_bare_pair_energies_are_berni_s_lennard_jones_and_inverse_power():
    """berni's functional forms (its ``lennard_jones`` of the KA family and its
    ``inverse_power`` soft spheres): the cards' pair energy minus the smoothing polynomial."""
    potentials = pytest.importorskip("berni._potentials")
    ternary = _sparse_ternary()
    c0, c2, c4 = ternary.potential.coefficients
    eps, sig = TERNARY_EPSILON[0][1], TERNARY_SIGMA[0][1]
    for r in (0.75, 0.9, 1.3):
        u = float(
            ternary.potential_energy(
                _pair_at(ternary, 0, 6, torch.tensor([r], dtype=torch.float64))
            )[0]
        )
        s = (r / sig) ** 2
        bare = potentials.lennard_jones(r, epsilon=eps, sigma=sig)[0]
        assert u - eps * (c0 + c2 * s + c4 * s**2) == pytest.approx(bare, rel=1e-10)
    poly = _sparse_polydisperse()
    sigma_ij = float(poly.sigma2[0, 7].sqrt())
    for r in (0.8 * sigma_ij, 1.1 * sigma_ij):
        u = float(
            poly.potential_energy(_pair_at(poly, 0, 7, torch.tensor([r], dtype=torch.float64)))[0]
        )
        s = (r / sigma_ij) ** 2
        bare = potentials.inverse_power(r, epsilon=1.0, sigma=sigma_ij, exponent=12)[0]
        assert u - (C0 + C2 * s + C4 * s**2) == pytest.approx(bare, rel=1e-10)
