"""Swap and local Monte Carlo: exact stationary distributions on tiny systems, cost formula."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from boltzgen.energies.particles import CutInversePowers, ParticleEnergy, polydisperse_soft_spheres
from boltzgen.energies.particles.models import non_additive_sigma
from boltzgen.metrics.autocorrelation import integrated_time
from boltzgen.samplers.swap_mc import SwapMCConfig, SwapMonteCarlo, swap_mc_evaluations

SOFT = CutInversePowers(((1.0, 12),), 1.25, "quartic")


def _soft_spheres(diameters: list[float], side: float, temperature: float) -> ParticleEnergy:
    d = torch.tensor(diameters, dtype=torch.float64)
    sigma = non_additive_sigma(d)
    n = len(diameters)
    box = torch.full((1 if n == 2 else 3,), side, dtype=torch.float64)
    return ParticleEnergy(
        box, torch.arange(n), d, sigma, torch.ones_like(sigma), SOFT, temperature, "dense"
    )


@pytest.mark.parametrize("pair_table", [True, False], ids=["table", "rows"])
def test_swaps_sample_the_boltzmann_weights_of_the_24_assignments_of_four_diameters(pair_table):
    """Fixed sites, swap moves only: the chain lives on 4! assignments with known weights."""
    energy = _soft_spheres([0.8, 1.0, 1.2, 1.4], 4.0, 0.5)
    sites = torch.tensor(
        [[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [0.5, 1.0, 0.0], [0.5, 0.4, 1.0]], dtype=torch.float64
    )
    perms = list(itertools.permutations(range(4)))
    u = energy.energy(torch.stack([sites[list(p)] for p in perms]))
    exact = torch.softmax(-u, 0).numpy()
    chains = 4000
    sampler = SwapMonteCarlo(energy, SwapMCConfig(swap_probability=1.0, pair_table=pair_table))
    generator = torch.Generator().manual_seed(0)
    state = sampler.init(sites.expand(chains, -1, -1).clone())
    for _ in range(60):
        state, _, _ = sampler.move(state, generator)
    which = (state.x[:, :, None, :] - sites[None, None]).norm(dim=-1).argmin(-1)
    index = {p: k for k, p in enumerate(perms)}
    counts = np.bincount([index[tuple(row)] for row in which.tolist()], minlength=24)
    assert exact.max() / exact.min() > 5  # the weights are far from uniform
    _, p_value = stats.chisquare(counts, chains * exact)
    assert p_value > 1e-3
    torch.testing.assert_close(state.u, energy.energy(state.x), rtol=1e-10, atol=1e-10)
    if pair_table:
        torch.testing.assert_close(state.table, energy.pair_table(state.x))


@pytest.mark.parametrize("pair_table", [True, False], ids=["table", "rows"])
@pytest.mark.parametrize("swap_probability", [0.0, 0.5], ids=["local", "swap"])
def test_two_particles_on_a_ring_sample_the_exact_pair_distance(swap_probability, pair_table):
    """Two soft spheres on a periodic line: r = x₁ − x₂ has density ∝ exp(−v(|r|)/T)."""
    side, temperature = 3.0, 0.5
    energy = _soft_spheres([0.9, 1.1], side, temperature)
    sigma = float(non_additive_sigma(torch.tensor([0.9, 1.1]))[0, 1])
    config = SwapMCConfig(step_size=0.6, swap_probability=swap_probability, pair_table=pair_table)
    sampler = SwapMonteCarlo(energy, config)
    generator = torch.Generator().manual_seed(1)
    chains = 3000
    start = torch.tensor([[0.0], [1.5]], dtype=torch.float64).expand(chains, -1, -1)
    state = sampler.init(start.clone())
    for _ in range(150):
        state, _ = sampler.sweep(state, generator)
    r = state.x[:, 0, 0] - state.x[:, 1, 0]
    r = (r - side * torch.round(r / side)).abs().numpy()
    edges = np.linspace(0.0, side / 2, 9)

    def density(x: float) -> float:
        return math.exp(-float(SOFT(torch.tensor((x / sigma) ** 2))) / temperature)

    mass = [integrate.quad(density, a, b)[0] for a, b in itertools.pairwise(edges)]
    expected = chains * np.array(mass) / sum(mass)
    keep = expected > 5
    observed = np.histogram(r, edges)[0]
    _, p_value = stats.chisquare(
        observed[keep], expected[keep] * observed[keep].sum() / expected[keep].sum()
    )
    assert p_value > 1e-3


@pytest.mark.parametrize("pair_table", [True, False], ids=["table", "rows"])
def test_the_cost_formula_bounds_what_a_run_is_charged(pair_table):
    energy = polydisperse_soft_spheres(n_particles=100, temperature=0.5)
    config = SwapMCConfig(0.1, 0.2, max_diameter_difference=0.2, pair_table=pair_table)
    x0 = energy.minimum.expand(3, -1, -1).clone()
    samples = SwapMonteCarlo(energy, config).sample(x0, 2, torch.Generator().manual_seed(2))
    bound = swap_mc_evaluations(3, 2, 0.2, tabulated=pair_table)
    assert 0.8 * bound <= samples.cost.energy_evals <= bound + 1
    torch.testing.assert_close(samples.energies[-3:], energy.energy(samples.x[-3:]))


def test_the_pair_table_sums_to_the_energy_and_its_rows_are_the_particle_energies():
    energy = polydisperse_soft_spheres(n_particles=100, temperature=0.5)
    x = energy.minimum.expand(2, -1, -1) + 0.05 * torch.randn(
        2, 100, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    table = energy.pair_table(x)
    torch.testing.assert_close(table, table.transpose(1, 2))
    torch.testing.assert_close(table.sum((1, 2)) / 2, energy.energy(x))
    index = torch.tensor([[3, 50], [7, 99]])
    torch.testing.assert_close(table.sum(2).gather(1, index), energy.particle_energies(x, index))


@pytest.mark.slow
def test_swap_and_local_monte_carlo_agree_on_the_mean_energy_of_a_hot_liquid():
    energy = polydisperse_soft_spheres(n_particles=100, temperature=0.5)
    x0 = energy.minimum.expand(8, -1, -1).clone()
    means, errors = [], []
    for p in (0.0, 0.3):
        config = SwapMCConfig(step_size=0.15, swap_probability=p, max_diameter_difference=0.2)
        samples = SwapMonteCarlo(energy, config).sample(x0, 300, torch.Generator().manual_seed(3))
        u = samples.energies.reshape(300, 8)[100:]
        means.append(float(u.mean()))
        errors.append(float(u.std()) * math.sqrt(integrated_time(u) / u.numel()))
    assert abs(means[0] - means[1]) < 4 * math.hypot(*errors)
