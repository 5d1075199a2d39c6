"""Flow perturbation: unbiased weights without log-dets on affine and continuous flows,
the multi-step variant, the exact per-path ΔS, and the training of the latent scale."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from boltzgen.energies.toy import CorrelatedGaussian
from boltzgen.flows import AffineFlow, GaussianPrior
from boltzgen.flows.base import Flow
from boltzgen.flows.ode import ContinuousFlow, VectorField
from boltzgen.metrics import log_z
from boltzgen.samplers.flow_perturbation import FlowPerturbation, PerturbationScale
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.training import train_perturbation_scale

F64 = torch.float64
MEAN = torch.tensor([1.0, -1.0, 0.5], dtype=F64)
COV = torch.tensor([[1.5, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.8]], dtype=F64)
MATRIX = torch.tensor([[1.1, 0.0, 0.0], [0.2, 0.9, 0.0], [0.1, -0.1, 1.2]], dtype=F64)
SHIFT = torch.tensor([0.8, -0.9, 0.4], dtype=F64)


class _NoLogdet(Flow):
    """An affine map whose log-dets are NaN: any use of them poisons the weights."""

    def __init__(self, shift: Tensor, matrix: Tensor):
        super().__init__()
        self.affine = AffineFlow(shift, matrix)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x, logdet = self.affine(z)
        return x, torch.full_like(logdet, math.nan)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, logdet = self.affine.inverse(x)
        return z, torch.full_like(logdet, math.nan)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _target() -> CorrelatedGaussian:
    return CorrelatedGaussian(MEAN, COV)


@pytest.mark.parametrize("estimator", ["path", "radial"])
@pytest.mark.parametrize("sigma", [1e-3, 0.3])
def test_affine_flow_weights_are_unbiased_without_logdets(estimator: str, sigma: float) -> None:
    """mean(exp(log w)) = Z within 4 se; log-dets are NaN, so only perturbations count."""
    energy = _target()
    fp = FlowPerturbation(
        GaussianPrior(3), _NoLogdet(SHIFT, MATRIX), energy, sigma, estimator=estimator
    )
    samples = fp.sample(100_000, _gen(0))
    value, se = log_z(samples.log_weights)
    assert abs(value - energy.log_z) < 4 * se
    assert se < 0.01
    exact = BoltzmannGenerator(GaussianPrior(3), AffineFlow(SHIFT, MATRIX), energy)
    exact_ess = exact.sample(100_000, _gen(0)).info["ess_fraction"]
    assert samples.info["ess_fraction"] < exact_ess  # the perturbation adds variance


def test_path_delta_s_of_an_affine_map_is_the_gaussian_kernel_ratio() -> None:
    """δz = σL⁻¹ξ exactly, so ΔS = −½|L⁻¹ξ|² + ½|ξ|² per path (σ_z = σ)."""
    sigma, n = 0.05, 1000
    prior, energy = GaussianPrior(3), _target()
    fp = FlowPerturbation(prior, AffineFlow(SHIFT, MATRIX), energy, sigma)
    path = fp.path(n, _gen(1))
    g = _gen(1)
    z = prior.sample(n, g)
    xi = torch.randn(n, 3, generator=g, dtype=F64)
    torch.testing.assert_close(path.x, z @ MATRIX.T + SHIFT + sigma * xi)
    l_inv_xi = torch.linalg.solve_triangular(MATRIX, xi.T, upper=False).T
    expected = -0.5 * l_inv_xi.square().sum(1) + 0.5 * xi.square().sum(1)
    torch.testing.assert_close(path.delta_s.detach(), expected, atol=1e-9, rtol=0.0)
    # E[exp ΔS] = |det L| over the perturbations
    mean = expected.exp().mean()
    se = expected.exp().std() / n**0.5
    assert abs(float(mean) - float(MATRIX.diagonal().prod())) < 4 * float(se)


def test_multi_step_perturbation_is_unbiased() -> None:
    """Flow Perturbation++: three affine steps, a perturbation after each."""
    energy = _target()
    a = torch.tensor([[1.0, 0.0, 0.0], [0.1, 1.05, 0.0], [0.0, 0.05, 0.95]], dtype=F64)
    steps = [_NoLogdet(SHIFT / 3, a), _NoLogdet(SHIFT / 3, a.T), _NoLogdet(SHIFT / 3, a)]
    fp = FlowPerturbation(GaussianPrior(3), steps, energy, 0.05)
    samples = fp.sample(100_000, _gen(2))
    value, se = log_z(samples.log_weights)
    assert abs(value - energy.log_z) < 4 * se
    assert samples.info["n_steps"] == 3


def _cnf(dim: int) -> ContinuousFlow:
    field = VectorField(dim, hidden=16, seed=4)
    g = _gen(5)
    with torch.no_grad():
        field.net[-1].weight.copy_(0.5 * torch.randn(field.net[-1].weight.shape, generator=g))
        field.net[-1].bias.copy_(0.3 * torch.randn(field.net[-1].bias.shape, generator=g))
    return ContinuousFlow(field, n_steps=12)


@pytest.mark.parametrize("segments", [1, 4])
def test_continuous_flow_weights_agree_with_exact_logdet_weights(segments: int) -> None:
    """On a non-linear CNF, log Z from perturbations (no backward passes) matches log Z
    from exact log-dets within their combined 4 se."""
    energy, n = _target(), 20_000
    cnf = _cnf(3)
    exact = BoltzmannGenerator(GaussianPrior(3), cnf, energy).sample(n, _gen(6))
    before = cnf.counter.snapshot()
    fp = FlowPerturbation(GaussianPrior(3), cnf.segments(segments), energy, 1e-2)
    pert = fp.sample(n, _gen(7))
    assert cnf.counter.since(before).backward_passes == 0
    assert pert.info["backward_passes"] == 0 and pert.info["field_evals"] > 0
    assert pert.cost.energy_evals == n and pert.cost.force_evals == 0
    exact_value, exact_se = log_z(exact.log_weights)
    combined = math.hypot(pert.info["log_z_se"], exact_se)
    assert abs(pert.info["log_z"] - exact_value) < 4 * combined
    assert abs(pert.info["log_z"] - energy.log_z) < 4 * pert.info["log_z_se"]


def test_multi_step_perturbation_has_lower_variance_on_a_cnf() -> None:
    """Each step of a time-split CNF is near the identity, so ΔS_k fluctuates little."""
    energy = _target()
    cnf = _cnf(3)
    spread = {}
    for k in (1, 6):
        fp = FlowPerturbation(GaussianPrior(3), cnf.segments(k), energy, 1e-2)
        with torch.no_grad():
            path = fp.path(4000, _gen(8))
        spread[k] = float(path.delta_s.std())
    assert spread[6] < 0.7 * spread[1]


@pytest.mark.parametrize("objective", ["norm", "kl"])
@pytest.mark.parametrize("diagonal", [False, True])
def test_training_the_latent_scale_reduces_the_weight_variance(
    objective: str, diagonal: bool
) -> None:
    """A flow that stretches by 3 (isotropically, or only x₁ for a diagonal scale): σ_z = σ
    is far off, the trained σ_z ≈ σ/3 is not; the weights stay unbiased (σ_z(x') only)."""
    stretch = torch.tensor([3.0, 1.0] if diagonal else [3.0, 3.0], dtype=F64)
    energy = CorrelatedGaussian(torch.zeros(2, dtype=F64), torch.diag(stretch.square()))
    matrix = torch.diag(stretch)
    scale = PerturbationScale(2, diagonal=diagonal)
    flow = _NoLogdet(torch.zeros(2, dtype=F64), matrix)
    fp = FlowPerturbation(GaussianPrior(2), flow, energy, 0.01, scale=scale)
    with torch.no_grad():
        before = float(fp.path(4000, _gen(9)).delta_s.std())
    losses = train_perturbation_scale(fp, 150, 256, 2e-2, _gen(10), objective)
    assert sum(losses[-10:]) < sum(losses[:10])
    samples = fp.sample(50_000, _gen(11))
    with torch.no_grad():
        after = float(fp.path(4000, _gen(9)).delta_s.std())
    assert after < 0.3 * before
    value, se = log_z(samples.log_weights)
    assert abs(value - energy.log_z) < 4 * se
    assert energy.counter.energy == 50_000 + 2 * 4000  # scale training costs no energies


def test_rejects_inconsistent_arguments() -> None:
    energy = _target()
    with pytest.raises(ValueError, match="sigma"):
        FlowPerturbation(GaussianPrior(3), AffineFlow(SHIFT, MATRIX), energy, 0.0)
    with pytest.raises(ValueError, match="heads"):
        FlowPerturbation(
            GaussianPrior(3), AffineFlow(SHIFT, MATRIX), energy, 0.1, PerturbationScale(3, 2)
        )
