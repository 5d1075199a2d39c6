"""HMC: the sampler against known moments and free energies, step-size adaptation, cost
accounting and reproducibility (the leapfrog and Metropolis kernels: tests/kernels)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.toy import CorrelatedGaussian, DoubleWell2D
from boltzgen.kernels.adaptation import DualAveraging
from boltzgen.metrics import free_energy_difference, integrated_time
from boltzgen.samplers.mcmc import HMC

F64 = torch.float64


class HardWall(Energy):
    """u = ½|x|² for x₁ < 1, +inf beyond: proposals past the wall must be rejected."""

    def __init__(self) -> None:
        super().__init__((2,), temperature=1.0)

    def _energy(self, x: Tensor) -> Tensor:
        u = 0.5 * (x * x).sum(dim=1)
        return torch.where(x[:, 0] < 1.0, u, math.inf)


def test_hmc_never_leaves_the_finite_region_and_rejects_infinite_starts() -> None:
    energy = HardWall()
    hmc = HMC(energy, step_size=0.5, n_leapfrog=5, target_acceptance=None)
    x0 = torch.zeros(64, 2, dtype=F64)
    samples = hmc.sample(x0, 200, torch.Generator().manual_seed(0), n_warmup=0)
    assert bool((samples.x[:, 0] < 1.0).all())
    assert bool(torch.isfinite(samples.energies).all())
    assert energy.counter.nonfinite > 0  # the wall was hit, and those moves were rejected
    with pytest.raises(ValueError, match="non-finite energy"):
        hmc.init(torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=F64))


GAUSSIANS = {
    "2d": ([1.0, -2.0], [[1.0, 0.8], [0.8, 1.0]], False),
    "3d_diagonal_mass": (
        [0.5, -1.0, 2.0],
        [[2.0, 0.6, 0.3], [0.6, 1.0, -0.4], [0.3, -0.4, 0.5]],
        True,
    ),
}


def _mean_and_stderr(series: Tensor) -> tuple[float, float]:
    """Mean of ``series: [T, C]`` and its standard error sqrt(var · τ_int / n)."""
    n = series.numel()
    return float(series.mean()), math.sqrt(float(series.var()) * integrated_time(series) / n)


@pytest.mark.parametrize("case", GAUSSIANS)
def test_hmc_recovers_gaussian_mean_and_covariance(case: str) -> None:
    mean, cov, use_mass = GAUSSIANS[case]
    energy = CorrelatedGaussian(mean, cov)
    inv_m = energy.cov.diagonal().clone() if use_mass else None
    hmc = HMC(energy, step_size=0.1, n_leapfrog=8, inverse_mass=inv_m)
    g = torch.Generator().manual_seed(11)
    x0 = 3.0 * torch.randn(128, energy.dim, generator=g, dtype=F64)
    samples = hmc.sample(x0, 500, g, n_warmup=300)
    x = samples.chains(samples.x)  # [T, C, D]
    mu, sigma = energy.mean, energy.cov
    for i in range(energy.dim):
        value, se = _mean_and_stderr(x[..., i])
        assert se < 0.03
        assert abs(value - float(mu[i])) < 4 * se, (i, value, se)
        for j in range(i, energy.dim):
            value, se = _mean_and_stderr(x[..., i] * x[..., j])
            expected = float(sigma[i, j] + mu[i] * mu[j])
            assert abs(value - expected) < 4 * se, (i, j, value, expected, se)


def _exact_double_well_delta_f() -> float:
    """ΔF = −ln(P(x₁>0)/P(x₁<0)) by quadrature of exp(−u₁), u₁ = x⁴/4 − 3x² + x."""

    def boltzmann(x: float) -> float:
        return math.exp(-(0.25 * x**4 - 3.0 * x**2 + x))

    left, _ = integrate.quad(boltzmann, -math.inf, 0.0, epsabs=0.0, epsrel=1e-12)
    right, _ = integrate.quad(boltzmann, 0.0, math.inf, epsabs=0.0, epsrel=1e-12)
    return -math.log(right / left)


@pytest.mark.slow
def test_hmc_recovers_double_well_free_energy_from_one_well() -> None:
    energy = DoubleWell2D()
    exact = _exact_double_well_delta_f()
    hmc = HMC(energy, step_size=0.1, n_leapfrog=5, target_acceptance=0.8)
    x0 = torch.tensor([-2.5289, 0.0], dtype=F64).repeat(4096, 1)  # all in the left minimum
    # Warm-up of 1500 steps (> the right well's lifetime of several hundred steps) lets
    # the right-well population relax before anything is recorded.
    samples = hmc.sample(x0, 3000, torch.Generator().manual_seed(5), n_warmup=1500, thin=3)
    estimate = free_energy_difference(samples, lambda x: x[:, 0] < 0, lambda x: x[:, 0] > 0)
    assert estimate.stderr < 0.15
    assert abs(estimate.value - exact) < 4 * estimate.stderr, (estimate, exact)


ADAPTATION_CASES = {
    "double_well-0.6": (DoubleWell2D, 0.6),
    "double_well-0.8": (DoubleWell2D, 0.8),
    "gaussian-0.8": (lambda: CorrelatedGaussian([1.0, -2.0], [[1.0, 0.8], [0.8, 1.0]]), 0.8),
    "gaussian-0.9": (lambda: CorrelatedGaussian([1.0, -2.0], [[1.0, 0.8], [0.8, 1.0]]), 0.9),
}


@pytest.mark.parametrize("case", ADAPTATION_CASES)
def test_step_size_adaptation_reaches_target_and_freezes(case: str) -> None:
    make_energy, target = ADAPTATION_CASES[case]
    energy = make_energy()
    hmc = HMC(energy, step_size=0.05, n_leapfrog=5, target_acceptance=target)
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    n_warmup, n_steps = 500, 200
    samples = hmc.sample(x0, n_steps, torch.Generator().manual_seed(1), n_warmup=n_warmup)
    assert abs(samples.info["acceptance"] - target) < 0.1
    assert abs(samples.info["acceptance_prob"] - target) < 0.1
    # The same generator seed replays warm-up exactly: the state it leaves has the step
    # size that sampling reports, and further steps leave it unchanged.
    g = torch.Generator().manual_seed(1)
    state = hmc.warmup(hmc.init(x0), n_warmup, g)
    assert state.step_size.shape == ()
    assert state.step_size.item() == samples.info["step_size"]
    for _ in range(5):
        new, _ = hmc.step(state, g)
        assert torch.equal(new.step_size, state.step_size)
        state = new
    # Cost: one force evaluation per chain at init, n_leapfrog per chain per step.
    cost = samples.cost
    assert cost.force_evals == 256 + (n_warmup + n_steps) * 256 * 5
    assert cost.energy_evals == 0
    assert cost.wall_s > 0


def test_shared_adaptation_keeps_per_chain_step_size_ratios() -> None:
    energy = DoubleWell2D()
    ratios = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=F64).repeat(16)
    hmc = HMC(energy, step_size=0.05 * ratios, n_leapfrog=5)
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    state = hmc.warmup(hmc.init(x0), 100, torch.Generator().manual_seed(1))
    assert state.step_size.shape == (64,)
    torch.testing.assert_close(state.step_size / state.step_size[0], ratios)
    with pytest.raises(ValueError, match="step_size"):
        HMC(energy, step_size=torch.full((3,), 0.1)).init(x0)


def test_dual_averaging_converges_on_a_monotone_acceptance_curve() -> None:
    adapt = DualAveraging(target=0.65)
    state = adapt.init(torch.tensor(1e-3, dtype=F64))
    for _ in range(2000):
        acceptance = torch.exp(-state.log_step.exp())  # α(ε) = e^{−ε}: target at ε = ln(1/0.65)
        state = adapt.update(state, acceptance)
    assert abs(float(state.log_step_avg.exp()) - math.log(1 / 0.65)) < 0.01


def test_sample_is_step_major_thinned_and_reproducible() -> None:
    energy = CorrelatedGaussian([1.0, -2.0], [[1.0, 0.8], [0.8, 1.0]])
    hmc = HMC(energy, step_size=0.2, n_leapfrog=3)
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    samples = hmc.sample(x0, 12, torch.Generator().manual_seed(7), n_warmup=10, thin=3)
    again = hmc.sample(x0, 12, torch.Generator().manual_seed(7), n_warmup=10, thin=3, progress=True)
    other = hmc.sample(x0, 12, torch.Generator().manual_seed(8), n_warmup=10, thin=3)
    assert torch.equal(samples.x, again.x) and torch.equal(samples.energies, again.energies)
    assert not torch.equal(samples.x, other.x)
    assert samples.x.shape == (4 * 16, 2) and samples.n_chains == 16
    assert torch.equal(samples.log_weights, torch.zeros(64, dtype=F64))
    g = torch.Generator().manual_seed(7)
    state = hmc.warmup(hmc.init(x0), 10, g)
    kept = []
    for t in range(12):
        state, _ = hmc.step(state, g)
        if (t + 1) % 3 == 0:
            kept.append(state.x)
    assert torch.equal(samples.chains(samples.x), torch.stack(kept))
    torch.testing.assert_close(samples.energies, energy.energy(samples.x))
    assert samples.info["n_warmup"] == 10 and samples.info["n_leapfrog"] == 3
    assert len(samples.info["acceptance_per_chain"]) == 16
