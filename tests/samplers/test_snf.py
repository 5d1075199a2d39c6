"""Stochastic normalizing flows: exact path weights in Gaussian cases, the importance
identity E[w] = Z, the double-well free energy, cost counting and end-to-end training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.toy import CorrelatedGaussian, DoubleWell2D
from boltzgen.flows import AffineFlow, GaussianPrior, make_spline_flow
from boltzgen.metrics import free_energy_difference, log_z
from boltzgen.samplers.snf import (
    LangevinBlock,
    MALABlock,
    MetropolisBlock,
    StochasticNormalizingFlow,
    path_kl_loss,
)
from boltzgen.training import train_snf

F64 = torch.float64
MEAN = torch.tensor([1.0, -1.0], dtype=F64)
COV = torch.tensor([[1.5, 0.3], [0.3, 0.6]], dtype=F64)


def _gaussian() -> CorrelatedGaussian:
    return CorrelatedGaussian(MEAN, COV)


def _inexact_flow() -> AffineFlow:
    return AffineFlow(
        torch.tensor([0.5, -0.5], dtype=F64), torch.tensor([[1.0, 0.0], [0.2, 0.9]], dtype=F64)
    )


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _double_well_reference(energy: DoubleWell2D) -> float:
    """ΔF = −ln(P(x₁ > 0) / P(x₁ < 0)) by quadrature."""
    return energy.interval_log_prob(0, -math.inf, 0.0) - energy.interval_log_prob(0, 0.0, math.inf)


def _left(x: Tensor) -> Tensor:
    return x[:, 0] < 0


def _right(x: Tensor) -> Tensor:
    return x[:, 0] >= 0


@pytest.mark.parametrize(
    "blocks",
    [
        [MALABlock(1.0, 0.2, 3)],
        [MetropolisBlock(1.0, 0.5, 3)],
        [MALABlock(1.0, 0.1, 2), MetropolisBlock(1.0, 0.8, 2)],
    ],
    ids=["mala", "metropolis", "mala+metropolis"],
)
def test_detailed_balance_blocks_started_in_equilibrium_give_uniform_weights(
    blocks: list[torch.nn.Module],
) -> None:
    """q_0 = p exactly and every kernel keeps p: ΔS = u(y_t) − u(y_{t−1}), w ≡ Z."""
    energy = _gaussian()
    flow = AffineFlow.from_gaussian(MEAN, COV)
    snf = StochasticNormalizingFlow(GaussianPrior(2), [flow, *blocks], energy)
    samples = snf.sample(5000, _gen(0))
    assert float(samples.log_weights.std()) < 1e-10
    assert samples.info["log_z"] == pytest.approx(energy.log_z, abs=1e-10)
    assert all(0.2 < a < 1.0 for a in samples.info["acceptance"])  # the chains did move


@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_langevin_path_weight_is_the_exact_kernel_ratio(lam: float) -> None:
    """For quadratic u_λ the Euler–Maruyama ratio is ũ_λ(y_T) − ũ_λ(y_0), ũ = u − ε/4 |∇u|².

    With q_0 = p exactly: log w = log Z + u(y_0) − u(y_T) + ũ_λ(y_T) − ũ_λ(y_0), per sample.
    """
    energy, prior, eps, n = _gaussian(), GaussianPrior(2), 0.15, 2000
    flow = AffineFlow.from_gaussian(MEAN, COV)
    snf = StochasticNormalizingFlow(prior, [flow, LangevinBlock(lam, eps, 3)], energy)
    samples = snf.sample(n, _gen(1))
    x0 = flow(prior.sample(n, _gen(1)))[0]  # the same first draw from the generator
    precision = torch.linalg.inv(COV)

    def u_lam(x: Tensor) -> Tensor:
        return (1 - lam) * 0.5 * x.square().sum(1) + lam * energy.energy(x)

    def shadow(x: Tensor) -> Tensor:
        grad = (1 - lam) * x + lam * (x - MEAN) @ precision
        return u_lam(x) - eps / 4 * grad.square().sum(1)

    x_t = samples.x
    expected = energy.log_z + energy.energy(x0) - energy.energy(x_t) + shadow(x_t) - shadow(x0)
    torch.testing.assert_close(samples.log_weights, expected, atol=1e-10, rtol=0.0)
    assert float(samples.log_weights.std()) > 1e-3


def _ula_marginal(flow: AffineFlow, blocks: list[LangevinBlock]) -> tuple[Tensor, Tensor]:
    """Mean and covariance of y_T: each ULA step is y' = (I − εA)y + εb + √(2ε)η."""
    precision = torch.linalg.inv(COV)
    mean, cov = flow.shift.detach(), flow.matrix.detach() @ flow.matrix.detach().T
    for block in blocks:
        eps = float(block.step_size.detach())
        a = (1 - block.lam) * torch.eye(2, dtype=F64) + block.lam * precision
        m = torch.eye(2, dtype=F64) - eps * a
        for _ in range(block.n_steps):
            mean = m @ mean + eps * block.lam * precision @ MEAN
            cov = m @ cov @ m.T + 2 * eps * torch.eye(2, dtype=F64)
    return mean, cov


def test_path_weights_satisfy_the_importance_identity_and_bound_the_marginal_kl() -> None:
    """Inexact affine flow + ULA blocks: E[w] = Z within 4 se; x_T has the analytic
    Gaussian marginal q_T, and E[−log w_path] ≥ E[−log w_marginal] = KL(q_T‖p) − log Z."""
    energy, n = _gaussian(), 100_000
    blocks = [LangevinBlock(0.5, 0.1, 2), LangevinBlock(1.0, 0.1, 2)]
    flow = _inexact_flow()
    snf = StochasticNormalizingFlow(GaussianPrior(2), [flow, *blocks], energy)
    samples = snf.sample(n, _gen(2))
    value, se = log_z(samples.log_weights)
    assert abs(value - energy.log_z) < 4 * se
    assert samples.info["ess_fraction"] < 0.9  # weights are far from uniform
    mean, cov = _ula_marginal(flow, blocks)
    x = samples.x.detach()
    atol = 4 * float(cov.diag().max().sqrt()) / n**0.5
    torch.testing.assert_close(x.mean(0), mean, atol=atol, rtol=0.0)
    log_q = torch.distributions.MultivariateNormal(mean, cov).log_prob(x)
    marginal = -energy.energy(x) - log_q
    m_value, m_se = log_z(marginal)
    assert abs(m_value - energy.log_z) < 4 * m_se
    gap = -samples.log_weights + marginal  # ≥ 0 on average (data processing inequality)
    assert float(gap.mean()) > 0
    assert float(gap.mean()) > 4 * float(gap.std()) / n**0.5


def test_annealed_mala_ladder_recovers_double_well_free_energy() -> None:
    energy = DoubleWell2D()
    prior = GaussianPrior(2, std=torch.tensor([3.0, 1.0], dtype=F64))
    blocks = [MALABlock(lam, 0.05, 5) for lam in (0.2, 0.4, 0.6, 0.8, 1.0)]
    samples = StochasticNormalizingFlow(prior, blocks, energy).sample(5000, _gen(3))
    value, se = free_energy_difference(samples, _left, _right)
    assert abs(value - _double_well_reference(energy)) < 4 * se
    assert se < 0.1
    assert abs(samples.info["log_z"] - energy.log_z) < 4 * samples.info["log_z_se"]


def _trainable_double_well_snf() -> StochasticNormalizingFlow:
    prior = GaussianPrior(2, std=torch.tensor([3.0, 1.0], dtype=F64))
    flows = make_spline_flow(2, n_layers=2, hidden=32, tail_bound=8.0).layers
    blocks = [
        flows[0],
        LangevinBlock(0.3, 0.05, 2),
        flows[1],
        LangevinBlock(0.6, 0.05, 2),
        MALABlock(1.0, 0.05, 4),
    ]
    return StochasticNormalizingFlow(prior, blocks, DoubleWell2D())


def test_trained_snf_recovers_double_well_free_energy() -> None:
    """Flow layers and Langevin step sizes trained end to end by the path KL."""
    snf = _trainable_double_well_snf()
    before = snf.sample(4000, _gen(4))
    history = train_snf(snf, 150, 256, 3e-3, _gen(5))
    after = snf.sample(20_000, _gen(6))
    assert after.info["ess_fraction"] > 2 * before.info["ess_fraction"]
    assert sum(history.losses[-20:]) / 20 < sum(history.losses[:20]) / 20
    assert snf.blocks[1].step_size.item() != pytest.approx(0.05, abs=1e-6)
    value, se = free_energy_difference(after, _left, _right)
    assert abs(value - _double_well_reference(snf.energy)) < 4 * se
    assert after.cost.train_force_evals == history.cost.force_evals > 0


def test_training_resumes_exactly_from_a_checkpoint(tmp_path) -> None:
    straight = _trainable_double_well_snf()
    train_snf(straight, 6, 32, 1e-2, _gen(7))
    resumed = _trainable_double_well_snf()
    train_snf(resumed, 3, 32, 1e-2, _gen(7), checkpoint_dir=tmp_path, checkpoint_every=3)
    fresh = _trainable_double_well_snf()
    history = train_snf(fresh, 6, 32, 1e-2, _gen(99), checkpoint_dir=tmp_path)
    assert history.resumed_from == 3 and len(history.losses) == 6
    for a, b in zip(straight.state_dict().values(), fresh.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=0.0, rtol=0.0)


def test_cost_counts_every_target_evaluation_once() -> None:
    """Langevin λ=0: free; λ=0.5, 2 steps: 3 forces; MALA 3 steps: 3 (start reused);
    Metropolis 2 steps: 2 energies (start reused); the final weight: reused."""
    n = 100
    blocks = [
        _inexact_flow(),
        LangevinBlock(0.0, 0.1, 2),
        LangevinBlock(0.5, 0.1, 2),
        MALABlock(1.0, 0.1, 3),
        MetropolisBlock(1.0, 0.3, 2),
    ]
    samples = StochasticNormalizingFlow(GaussianPrior(2), blocks, _gaussian()).sample(n, _gen(8))
    assert samples.cost.force_evals == 6 * n
    assert samples.cost.energy_evals == 2 * n
    assert len(samples.info["acceptance"]) == 2


def test_path_kl_loss_is_minus_the_mean_log_weight_and_bounds_log_z() -> None:
    energy = _gaussian()
    snf = StochasticNormalizingFlow(
        GaussianPrior(2), [_inexact_flow(), LangevinBlock(1.0, 0.1, 2)], energy
    )
    loss, log_w = path_kl_loss(snf, 20_000, _gen(9))
    assert float(loss.detach()) == pytest.approx(float(-log_w.mean()), abs=1e-10)
    assert float(loss.detach()) > -energy.log_z  # KL(forward path ‖ backward path) > 0
    loss.backward()
    assert snf.blocks[1].log_step_size.grad is not None


class _Wall(Energy):
    """u = ½|x|² for x₀ < 0.5 and +inf beyond."""

    def __init__(self) -> None:
        super().__init__((2,), temperature=1.0)

    def _energy(self, x: Tensor) -> Tensor:
        return torch.where(x[:, 0] < 0.5, 0.5 * x.square().sum(1), math.inf)


def test_configurations_with_infinite_energy_get_zero_weight() -> None:
    blocks = [LangevinBlock(0.5, 0.1, 1), MetropolisBlock(1.0, 0.5, 2)]
    samples = StochasticNormalizingFlow(GaussianPrior(2), blocks, _Wall()).sample(2000, _gen(10))
    assert not bool(torch.isnan(samples.log_weights).any())
    failed = ~torch.isfinite(samples.energies)
    assert samples.info["n_nonfinite"] == int(failed.sum()) > 0
    assert bool((samples.log_weights[failed] == -math.inf).all())


def test_rejects_bad_blocks_and_lambdas() -> None:
    with pytest.raises(TypeError, match="block 0"):
        StochasticNormalizingFlow(GaussianPrior(2), [torch.nn.Linear(2, 2)], _gaussian())
    with pytest.raises(ValueError, match="λ"):
        LangevinBlock(1.5, 0.1)
    with pytest.raises(ValueError, match="step_size"):
        MALABlock(0.5, 0.0)
