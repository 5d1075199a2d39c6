"""SMC Boltzmann generator: exact weights for an exact flow, an unbiased Ẑ, free energies
and moments against exact values, resampling, step-size adaptation and cost accounting."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.toy import CorrelatedGaussian, DoubleWell2D
from boltzgen.flows import AffineFlow, GaussianPrior, make_spline_flow
from boltzgen.metrics import free_energy_difference, kish_ess, normalized_weights
from boltzgen.records import Cost
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.smc import (
    KERNELS,
    SMCSampler,
    beta_schedule,
    clip_log_weights,
    flow_score,
    systematic_resample,
)
from boltzgen.training import TrainConfig, train

F64 = torch.float64


def _gaussian(dim: int, seed: int = 0) -> CorrelatedGaussian:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=F64)
    cov = a @ a.T / dim + 0.5 * torch.eye(dim, dtype=F64)
    return CorrelatedGaussian(torch.randn(dim, generator=g, dtype=F64), cov)


def _affine_model(energy: CorrelatedGaussian | DoubleWell2D, shift: Tensor, matrix: Tensor):
    dim = energy.dim
    return BoltzmannGenerator(GaussianPrior(dim), AffineFlow(shift.to(F64), matrix.to(F64)), energy)


def _exact_model(energy: CorrelatedGaussian) -> BoltzmannGenerator:
    flow = AffineFlow.from_gaussian(energy.mean, energy.cov)
    return BoltzmannGenerator(GaussianPrior(energy.dim), flow, energy)


def _mismatched_model(energy: CorrelatedGaussian) -> BoltzmannGenerator:
    """A Gaussian q with a shifted mean and a 1.3× too wide, skewed covariance."""
    shift = energy.mean + 0.5
    matrix = 1.3 * torch.linalg.cholesky(energy.cov) + 0.3 * torch.ones(energy.dim, energy.dim)
    return _affine_model(energy, shift, matrix.tril())


@pytest.mark.parametrize("kernel", KERNELS)
def test_exact_flow_gives_uniform_weights_at_every_stage(kernel: str) -> None:
    energy = _gaussian(3)
    smc = SMCSampler(_exact_model(energy), energy, n_steps=6, kernel=kernel, n_mcmc=2)
    g = torch.Generator().manual_seed(0)
    state = smc.init(200, g)
    for _ in range(smc.n_steps):
        state, info = smc.step(state, g)
        # u + log q = −log Z for every x, so each increment is the same constant.
        assert float(state.log_weights.std()) < 1e-10
        assert info.ess == pytest.approx(200.0, abs=1e-9)
        assert not info.resampled
        assert info.log_z == pytest.approx(float(smc.betas[state.stage]) * energy.log_z, abs=1e-9)
    samples = smc.sample(200, torch.Generator().manual_seed(1))
    assert samples.info["ess_fraction"] == pytest.approx(1.0, abs=1e-12)
    assert samples.info["log_z"] == pytest.approx(energy.log_z, abs=1e-9)
    assert samples.info["resampling_steps"] == []


def test_log_z_estimate_is_unbiased_with_few_particles() -> None:
    """E[Ẑ] = Z for SMC with π_β-invariant kernels fixed in advance (MALA, fixed ε)."""
    energy = CorrelatedGaussian(torch.tensor([1.5], dtype=F64), torch.tensor([[0.25]], dtype=F64))
    model = _affine_model(energy, torch.zeros(1), torch.eye(1))
    smc = SMCSampler(model, energy, n_steps=8, step_size=0.1, target_acceptance=None, n_mcmc=2)
    ratios, n_resampled = [], 0
    for seed in range(200):
        samples = smc.sample(64, torch.Generator().manual_seed(seed))
        ratios.append(math.exp(samples.info["log_z"] - energy.log_z))
        n_resampled += len(samples.info["resampling_steps"])
        assert len(samples.info["ess_history"]) == 8
        assert samples.info["log_z_history"][-1] == samples.info["log_z"]
    r = torch.tensor(ratios, dtype=F64)
    se = float(r.std() / math.sqrt(r.numel()))
    assert abs(float(r.mean()) - 1.0) < 4 * se
    assert 0.0 < se < 0.05  # the test resolves a bias of a few percent
    assert n_resampled > 100  # resampling happened, so its bookkeeping is tested


def test_resampling_keeps_the_mean_weight() -> None:
    energy = CorrelatedGaussian(torch.tensor([1.5], dtype=F64), torch.tensor([[0.25]], dtype=F64))
    model = _affine_model(energy, torch.zeros(1), torch.eye(1))
    smc = SMCSampler(model, energy, n_steps=4, resample_threshold=1.0, n_mcmc=0)
    g = torch.Generator().manual_seed(3)
    state = smc.init(100, g)
    increments = -float(smc.betas[1]) * state.particles.work()
    expected = torch.logsumexp(increments, 0) - math.log(100)
    state, info = smc.step(state, g)
    assert info.resampled and info.ess < 100
    torch.testing.assert_close(state.log_weights, expected.expand(100))


def _in_a(x: Tensor) -> Tensor:
    return x[:, 0] < 0


def _in_b(x: Tensor) -> Tensor:
    return x[:, 0] > 0


def _double_well_delta_f(energy: DoubleWell2D) -> float:
    log_pa = energy.interval_log_prob(0, -math.inf, 0.0)
    return log_pa - energy.interval_log_prob(0, 0.0, math.inf)


def test_recovers_double_well_free_energy_from_an_imperfect_flow() -> None:
    """A Gaussian q over both wells (ESS ≈ 10%): ten independent runs give ΔF ± se."""
    energy = DoubleWell2D()
    model = _affine_model(energy, torch.zeros(2), torch.diag(torch.tensor([2.0, 1.1])))
    smc = SMCSampler(model, energy, n_steps=10, step_size=0.02, n_mcmc=2)
    runs = [smc.sample(2000, torch.Generator().manual_seed(s)) for s in range(10)]
    values = torch.tensor([free_energy_difference(r, _in_a, _in_b).value for r in runs])
    se = float(values.std() / math.sqrt(len(runs)))
    assert abs(float(values.mean()) - _double_well_delta_f(energy)) < 4 * se
    assert se < 0.1
    log_z = torch.tensor([r.info["log_z"] for r in runs])
    assert abs(float(log_z.mean()) - energy.log_z) < 4 * float(log_z.std() / math.sqrt(10))


@pytest.mark.parametrize("kernel", ["mala", "hmc"])
def test_recovers_correlated_gaussian_moments(kernel: str) -> None:
    energy = _gaussian(3, seed=1)
    smc = SMCSampler(_mismatched_model(energy), energy, n_steps=8, kernel=kernel, n_mcmc=2)
    means, variances = [], []
    for seed in range(20):  # enough runs for the spread to estimate the error reliably
        samples = smc.sample(300, torch.Generator().manual_seed(seed))
        w = normalized_weights(samples.log_weights)[:, None]
        means.append((w * samples.x).sum(0))
        variances.append((w * (samples.x - energy.mean) ** 2).sum(0))
    for estimates, exact in ((means, energy.mean), (variances, energy.cov.diagonal())):
        stacked = torch.stack(estimates)
        se = stacked.std(0) / math.sqrt(stacked.shape[0])
        assert bool(((stacked.mean(0) - exact).abs() < 4 * se).all()), (stacked.mean(0), exact)


def test_step_size_adapts_toward_target_acceptance() -> None:
    energy = _gaussian(2)
    smc = SMCSampler(
        _exact_model(energy), energy, n_steps=15, step_size=1e-3, n_mcmc=3, target_acceptance=0.6
    )
    samples = smc.sample(500, torch.Generator().manual_seed(0))
    accept = samples.info["acceptance_history"]
    steps = samples.info["step_size_history"]
    assert accept[0] > 0.95 and steps[-1] > 20 * steps[0]
    assert abs(sum(accept[-5:]) / 5 - 0.6) < 0.1


def test_step_size_schedule_is_used_as_given() -> None:
    energy = _gaussian(2)
    schedule = [0.01, 0.02, 0.03, 0.04]
    smc = SMCSampler(
        _exact_model(energy), energy, n_steps=4, step_size=schedule, target_acceptance=None
    )
    samples = smc.sample(50, torch.Generator().manual_seed(0))
    assert samples.info["step_size_history"] == schedule
    with pytest.raises(ValueError, match="target_acceptance=None"):
        SMCSampler(_exact_model(energy), energy, n_steps=4, step_size=schedule)
    with pytest.raises(ValueError, match="4 positive values"):
        SMCSampler(_exact_model(energy), energy, n_steps=4, step_size=[0.1], target_acceptance=None)


class _HalfPlaneWall(Energy):
    """u = ½|x|² for x₀ < 1 and +inf beyond: Z = 2π Φ(1)."""

    def __init__(self) -> None:
        super().__init__((2,), temperature=1.0)

    def _energy(self, x: Tensor) -> Tensor:
        return torch.where(x[:, 0] < 1.0, 0.5 * (x * x).sum(dim=1), math.inf)


def test_failed_configurations_get_zero_weight_and_log_z_stays_unbiased() -> None:
    energy = _HalfPlaneWall()
    model = _affine_model(energy, torch.zeros(2), 1.2 * torch.eye(2))
    smc = SMCSampler(model, energy, n_steps=5, step_size=0.1, target_acceptance=None)
    ratios = []
    log_z = math.log(2 * math.pi * 0.5 * (1 + math.erf(1 / math.sqrt(2))))
    for seed in range(40):
        samples = smc.sample(200, torch.Generator().manual_seed(seed))
        assert not bool(torch.isnan(samples.log_weights).any())
        failed = ~torch.isfinite(samples.energies)
        assert bool((samples.log_weights[failed] == -math.inf).all())
        ratios.append(math.exp(samples.info["log_z"] - log_z))
    r = torch.tensor(ratios, dtype=F64)
    assert abs(float(r.mean()) - 1.0) < 4 * float(r.std() / math.sqrt(r.numel()))


@pytest.mark.parametrize(("kernel", "per_sweep"), [("ula", 1), ("mala", 1), ("hmc", 4)])
def test_cost_counts_every_target_evaluation(kernel: str, per_sweep: int) -> None:
    energy = _gaussian(2)
    model = _mismatched_model(energy)
    model.training_cost = Cost(energy_evals=123, wall_s=1.0)
    smc = SMCSampler(model, energy, n_steps=5, kernel=kernel, n_mcmc=3, n_leapfrog=4)
    samples = smc.sample(40, torch.Generator().manual_seed(0))
    assert samples.cost.energy_evals == 0
    assert samples.cost.force_evals == 40 * (1 + 5 * 3 * per_sweep)
    assert samples.cost.train_energy_evals == 123 and samples.cost.train_wall_s == 1.0
    assert samples.info["flow_evals"] == 40 * (2 + 5 * 3 * per_sweep)
    torch.testing.assert_close(samples.energies, energy.energy(samples.x))


def test_flow_score_matches_finite_differences() -> None:
    energy = _gaussian(3)
    model = BoltzmannGenerator(GaussianPrior(3), make_spline_flow(3, hidden=8), energy)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in model.flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=F64))
    x = torch.randn(5, 3, generator=g, dtype=F64)
    log_q, grad = flow_score(model, x)
    torch.testing.assert_close(log_q, model.log_prob(x).detach())
    h = 1e-6
    for i in range(3):
        dx = torch.zeros(3, dtype=F64)
        dx[i] = h
        fd = (model.log_prob(x + dx) - model.log_prob(x - dx)).detach() / (2 * h)
        torch.testing.assert_close(grad[:, i], fd, rtol=1e-6, atol=1e-7)


def test_systematic_resampling_draws_floor_or_ceil_of_n_times_weight() -> None:
    g = torch.Generator().manual_seed(0)
    log_w = torch.randn(50, generator=g, dtype=F64) * 2
    expected = 50 * torch.softmax(log_w, 0)
    total = torch.zeros(50, dtype=F64)
    for _ in range(2000):
        counts = torch.bincount(systematic_resample(log_w, g), minlength=50).to(F64)
        assert bool((counts >= expected.floor()).all() and (counts <= expected.ceil()).all())
        total += counts
    torch.testing.assert_close(total / 2000, expected, atol=0.05, rtol=0.0)


def test_clip_log_weights_caps_the_largest_fraction() -> None:
    log_w = torch.arange(100, dtype=F64)
    clipped = clip_log_weights(log_w, 0.05)
    assert int((clipped < log_w).sum()) == 5
    assert float(clipped.max()) == 94.0
    torch.testing.assert_close(clipped[:95], log_w[:95])
    with pytest.raises(ValueError, match="clip_fraction"):
        clip_log_weights(log_w, 1.5)


def test_clipping_raises_ess_but_leaves_log_z_estimate_unclipped() -> None:
    energy = _gaussian(2)
    model = _mismatched_model(energy)
    kwargs = {"n_steps": 3, "resample_threshold": 0.0, "n_mcmc": 1}
    plain = SMCSampler(model, energy, **kwargs).sample(300, torch.Generator().manual_seed(0))
    clipped = SMCSampler(model, energy, clip_fraction=0.02, **kwargs).sample(
        300, torch.Generator().manual_seed(0)
    )
    assert clipped.info["log_z"] == plain.info["log_z"]
    assert kish_ess(clipped.log_weights) > kish_ess(plain.log_weights)
    assert clipped.info["clip_fraction"] == 0.02


def test_beta_schedules() -> None:
    torch.testing.assert_close(
        beta_schedule("linear", 4), torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=F64)
    )
    geometric = beta_schedule("geometric", 4, beta_min=1e-3)
    torch.testing.assert_close(geometric, torch.tensor([0, 1e-3, 1e-2, 1e-1, 1.0], dtype=F64))
    given = beta_schedule([0.1, 0.5, 1.0], 3)
    torch.testing.assert_close(given, torch.tensor([0.0, 0.1, 0.5, 1.0], dtype=F64))
    with pytest.raises(ValueError, match="strictly increasing"):
        beta_schedule([0.5, 0.1, 1.0], 3)
    with pytest.raises(ValueError, match="strictly increasing"):
        beta_schedule([0.1, 0.5], 2)


def test_sampling_is_reproducible_from_the_generator() -> None:
    energy = _gaussian(2)
    smc = SMCSampler(_mismatched_model(energy), energy, n_steps=4, kernel="mala")
    a = smc.sample(100, torch.Generator().manual_seed(7))
    b = smc.sample(100, torch.Generator().manual_seed(7))
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)
    torch.testing.assert_close(a.log_weights, b.log_weights, rtol=0, atol=0)


@pytest.mark.slow
def test_recovers_double_well_free_energy_from_a_briefly_trained_spline_flow() -> None:
    energy = DoubleWell2D()
    data = energy.sample_exact(5000, torch.Generator().manual_seed(0))
    model = BoltzmannGenerator(GaussianPrior(2), make_spline_flow(2, hidden=32), energy)
    train(model, energy, TrainConfig(steps=200, loss="forward_kl", lr=3e-3), data, progress=False)
    smc = SMCSampler(model, energy, n_steps=10, step_size=0.02, n_mcmc=2)
    runs = [smc.sample(1000, torch.Generator().manual_seed(s)) for s in range(10)]
    values = torch.tensor([free_energy_difference(r, _in_a, _in_b).value for r in runs])
    se = float(values.std() / math.sqrt(len(runs)))
    assert abs(float(values.mean()) - _double_well_delta_f(energy)) < 4 * se
    assert runs[0].cost.train_wall_s > 0


def _double_well_smc(**kwargs) -> tuple[DoubleWell2D, SMCSampler]:
    """SMC from a Gaussian q over both wells (Kish ESS ≈ 10 %): it resamples."""
    energy = DoubleWell2D()
    model = _affine_model(energy, torch.zeros(2), torch.diag(torch.tensor([2.0, 1.1])))
    return energy, SMCSampler(model, energy, n_steps=6, step_size=0.02, **kwargs)


def test_ess_counts_distinct_lineages_not_resampled_copies() -> None:
    """Without moves, resampled copies are identical: the ESS is at most the distinct count."""
    _, smc = _double_well_smc(n_mcmc=0, resample_threshold=1.0, n_runs=4)
    samples = smc.sample(1000, torch.Generator().manual_seed(0))
    distinct = sum(
        int(block.unique(dim=0).shape[0]) for block in samples.x.reshape(4, 250, 2).unbind(0)
    )
    assert kish_ess(samples.log_weights) > 900  # uniform within each run
    assert distinct < 500
    assert samples.info["ess"] <= distinct
    assert samples.info["ess_fraction"] == pytest.approx(samples.info["ess"] / 1000)
    assert samples.n_runs == 4


def test_between_run_errors_match_the_spread_over_seeds() -> None:
    """The reported log Z and ΔF errors agree with the scatter of independent repeats.

    A single population's delta-method error ignores the correlations that resampling
    creates (it was 3× too small on the double well); the between-run error does not.
    """
    from boltzgen.metrics import runs_free_energy_difference, samples_runs_log_z

    energy, smc = _double_well_smc(n_mcmc=1, n_runs=8)
    log_z, delta_f = [], []
    for seed in range(40):
        samples = smc.sample(800, torch.Generator().manual_seed(seed))
        log_z.append(tuple(samples_runs_log_z(samples)))
        delta_f.append(tuple(runs_free_energy_difference(samples, _in_a, _in_b)))
    for values, exact in ((log_z, energy.log_z), (delta_f, _double_well_delta_f(energy))):
        estimate, stderr = torch.tensor(values, dtype=F64).T
        ratio = float(estimate.std() / stderr.mean())
        # 40 repeats estimate the spread to ±11 %; the t-widening makes stderr ≈ 1.17 σ
        assert 0.6 < ratio < 1.4, ratio
        z = (estimate - exact) / stderr
        assert float((z.abs() > 2).double().mean()) <= 0.15


class _InFloat64(Energy):
    """``base`` evaluated in float64 whatever the dtype of x, as the molecular energies are."""

    def __init__(self, base: Energy):
        super().__init__(base.event_shape, base.temperature)
        self.base = base

    def _energy(self, x: Tensor) -> Tensor:
        return self.base._energy(x.to(F64))

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.base._force(x.to(F64))


@pytest.mark.parametrize("kernel", ["mala", "hmc"])
def test_float32_flow_on_a_float64_energy(kernel: str) -> None:
    """A float32 spline flow whose float64 target forces turn the particles into float64:
    the flow still runs in float32, and ten runs recover log Z of a correlated Gaussian."""
    base = _gaussian(3)
    energy = _InFloat64(base)
    data = base.sample_exact(5000, torch.Generator().manual_seed(0)).to(torch.float32)
    flow = make_spline_flow(3, hidden=32).to(torch.float32)
    model = BoltzmannGenerator(GaussianPrior(3, dtype=torch.float32), flow, energy)
    train(model, energy, TrainConfig(steps=200, loss="forward_kl", lr=3e-3), data, progress=False)
    smc = SMCSampler(model, energy, n_steps=5, kernel=kernel, step_size=0.05, n_mcmc=2)
    runs = [smc.sample(500, torch.Generator().manual_seed(s)) for s in range(10)]
    assert all(r.x.dtype == F64 and bool(torch.isfinite(r.log_weights).all()) for r in runs)
    log_z = torch.tensor([r.info["log_z"] for r in runs])
    se = float(log_z.std() / math.sqrt(len(runs)))
    assert abs(float(log_z.mean()) - base.log_z) < 4 * se
