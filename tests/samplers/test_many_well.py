"""Weighted samplers on the 32-D many well (2¹⁶ modes) recover its exact log Z (slow)."""

import math

import pytest
import torch

from boltzgen.energies.toy import ManyWell
from boltzgen.flows import GaussianPrior, make_spline_flow
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.smc import SMCSampler
from boltzgen.samplers.snf import MALABlock, StochasticNormalizingFlow
from boltzgen.training import TrainConfig, train


@pytest.fixture(scope="module")
def trained():
    energy = ManyWell()
    data = energy.sample_exact(50_000, torch.Generator().manual_seed(1))
    flow = make_spline_flow(32, n_layers=8, hidden=64, n_bins=10, tail_bound=4.0, seed=0)
    bg = BoltzmannGenerator(GaussianPrior(32), flow, energy)
    train(
        bg,
        energy,
        TrainConfig(steps=400, batch_size=512, lr=2e-3, loss="forward_kl"),
        data=data,
        progress=False,
    )
    return bg


def spread(values):
    """Mean and standard error of Ẑ/Z over independent runs (Ẑ is unbiased, log Ẑ is not)."""
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std() / math.sqrt(len(t)))


@pytest.mark.slow
def test_smc_from_a_trained_flow_recovers_many_well_log_z(trained):
    energy = trained.energy
    ratios = []
    for seed in range(8):
        sampler = SMCSampler(trained, energy, n_steps=5, kernel="mala", step_size=0.02)
        samples = sampler.sample(4000, torch.Generator().manual_seed(100 + seed))
        ratios.append(math.exp(samples.info["log_z"] - energy.log_z))
    mean, se = spread(ratios)
    assert se < 0.1 and abs(mean - 1.0) < 4 * se, (mean, se, ratios)


@pytest.mark.slow
def test_snf_with_mala_blocks_recovers_many_well_log_z(trained):
    energy = trained.energy
    blocks = [*trained.flow.layers, MALABlock(1.0, 0.02, 3, trainable=False)]
    snf = StochasticNormalizingFlow(trained.prior, blocks, energy)
    ratios = []
    for seed in range(8):
        samples = snf.sample(4000, torch.Generator().manual_seed(200 + seed))
        ratios.append(math.exp(samples.info["log_z"] - energy.log_z))
    mean, se = spread(ratios)
    assert se < 0.1 and abs(mean - 1.0) < 4 * se, (mean, se, ratios)
