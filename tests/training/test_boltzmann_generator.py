"""Trained Boltzmann generators recover exact free energies and partition functions."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

from boltzgen.energies.toy import DoubleWell2D
from boltzgen.flows import GaussianPrior, make_spline_flow
from boltzgen.metrics import free_energy_difference, log_z
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.training import TrainConfig, train


def _exact_double_well_delta_f() -> float:
    """ΔF = −ln(P(x₁>0) / P(x₁<0)) by quadrature; the harmonic x₂ factor cancels."""

    def density(x1: float) -> float:
        return math.exp(-(0.25 * x1**4 - 3.0 * x1**2 + x1) - 12.0)  # shifted by min u ≈ −12

    mass_a, _ = integrate.quad(density, -math.inf, 0.0, epsabs=0.0, epsrel=1e-12, limit=200)
    mass_b, _ = integrate.quad(density, 0.0, math.inf, epsabs=0.0, epsrel=1e-12, limit=200)
    return math.log(mass_a) - math.log(mass_b)


@pytest.mark.slow
def test_trained_bg_recovers_double_well_free_energy() -> None:
    """Mixed forward (exact samples) + reverse KL; the flow alone cannot cross the barrier."""
    energy = DoubleWell2D()
    data = energy.sample_exact(20_000, torch.Generator().manual_seed(1))
    flow = make_spline_flow(2, n_layers=4, hidden=32, n_bins=8, tail_bound=5.0, seed=0)
    bg = BoltzmannGenerator(GaussianPrior(2), flow, energy)
    config = TrainConfig(steps=500, batch_size=256, lr=3e-3, loss="mixed", forward_weight=0.5)
    train(bg, energy, config, data=data, progress=False)
    samples = bg.sample(20_000, torch.Generator().manual_seed(2))
    estimate = free_energy_difference(samples, lambda x: x[:, 0] < 0, lambda x: x[:, 0] > 0)
    exact = _exact_double_well_delta_f()
    assert estimate.stderr < 0.25, estimate
    assert abs(estimate.value - exact) < 4 * estimate.stderr, (estimate, exact)
    assert samples.info["ess_fraction"] > 0.5
    assert samples.cost.train_energy_evals == 500 * 256


@pytest.mark.slow
def test_bg_trained_on_exact_samples_recovers_many_well_log_z() -> None:
    """Forward KL on exact samples of the 32-D many well (2¹⁶ modes); ~1–2 min on a CPU."""
    toy = pytest.importorskip("boltzgen.energies.toy")
    if not hasattr(toy, "ManyWell"):
        pytest.skip("boltzgen.energies.toy.ManyWell is not available")
    energy = toy.ManyWell(n_copies=16)
    data = energy.sample_exact(50_000, torch.Generator().manual_seed(1))
    flow = make_spline_flow(32, n_layers=8, hidden=64, n_bins=10, tail_bound=4.0, seed=0)
    bg = BoltzmannGenerator(GaussianPrior(32), flow, energy)
    config = TrainConfig(steps=400, batch_size=512, lr=2e-3, loss="forward_kl")
    train(bg, energy, config, data=data, progress=False)
    samples = bg.sample(50_000, torch.Generator().manual_seed(2))
    value, stderr = log_z(samples.log_weights)
    assert stderr < 0.1, (value, stderr, samples.info)
    assert abs(value - energy.log_z) < 4 * stderr, (value, stderr, energy.log_z)
    assert samples.info["ess_fraction"] > 0.2
