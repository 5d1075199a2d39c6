"""Samplers against the exact answers of toy energies.

Stochastic normalizing flows and flow perturbation recover the mean and covariance of a
correlated Gaussian from a mismatched affine proposal; flow perturbation and flow HMC
recover the free-energy difference between the wells of the Boltzmann-generators double
well, ΔF = −ln(P(x₁ > 0) / P(x₁ < 0)), from quadrature; multi-step flow perturbation on
a flow-matched CNF recovers the 32-D many well's log Z (slow). Every check is within
4 standard errors; the weighted checks also show that the unweighted proposal misses the
answer by more than 10 se, and the HMC chains all start in the wrong well.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special
from torch import Tensor

from boltzgen.energies.toy import CorrelatedGaussian, DoubleWell2D, ManyWell
from boltzgen.flows import AffineFlow, GaussianPrior
from boltzgen.flows.base import Flow
from boltzgen.flows.ode import ContinuousFlow, VectorField, flow_matching_loss
from boltzgen.metrics import free_energy_difference, normalized_weights
from boltzgen.samplers.flow_mcmc import FlowHMC
from boltzgen.samplers.flow_perturbation import FlowPerturbation, PerturbationScale
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.snf import MALABlock, StochasticNormalizingFlow
from boltzgen.training import train_perturbation_scale

F64 = torch.float64
MEAN = torch.tensor([1.0, -2.0], dtype=F64)
COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=F64)
# N(SHIFT, MATRIX·MATRIXᵀ): shifted, too wide and uncorrelated compared with the target.
SHIFT = torch.tensor([0.5, -1.5], dtype=F64)
MATRIX = torch.tensor([[1.4, 0.0], [0.0, 1.4]], dtype=F64)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _moments(x: Tensor, log_w: Tensor) -> Tensor:
    """Self-normalised mean and covariance ``[5]``: (μ₁, μ₂, Σ₁₁, Σ₁₂, Σ₂₂) of ``x: [n, 2]``."""
    w = normalized_weights(log_w)
    mean = w @ x
    r = x - mean
    cov = (w[:, None] * r).T @ r
    return torch.cat([mean, cov[0, 0:2], cov[1, 1:2]])


def _exact_moments() -> Tensor:
    return torch.cat([MEAN, COV[0, 0:2], COV[1, 1:2]])


def _bootstrap_se(x: Tensor, log_w: Tensor, n_boot: int, generator: torch.Generator) -> Tensor:
    """Bootstrap standard errors ``[5]`` of :func:`_moments` over independent weighted draws."""
    reps = []
    for _ in range(n_boot):
        idx = torch.randint(x.shape[0], (x.shape[0],), generator=generator)
        reps.append(_moments(x[idx], log_w[idx]))
    return torch.stack(reps).std(dim=0)


def _in_a(x: Tensor) -> Tensor:
    return x[:, 0] < 0


def _in_b(x: Tensor) -> Tensor:
    return x[:, 0] > 0


def _exact_delta_f(energy: DoubleWell2D) -> float:
    """ΔF = −ln(P(x₁ > 0) / P(x₁ < 0)) by quadrature."""
    return energy.interval_log_prob(0, -math.inf, 0.0) - energy.interval_log_prob(0, 0.0, math.inf)


def _weighted_delta_f(x: Tensor, log_w: Tensor) -> float:
    w = normalized_weights(log_w)
    return float((w * _in_a(x)).sum().log() - (w * _in_b(x)).sum().log())


def _mean_se(values: list[float] | Tensor) -> tuple[float, float]:
    """Mean and standard error of the mean over independent runs."""
    t = torch.as_tensor(values, dtype=F64)
    return float(t.mean()), float(t.std() / math.sqrt(t.numel()))


def test_snf_with_mala_blocks_recovers_correlated_gaussian_moments() -> None:
    """Mismatched affine flow + MALA blocks at λ = ½, 1: weighted moments = exact ones."""
    energy = CorrelatedGaussian(MEAN, COV)
    blocks = [
        AffineFlow(SHIFT, MATRIX),
        MALABlock(0.5, 0.05, 2, trainable=False),
        MALABlock(1.0, 0.05, 2, trainable=False),
    ]
    snf = StochasticNormalizingFlow(GaussianPrior(2), blocks, energy)
    samples = snf.sample(20_000, _gen(0))
    assert all(0.3 < a < 0.99 for a in samples.info["acceptance"])
    estimate = _moments(samples.x, samples.log_weights)
    se = _bootstrap_se(samples.x, samples.log_weights, 200, _gen(1))
    exact = _exact_moments()
    assert bool(((estimate - exact).abs() < 4 * se).all()), (estimate, se)
    assert bool((se < 0.05).all()), se
    unweighted = _moments(samples.x, torch.zeros_like(samples.log_weights))
    assert bool(((unweighted - exact).abs() > 10 * se).any()), (unweighted, se)


def test_flow_perturbation_recovers_correlated_gaussian_moments() -> None:
    """Affine proposal, weights from perturbations only: moments within 4 se over 10 runs."""
    energy = CorrelatedGaussian(MEAN, COV)
    fp = FlowPerturbation(GaussianPrior(2), AffineFlow(SHIFT, MATRIX), energy, 0.1)
    runs, raw = [], []
    for seed in range(10):
        samples = fp.sample(5000, _gen(10 + seed))
        runs.append(_moments(samples.x, samples.log_weights))
        raw.append(_moments(samples.x, torch.zeros_like(samples.log_weights)))
    stacked = torch.stack(runs)
    estimate, se = stacked.mean(0), stacked.std(0) / math.sqrt(len(runs))
    exact = _exact_moments()
    assert bool(((estimate - exact).abs() < 4 * se).all()), (estimate, se)
    assert bool((se < 0.05).all()), se
    unweighted = torch.stack(raw).mean(0)
    assert bool(((unweighted - exact).abs() > 10 * se).any()), (unweighted, se)


def test_flow_perturbation_recovers_double_well_free_energy() -> None:
    """A Gaussian over both wells, weights from perturbations only: ΔF within 4 se (10 runs)."""
    energy = DoubleWell2D()
    flow = AffineFlow(
        torch.tensor([-0.5, 0.0], dtype=F64), torch.diag(torch.tensor([2.0, 1.1], dtype=F64))
    )
    fp = FlowPerturbation(GaussianPrior(2), flow, energy, 0.05)
    values, raw = [], []
    for seed in range(10):
        samples = fp.sample(20_000, _gen(20 + seed))
        values.append(_weighted_delta_f(samples.x, samples.log_weights))
        raw.append(_weighted_delta_f(samples.x, torch.zeros_like(samples.log_weights)))
    value, se = _mean_se(values)
    exact = _exact_delta_f(energy)
    assert abs(value - exact) < 4 * se, (value, se, exact)
    assert se < 0.05, se
    assert abs(_mean_se(raw)[0] - exact) > 10 * se, raw


class _WellTransport(Flow):
    """x₁ = F⁻¹(Φ(z₁)), x₂ = z₂: the transport of N(0, I) onto a :class:`DoubleWell2D`.

    F⁻¹∘Φ is tabulated (knots uniform in x₁, linear in between); the log-det is the
    analytic one of the exact map, log φ(z₁) − log p₁(x₁), so the pulled-back energy is
    U(z) = |z|²/2 + const up to the table's error. ``forward``/``inverse``: ``[B, 2]``.
    """

    def __init__(self, energy: DoubleWell2D, n_knots: int = 20_001):
        super().__init__()
        self.well, self.log_z1 = energy.well, energy.well.log_integral()
        x = np.linspace(*self.well.support, n_knots)
        density = np.exp(-(self.well(x) - self.well(self.well.minimum)))
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]))])
        z = special.ndtri(cdf / cdf[-1])
        x, z = x[np.isfinite(z)], z[np.isfinite(z)]
        keep = np.concatenate([[True], np.diff(z) > 0])
        self.register_buffer("z_knots", torch.from_numpy(z[keep]))
        self.register_buffer("x_knots", torch.from_numpy(x[keep]))

    def _logdet(self, z1: Tensor, x1: Tensor) -> Tensor:
        """log φ(z₁) − log p₁(x₁) = log φ(z₁) + u₁(x₁) + log Z₁."""
        u1 = self.well.q4 * x1**4 + self.well.q2 * x1**2 + self.well.q1 * x1
        return -0.5 * z1**2 - 0.5 * math.log(2 * math.pi) + u1 + self.log_z1

    @staticmethod
    def _interp(t: Tensor, knots: Tensor, values: Tensor) -> Tensor:
        i = torch.searchsorted(knots, t.detach().contiguous()).clamp(1, knots.numel() - 1) - 1
        slope = (values[i + 1] - values[i]) / (knots[i + 1] - knots[i])
        return values[i] + (t - knots[i]) * slope

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x1 = self._interp(z[:, 0], self.z_knots, self.x_knots)
        return torch.stack([x1, z[:, 1]], dim=1), self._logdet(z[:, 0], x1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z1 = self._interp(x[:, 0], self.x_knots, self.z_knots)
        return torch.stack([z1, x[:, 1]], dim=1), -self._logdet(z1, x[:, 0])


def test_flow_hmc_through_the_exact_transport_recovers_double_well_free_energy() -> None:
    """Every chain starts in the shallow well (x₁ = 2.3); latent HMC must carry them to the
    deep one, and does so only if U = u∘f − log|det ∂f/∂z| is assembled correctly."""
    energy = DoubleWell2D()
    model = BoltzmannGenerator(GaussianPrior(2), _WellTransport(energy), energy)
    sampler = FlowHMC(model, energy, step_size=0.25, n_leapfrog=6, target_acceptance=None)
    x0 = torch.tensor([[2.3, 0.0]], dtype=F64).repeat(64, 1)
    samples = sampler.sample(64, 500, _gen(0), n_warmup=20, x0=x0)
    assert samples.info["acceptance"] > 0.9
    value, se = free_energy_difference(samples, _in_a, _in_b)
    exact = _exact_delta_f(energy)
    assert abs(value - exact) < 4 * se, (value, se, exact)
    assert se < 0.2, se


def _flow_matched_field(energy: ManyWell, steps: int, generator: torch.Generator) -> VectorField:
    """A vector field trained by flow matching on 50 000 exact samples (Adam, cosine)."""
    data = energy.sample_exact(50_000, generator)
    field = VectorField(energy.dim, hidden=256, n_layers=2, seed=0)
    optimizer = torch.optim.Adam(field.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        x = data[torch.randint(len(data), (512,), generator=generator)]
        z = torch.randn(512, energy.dim, generator=generator, dtype=F64)
        loss = flow_matching_loss(field, z, x, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return field


@pytest.mark.slow
def test_multi_step_flow_perturbation_recovers_many_well_log_z() -> None:
    """32-D many well: a flow-matched CNF cut into 10 perturbed pieces (σ = 10⁻³, trained
    diagonal latent scale). Ẑ is unbiased, log Ẑ is not, so the check is mean(Ẑ/Z) = 1
    within 4 se over 8 independent runs of 20 000 samples."""
    energy = ManyWell()
    cnf = ContinuousFlow(_flow_matched_field(energy, 6000, _gen(0)), n_steps=10)
    scale = PerturbationScale(energy.dim, 10, diagonal=True)
    fp = FlowPerturbation(GaussianPrior(energy.dim), cnf.segments(10), energy, 1e-3, scale)
    train_perturbation_scale(fp, 50, 256, 1e-2, _gen(7))
    ratios = []
    for seed in range(8):
        samples = fp.sample(20_000, _gen(100 + seed))
        assert samples.info["backward_passes"] == 0
        ratios.append(math.exp(samples.info["log_z"] - energy.log_z))
    mean, se = _mean_se(ratios)
    assert se < 0.1 and abs(mean - 1.0) < 4 * se, (mean, se, ratios)
