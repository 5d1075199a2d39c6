"""HMC: the leapfrog integrator against closed-form dynamics, the sampler against known
moments and free energies, step-size adaptation, cost accounting and reproducibility."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.toy import CorrelatedGaussian, DoubleWell2D
from boltzgen.metrics import free_energy_difference, integrated_time
from boltzgen.samplers.mcmc import (
    HMC,
    DualAveraging,
    HMCState,
    PhasePoint,
    kinetic_energy,
    leapfrog,
    metropolis,
)

F64 = torch.float64


class Harmonic(Energy):
    """u(x) = ½ Σ_i k_i x_i²: x_i(t) = x_i cos ω_i t + p_i/(m_i ω_i) sin ω_i t, ω_i² = k_i/m_i."""

    def __init__(self, stiffness: Tensor):
        super().__init__(tuple(stiffness.shape), temperature=1.0)
        self.stiffness = stiffness

    def _energy(self, x: Tensor) -> Tensor:
        return 0.5 * (self.stiffness * x * x).sum(dim=1)


class HardWall(Energy):
    """u = ½|x|² for x₁ < 1, +inf beyond: proposals past the wall must be rejected."""

    def __init__(self) -> None:
        super().__init__((2,), temperature=1.0)

    def _energy(self, x: Tensor) -> Tensor:
        u = 0.5 * (x * x).sum(dim=1)
        return torch.where(x[:, 0] < 1.0, u, math.inf)


STIFFNESS = torch.tensor([1.0, 4.0, 0.25], dtype=F64)
MASSES = {"identity": None, "diagonal": torch.tensor([1.0, 0.5, 2.0], dtype=F64)}


def _point(energy: Energy, x: Tensor, p: Tensor) -> PhasePoint:
    u, f = energy.energy_and_force(x)
    return PhasePoint(x, p, u, f)


def _start(n: int, dim: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=F64), torch.randn(n, dim, generator=g, dtype=F64)


def _harmonic_trajectory(step: float, n_steps: int, inverse_mass: Tensor | None) -> PhasePoint:
    energy = Harmonic(STIFFNESS)
    x, p = _start(8, 3, seed=0)
    eps = torch.tensor(step, dtype=F64)
    return leapfrog(energy, _point(energy, x, p), eps, n_steps, inverse_mass)


@pytest.mark.parametrize("mass", MASSES)
def test_leapfrog_matches_closed_form_harmonic_solution_to_second_order(mass: str) -> None:
    inv_m = MASSES[mass]
    m = torch.ones(3, dtype=F64) if inv_m is None else 1.0 / inv_m
    omega = (STIFFNESS / m).sqrt()
    x0, p0 = _start(8, 3, seed=0)
    total_time = 5.0
    x_exact = x0 * torch.cos(omega * total_time) + p0 / (m * omega) * torch.sin(omega * total_time)
    p_exact = p0 * torch.cos(omega * total_time) - m * omega * x0 * torch.sin(omega * total_time)
    errors = []
    for step in (0.02, 0.01):
        end = _harmonic_trajectory(step, round(total_time / step), inv_m)
        errors.append(max((end.x - x_exact).abs().max(), (end.p - p_exact).abs().max()))
    assert errors[1] < 1e-3
    assert 3.6 < errors[0] / errors[1] < 4.4  # global error O(ε²)


@pytest.mark.parametrize("mass", MASSES)
def test_leapfrog_energy_error_is_second_order(mass: str) -> None:
    inv_m = MASSES[mass]
    energy = Harmonic(STIFFNESS)
    max_errors = []
    for step in (0.04, 0.02):
        x, p = _start(8, 3, seed=1)
        point = _point(energy, x, p)
        h0 = point.energy + kinetic_energy(point.p, inv_m)
        worst = torch.zeros(8, dtype=F64)
        for _ in range(round(10.0 / step)):
            point = leapfrog(energy, point, torch.tensor(step, dtype=F64), 1, inv_m)
            h = point.energy + kinetic_energy(point.p, inv_m)
            worst = torch.maximum(worst, (h - h0).abs())
        max_errors.append(worst)
    assert float(max_errors[1].max()) < 1e-2
    ratio = max_errors[0] / max_errors[1]
    assert bool(((ratio > 3.6) & (ratio < 4.4)).all())  # |ΔH| = O(ε²), no drift


@pytest.mark.parametrize("mass", MASSES)
@pytest.mark.parametrize("system", ["harmonic", "double_well"])
def test_leapfrog_is_time_reversible(system: str, mass: str) -> None:
    inv_m = MASSES[mass]
    if system == "harmonic":
        energy: Energy = Harmonic(STIFFNESS)
        x, p = _start(16, 3, seed=2)
    else:
        energy = DoubleWell2D()
        x, p = _start(16, 2, seed=2)
        inv_m = None if inv_m is None else inv_m[:2]
    step = torch.linspace(0.01, 0.1, 16, dtype=F64)  # one step size per chain
    end = leapfrog(energy, _point(energy, x, p), step, 50, inv_m)
    back = leapfrog(energy, PhasePoint(end.x, -end.p, end.energy, end.force), step, 50, inv_m)
    assert float((end.x - x).abs().max()) > 0.1
    torch.testing.assert_close(back.x, x, rtol=0.0, atol=1e-10)
    torch.testing.assert_close(-back.p, p, rtol=0.0, atol=1e-10)


def test_leapfrog_charges_one_force_evaluation_per_chain_and_step() -> None:
    energy = Harmonic(STIFFNESS)
    x, p = _start(8, 3, seed=3)
    start = _point(energy, x, p)
    before = energy.counter.snapshot()
    leapfrog(energy, start, torch.tensor(0.1, dtype=F64), 7, None)
    spent = energy.counter.since(before)
    assert (spent.force, spent.energy) == (8 * 7, 0)


def test_metropolis_rejects_non_finite_proposals() -> None:
    x = torch.zeros(4, 2, dtype=F64)
    state = HMCState(x, torch.zeros(4, dtype=F64), torch.zeros_like(x), torch.tensor(0.1))
    start = PhasePoint(x, torch.zeros_like(x), state.energy, state.force)
    bad_u = torch.tensor([math.inf, 0.0, math.inf, 0.0], dtype=F64)
    bad_p = torch.tensor([[0.0, 0.0], [math.inf, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=F64)
    end = PhasePoint(x + 1.0, bad_p, bad_u, torch.zeros_like(x))
    new, info = metropolis(state, start, end, torch.Generator().manual_seed(0))
    assert info.accepted.tolist() == [False, False, False, True]
    assert info.acceptance_prob.tolist() == [0.0, 0.0, 0.0, 1.0]
    assert bool(torch.isinf(info.energy_error[:3]).all())
    torch.testing.assert_close(new.x[:3], x[:3])


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
