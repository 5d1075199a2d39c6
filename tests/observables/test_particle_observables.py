"""Particle observables: ideal-gas g(r) = 1, F_s of free diffusion, overlap, energy per particle."""

from __future__ import annotations

import pytest
import torch

from boltzgen.observables.particles import (
    energy_per_particle,
    overlap,
    partial_rdf,
    self_intermediate_scattering,
)


@pytest.mark.parametrize("d", [2, 3])
def test_uniform_points_have_a_flat_partial_rdf(d):
    generator = torch.Generator().manual_seed(0)
    box = torch.full((d,), 6.0, dtype=torch.float64)
    x = torch.rand(200, 100, d, generator=generator, dtype=torch.float64) * box
    species = (torch.arange(100) >= 70).long()
    _, g = partial_rdf(x, box, species, 0, 1, 2.9, 10)
    assert float((g - 1).abs().max()) < 0.1
    _, g_aa = partial_rdf(x, box, species, 0, 0, 2.9, 10)
    assert float((g_aa[2:] - 1).abs().max()) < 0.1


@pytest.mark.parametrize("d", [2, 3])
def test_free_diffusion_has_a_gaussian_self_intermediate_scattering(d):
    """Δr ~ N(0, D t I): F_s(k, t) = exp(−k² D t / 2) in any dimension."""
    generator = torch.Generator().manual_seed(1)
    steps = 0.05 * torch.randn(40, 2000, d, generator=generator, dtype=torch.float64)
    trajectory = steps.cumsum(0)
    lags = torch.tensor([0, 5, 20])
    f = self_intermediate_scattering(trajectory, 7.0, lags)
    exact = torch.exp(-(7.0**2) * 0.05**2 * lags / 2)
    torch.testing.assert_close(f, exact.to(f), atol=0.01, rtol=0)
    q = overlap(trajectory, lags, a=0.3)
    assert float(q[0]) == 1.0 and bool((q[1:] < 1).all())


def test_energy_per_particle_undoes_the_reduction():
    assert float(energy_per_particle(torch.tensor([-700.0]), 0.5, 100)) == pytest.approx(-3.5)
