"""Toy energies: their exact references against independent computations."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from boltzgen.energies.toy import (
    CorrelatedGaussian,
    DoubleWell,
    DoubleWell2D,
    GaussianMixture,
    ManyWell,
)


def brute_force_log_z_2d(energy, lim=8.0, n=1601):
    grid = np.linspace(-lim, lim, n)
    gx, gy = np.meshgrid(grid, grid, indexing="ij")
    x = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], axis=1))
    u = energy.energy(x).numpy().reshape(n, n)
    return math.log(integrate.simpson(integrate.simpson(np.exp(-u), x=grid), x=grid))


@pytest.mark.parametrize(
    "energy",
    [
        DoubleWell2D(),
        DoubleWell(1, 1.0, -6.0, -0.5, 2.0),
        GaussianMixture([[-1.0, 0.0], [2.0, 1.0]], [[0.5, 1.0], [0.7, 0.3]], [0.3, 0.7]),
        CorrelatedGaussian([0.5, -1.0], [[1.0, 0.6], [0.6, 2.0]]),
    ],
    ids=["noe", "fab_k2", "mixture", "gaussian"],
)
def test_log_z_matches_a_2d_grid_integral(energy):
    assert energy.log_z == pytest.approx(brute_force_log_z_2d(energy), abs=1e-6)


def test_double_well_is_the_noe_2019_potential():
    energy = DoubleWell2D()
    x1, x2 = 1.3, -0.7
    u = energy.energy(torch.tensor([[x1, x2]], dtype=torch.float64))[0]
    assert float(u) == pytest.approx(x1**4 / 4 - 3 * x1**2 + x1 + x2**2 / 2, rel=1e-14)


def test_many_well_log_z_is_sixteen_one_dimensional_integrals():
    energy = ManyWell()
    one, _ = integrate.quad(lambda t: math.exp(-(t**4 - 6 * t**2 - 0.5 * t)), -10, 10, limit=200)
    assert energy.dim == 32
    assert energy.log_z == pytest.approx(
        16 * (math.log(one) + 0.5 * math.log(2 * math.pi)), rel=1e-10
    )


@pytest.mark.parametrize(
    "energy",
    [
        DoubleWell2D(),
        ManyWell(4),
        GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [[0.5, 1.0], [0.7, 0.3]], [0.3, 0.7]),
        CorrelatedGaussian([0.5, -1.0], [[1.0, 0.6], [0.6, 2.0]]),
    ],
    ids=["double_well", "many_well4", "mixture", "gaussian"],
)
def test_exact_sampler_matches_interval_probabilities(energy):
    """Interval frequencies of 2·10⁵ exact draws within 4 standard errors of quadrature."""
    n = 200_000
    x = energy.sample_exact(n, torch.Generator().manual_seed(7))
    for coordinate in range(min(energy.dim, 3)):
        for low, high in [(-math.inf, 0.0), (0.5, 2.0)]:
            p = math.exp(energy.interval_log_prob(coordinate, low, high))
            hits = ((x[:, coordinate] > low) & (x[:, coordinate] < high)).double().mean().item()
            se = math.sqrt(p * (1 - p) / n)
            assert abs(hits - p) < 4 * se + 1e-12, (coordinate, low, high, hits, p)


def test_exact_sampler_reproduces_mean_energy_of_the_double_well():
    """Mean energy of 4·10⁵ exact draws within 4 standard errors of quadrature."""
    energy = DoubleWell2D()
    grid = np.linspace(-6, 6, 200_001)
    u1 = grid**4 / 4 - 3 * grid**2 + grid
    p = np.exp(-(u1 - u1.min()))
    mean_u1 = integrate.simpson(u1 * p, x=grid) / integrate.simpson(p, x=grid)
    x = energy.sample_exact(400_000, torch.Generator().manual_seed(3))
    u = energy.energy(x)
    se = u.std().item() / math.sqrt(len(u))
    assert abs(u.mean().item() - (mean_u1 + 0.5)) < 4 * se
