"""Population annealing: exact log Z ratios of toys within a few standard errors, its cost."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from boltzgen.energies import CorrelatedGaussian, DoubleWell2D, Energy
from boltzgen.energies.particles import kob_andersen_ternary
from boltzgen.metrics.autocorrelation import integrated_time
from boltzgen.samplers.parallel_tempering import geometric_ladder
from boltzgen.samplers.population_annealing import (
    PopulationAnnealing,
    metropolis_move,
    pooled_log_ratio,
    population_annealing_evaluations,
    swap_mc_move,
)
from boltzgen.samplers.swap_mc import SwapMCConfig, SwapMonteCarlo, sweep_evaluations

TOYS = {
    "double_well": DoubleWell2D,
    "gaussian": lambda: CorrelatedGaussian([0.5, -1.0], [[1.0, 0.6], [0.6, 2.0]]),
}


def _anneal(energy: Energy, seed: int):
    temperatures = geometric_ladder(1.0, 6.0, 16)[::-1]
    generator = torch.Generator().manual_seed(seed)
    x0 = energy.at_temperature(temperatures[0]).sample_exact(4000, generator)
    sampler = PopulationAnnealing(energy, temperatures, metropolis_move(0.6, 5), n_groups=20)
    exact = energy.log_z - energy.at_temperature(temperatures[0]).log_z
    return sampler.sample(x0, generator), exact


@pytest.mark.parametrize("name", TOYS)
def test_log_z_ratio_matches_the_exact_one_within_four_standard_errors(name):
    samples, exact = _anneal(TOYS[name](), seed=0)
    value, stderr = samples.info["log_z_ratio"], samples.info["log_z_ratio_stderr"]
    assert 0 < stderr < 0.1
    assert abs(value - exact) < 4 * stderr, (value, exact, stderr)


def test_final_population_has_the_target_mean_energy():
    energy = TOYS["gaussian"]()
    samples, _ = _anneal(energy, seed=1)
    # ⟨u⟩ = d/2 for a Gaussian; the population is correlated within groups: use their spread.
    group_means = samples.energies.reshape(20, -1).mean(1)
    stderr = float(group_means.std()) / math.sqrt(20)
    assert abs(float(group_means.mean()) - 1.0) < 4 * stderr


def test_pooled_estimate_is_the_log_of_the_mean_ratio():
    logs = torch.tensor([0.0, math.log(3.0)], dtype=torch.float64)
    estimate = pooled_log_ratio(logs)
    assert estimate.value == pytest.approx(math.log(2.0))
    assert estimate.stderr == pytest.approx(0.5)  # std(1/2, 3/2) / √2


def test_cost_formula_counts_what_a_metropolis_run_spends():
    energy = DoubleWell2D()
    temperatures = [4.0, 2.0, 1.0]
    x0 = energy.at_temperature(4.0).sample_exact(40, torch.Generator().manual_seed(0))
    sampler = PopulationAnnealing(energy, temperatures, metropolis_move(0.5, 3), n_groups=4)
    samples = sampler.sample(x0, torch.Generator().manual_seed(1))
    assert samples.cost.energy_evals == population_annealing_evaluations(40, 3, 3)


def test_swap_moves_anneal_a_particle_system_and_charge_local_moves():
    energy = kob_andersen_ternary(n_particles=64, temperature=0.8)
    config = SwapMCConfig(step_size=0.1, swap_probability=0.2)
    x0 = energy.minimum.expand(8, -1, -1).clone()
    sampler = PopulationAnnealing(energy, [1.2, 1.0, 0.8], swap_mc_move(config, 1), n_groups=2)
    samples = sampler.sample(x0, torch.Generator().manual_seed(2))
    q = SwapMonteCarlo(energy, config).eligible_fraction
    expected = population_annealing_evaluations(8, 3, sweep_evaluations(0.2, q))
    assert abs(samples.cost.energy_evals - expected) <= 0.1 * expected
    torch.testing.assert_close(samples.energies, energy.energy(samples.x))
    assert math.isfinite(samples.info["log_z_ratio"])


@pytest.mark.slow
def test_log_z_ratio_of_a_small_lennard_jones_liquid_agrees_with_thermodynamic_integration():
    """ln Z(β₁) − ln Z(β₀) = −∫ ⟨U⟩_β dβ, by 5-point Gauss–Legendre over local-MC ⟨U⟩_β."""
    energy = kob_andersen_ternary(n_particles=64, temperature=1.0)
    t_hot, t_cold = 2.0, 1.0
    config = SwapMCConfig(step_size=0.15, swap_probability=0.0)
    generator = torch.Generator().manual_seed(4)
    start = energy.minimum.expand(200, -1, -1).clone()
    hot = energy.at_temperature(t_hot)
    # the population must be in equilibrium at T_hot: a quenched start biases ln Z upwards
    x0, _ = swap_mc_move(config, 100)(hot, start, hot.energy(start), generator)
    ladder = geometric_ladder(t_cold, t_hot, 12)[::-1]
    pa = PopulationAnnealing(energy, ladder, swap_mc_move(config, 3), n_groups=10)
    samples = pa.sample(x0, generator)
    nodes, weights = np.polynomial.legendre.leggauss(5)
    b0, b1 = 1 / t_hot, 1 / t_cold
    integral, variance = 0.0, 0.0
    for node, weight in zip(nodes, weights, strict=True):
        beta = 0.5 * (b1 - b0) * node + 0.5 * (b1 + b0)
        at = energy.at_temperature(1 / beta)
        run = SwapMonteCarlo(at, config).sample(x0[:16], 150, generator, n_warmup=60)
        big_u = (run.energies / beta).reshape(150, 16)
        mean = float(big_u.mean())
        stderr = float(big_u.std()) * math.sqrt(integrated_time(big_u) / big_u.numel())
        integral -= 0.5 * (b1 - b0) * weight * mean
        variance += (0.5 * (b1 - b0) * weight * stderr) ** 2
    value, pa_stderr = samples.info["log_z_ratio"], samples.info["log_z_ratio_stderr"]
    assert abs(value - integral) < 4 * math.sqrt(pa_stderr**2 + variance), (value, integral)
