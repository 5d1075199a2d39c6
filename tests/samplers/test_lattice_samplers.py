"""Lattice baselines reproduce the exact Ising and U(1) answers within 4 standard errors."""

import pytest
import torch

from boltzgen.energies.lattice import IsingGaussian, U1Wilson, enumerate_ising, u1_exact
from boltzgen.flows.gauge import UniformAnglePrior, make_gauge_flow
from boltzgen.metrics import observable_estimate
from boltzgen.observables.lattice import plaquette, q2, spin_abs_magnetization, spin_energy_density
from boltzgen.samplers.flow_mcmc import FlowHMC
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.ising_spins import IsingSpinSampler, ising_spin_evaluations, random_spins
from boltzgen.samplers.local_metropolis import LocalMetropolis, local_metropolis_evaluations
from boltzgen.samplers.mcmc import HMC


def assert_within_sigma(samples, series, exact, n_sigma=4.0):
    est = observable_estimate(samples, series)
    assert abs(est.value - exact) < n_sigma * est.stderr, (est, exact)
    return est


@pytest.mark.parametrize("rule", ["heat_bath", "metropolis"])
def test_ising_spin_sweeps_recover_the_exact_energy_and_magnetization(rule):
    energy = IsingGaussian(L=4, K=0.44)
    gen = torch.Generator().manual_seed(0)
    sampler = IsingSpinSampler(energy, rule)
    before = energy.counter.energy
    samples = sampler.sample(random_spins(32, 4, gen), 1500, gen, n_warmup=100)
    assert samples.cost.energy_evals == energy.counter.energy - before
    assert samples.cost.energy_evals == ising_spin_evaluations(32, 100, 1500)
    exact = enumerate_ising(4, 0.44)
    assert_within_sigma(samples, spin_energy_density(samples.x), exact.energy_density)
    assert_within_sigma(samples, spin_abs_magnetization(samples.x), exact.abs_magnetization)


def test_u1_local_metropolis_recovers_plaquette_and_topological_susceptibility():
    energy = U1Wilson(L=4, beta=2.0)
    gen = torch.Generator().manual_seed(1)
    sampler = LocalMetropolis(energy, step_size=1.5)
    x0 = torch.zeros(32, 2, 4, 4, dtype=torch.float64)
    samples = sampler.sample(x0, 1500, gen, n_warmup=100)
    assert samples.cost.energy_evals == local_metropolis_evaluations(32, 100, 1500, 4)
    assert 0.3 < samples.info["acceptance"] < 0.9
    exact = u1_exact(4, 2.0)
    assert_within_sigma(samples, plaquette(samples.x), exact.plaquette)
    assert_within_sigma(samples, q2(samples.x), exact.q2)


def test_u1_hmc_recovers_the_plaquette():
    energy = U1Wilson(L=4, beta=2.0)
    gen = torch.Generator().manual_seed(2)
    x0 = torch.zeros(32, 2, 4, 4, dtype=torch.float64)
    samples = HMC(energy, 0.2, 8).sample(x0, 600, gen, n_warmup=100)
    exact = u1_exact(4, 2.0)
    assert_within_sigma(samples, plaquette(samples.x), exact.plaquette)
    assert_within_sigma(samples, q2(samples.x), exact.q2)


def test_ising_hmc_on_the_gaussian_field_recovers_the_energy():
    energy = IsingGaussian(L=4, K=0.3)
    gen = torch.Generator().manual_seed(3)
    x0 = energy.sample_field(random_spins(32, 4, gen), gen)
    samples = HMC(energy, 0.3, 8).sample(x0, 600, gen, n_warmup=100)
    assert_within_sigma(
        samples, spin_energy_density(samples.x), enumerate_ising(4, 0.3).energy_density
    )


@pytest.mark.slow
def test_field_transformation_hmc_with_a_gauge_flow_is_exact():
    """HMC on the pulled-back action of a (non-trivial, untrained) gauge-equivariant flow
    (field-transformation HMC, arXiv 2112.01586) keeps the exact U(1) plaquette and ⟨Q²⟩."""
    energy = U1Wilson(L=4, beta=2.0)
    flow = make_gauge_flow(4, n_layers=4, hidden=4, seed=0)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(9)).double())
    model = BoltzmannGenerator(UniformAnglePrior(32), flow, energy)
    gen = torch.Generator().manual_seed(4)
    samples = FlowHMC(model, energy, 0.2, 6).sample(16, 400, gen, n_warmup=100)
    exact = u1_exact(4, 2.0)
    assert_within_sigma(samples, plaquette(samples.x), exact.plaquette)
    assert_within_sigma(samples, q2(samples.x), exact.q2)
