"""Budget rules invert the samplers' cost formulas, and the formulas count what runs spend."""

from __future__ import annotations

import pytest
import torch

from boltzgen.flows import make_steerable_flow
from boltzgen.runner.methods.budget import largest_within
from boltzgen.runner.methods.flows import FlowParams, build_generator
from boltzgen.runner.methods.snf import SNFParams, build_snf
from boltzgen.samplers.flow_mcmc import (
    FlowHMC,
    FlowIndependenceMetropolis,
    flow_hmc_evaluations,
    independence_evaluations,
)
from boltzgen.samplers.mcmc import HMC, hmc_evaluations
from boltzgen.samplers.md import MDConfig, MolecularDynamics, md_evaluations
from boltzgen.samplers.parallel_tempering import ParallelTempering, pt_evaluations
from boltzgen.samplers.smc import SMCSampler, smc_evaluations
from boltzgen.samplers.snf import snf_evaluations
from boltzgen.samplers.tsf_exchange import TSFReplicaExchange, tsf_exchange_evaluations
from boltzgen.systems import load_system
from boltzgen.training import train_tsf
from boltzgen.training.tsf import tsf_training_evaluations


@pytest.mark.parametrize(("fixed", "slope", "budget"), [(0, 1, 0), (7, 3, 100), (64, 320, 40_000)])
def test_largest_within_is_the_floor_of_a_linear_inverse(fixed, slope, budget):
    assert largest_within(lambda n: fixed + slope * n, budget) == (budget - fixed) // slope


def test_largest_within_says_when_nothing_fits():
    assert largest_within(lambda n: 10 + n, 9) == -1


def spent(samples) -> int:
    return samples.cost.energy_evals + samples.cost.force_evals


def test_hmc_spends_its_formula():
    system = load_system("double_well_2d")
    g = torch.Generator().manual_seed(0)
    x0 = system.dispersed_starts(8, g)
    samples = HMC(system.energy, 0.1, 3).sample(x0, 12, g, n_warmup=6)
    assert spent(samples) == hmc_evaluations(8, 6 + 12, 3)


@pytest.mark.parametrize("move", ["hmc", "langevin"])
def test_parallel_tempering_spends_its_formula(move):
    system = load_system("double_well_2d")
    g = torch.Generator().manual_seed(0)
    ladder = [1.0, 2.0, 4.0]
    x0 = system.dispersed_starts(4, g)
    samples = ParallelTempering(system.energy, ladder, move, 0.1, 3).sample(x0, 10, g, 5)
    assert spent(samples) == pt_evaluations(3, 4, 5 + 10, move, 3)


@pytest.fixture
def generator_model():
    system = load_system("double_well_2d")
    return system, build_generator(system, FlowParams(n_layers=2, hidden=8), seed=0)


@pytest.mark.parametrize("kernel", ["ula", "mala", "hmc"])
def test_smc_spends_its_formula(generator_model, kernel):
    system, model = generator_model
    sampler = SMCSampler(model, system.energy, n_steps=3, kernel=kernel, n_mcmc=2, n_leapfrog=3)
    samples = sampler.sample(16, torch.Generator().manual_seed(0))
    assert spent(samples) == smc_evaluations(16, 3, 2, kernel, 3)


def test_flow_mcmc_spends_its_formula(generator_model):
    system, model = generator_model
    sampler = FlowIndependenceMetropolis(model, system.energy)
    samples = sampler.sample(4, 10, torch.Generator().manual_seed(0), 5)
    assert spent(samples) == independence_evaluations(4, 5 + 10)


def test_flow_hmc_spends_its_formula(generator_model):
    system, model = generator_model
    sampler = FlowHMC(model, system.energy, 0.05, 3)
    samples = sampler.sample(4, 10, torch.Generator().manual_seed(0), 5)
    assert spent(samples) == flow_hmc_evaluations(4, 5 + 10, 3)


@pytest.mark.parametrize("block", ["langevin", "mala", "metropolis"])
def test_snf_spends_its_formula(block):
    system = load_system("double_well_2d")
    params = SNFParams(n_blocks=2, block=block, block_steps=3, hidden=8)
    samples = build_snf(system, params, 0).sample(16, torch.Generator().manual_seed(0))
    assert spent(samples) == snf_evaluations(16, 2, 3)


def test_md_spends_its_formula():
    system = load_system("alanine_dipeptide_vacuum")
    config = MDConfig(frame_interval=5, platform="Reference")
    md = MolecularDynamics(system.openmm_system, system.temperature, config)
    samples = md.sample(system.initial_positions, 4, torch.Generator().manual_seed(0), 10)
    assert spent(samples) == md_evaluations(4, 5, 10)


@pytest.mark.parametrize("move", ["hmc", "langevin"])
def test_tsf_exchange_spends_its_formula(move):
    system = load_system("double_well_2d")
    ladder = [1.0, 2.0]
    tsf = make_steerable_flow(2, 1.0, 2, 8, seed=0)
    g = torch.Generator().manual_seed(0)
    training = train_tsf(tsf, system.energy, ladder, 3, 4, 1e-3, g)
    assert training.energy_evals + training.force_evals == tsf_training_evaluations(2, 3, 4)
    sampler = TSFReplicaExchange(system.energy, tsf, ladder, move, 0.1, 3, 1)
    samples = sampler.sample(system.dispersed_starts(4, g), 10, g, 5)
    assert spent(samples) == tsf_exchange_evaluations(2, 4, 5 + 10, move, 3, 1)
