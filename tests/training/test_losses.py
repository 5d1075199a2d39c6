"""Flow objectives: exact values for an exact flow, finite losses for infinite energies, and the
log-variance loss fitting a flow over a reference broader than its prior."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.toy import CorrelatedGaussian
from boltzgen.flows import AffineFlow, GaussianPrior, make_spline_flow
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.training import (
    TrainConfig,
    forward_kl,
    log_variance,
    mixed_kl,
    reverse_kl,
    soft_cap,
    train,
)

F64 = torch.float64


class _Wall(Energy):
    """u = ½|x|² for x₀ < 0.5, +inf beyond (a failed region)."""

    def __init__(self) -> None:
        super().__init__((2,), temperature=1.0)

    def _energy(self, x: Tensor) -> Tensor:
        u = 0.5 * (x * x).sum(dim=1)
        return torch.where(x[:, 0] < 0.5, u, torch.full_like(u, math.inf))


def _gaussian() -> CorrelatedGaussian:
    return CorrelatedGaussian([1.0, -2.0], [[2.0, 0.6], [0.6, 0.5]])


def test_soft_cap_is_identity_below_and_c1_at_the_cap() -> None:
    u = torch.tensor([-5.0, 0.0, 9.999, 10.0, 10.001, 1e8, math.inf, math.nan], dtype=F64)
    u.requires_grad_(True)
    capped = soft_cap(u, 10.0)
    values = capped.detach()
    torch.testing.assert_close(values[:4], u[:4].detach())
    assert float(values[4]) == pytest.approx(10.0 + math.log1p(0.001))
    assert float(values[5]) == pytest.approx(10.0 + math.log1p(1e8 - 10.0))
    assert bool(torch.isfinite(values).all())
    assert float(values[6]) == pytest.approx(10.0 + math.log(torch.finfo(F64).max))
    (grad,) = torch.autograd.grad(capped.sum(), u)
    assert bool(torch.isfinite(grad).all())
    assert grad.tolist()[:4] == [1.0, 1.0, 1.0, 1.0]
    assert float(grad[4]) == pytest.approx(1.0, abs=2e-3)
    assert grad.tolist()[6:] == [0.0, 0.0]


def test_reverse_kl_of_exact_flow_is_minus_log_z() -> None:
    energy = _gaussian()
    flow = AffineFlow.from_gaussian(energy.mean, energy.cov)
    loss, log_w = reverse_kl(GaussianPrior(2), flow, energy, 500, torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(-energy.log_z, abs=1e-10)
    torch.testing.assert_close(log_w, torch.full((500,), energy.log_z, dtype=F64))
    assert energy.counter.energy == 500


def test_forward_kl_of_exact_flow_is_the_target_nll() -> None:
    energy = _gaussian()
    flow = AffineFlow.from_gaussian(energy.mean, energy.cov)
    x = energy.sample_exact(300, torch.Generator().manual_seed(1))
    loss = forward_kl(GaussianPrior(2), flow, x)
    assert loss.item() == pytest.approx(float((energy.energy(x) + energy.log_z).mean()), abs=1e-10)


def test_mixed_kl_weights_the_two_losses() -> None:
    energy = _gaussian()
    prior, flow = GaussianPrior(2), make_spline_flow(2, hidden=8)
    x = energy.sample_exact(64, torch.Generator().manual_seed(1))
    mixed, _ = mixed_kl(prior, flow, energy, x, torch.Generator().manual_seed(2), 0.25)
    rev, _ = reverse_kl(prior, flow, energy, 64, torch.Generator().manual_seed(2))
    fwd = forward_kl(prior, flow, x)
    assert mixed.item() == pytest.approx(0.25 * fwd.item() + 0.75 * rev.item(), rel=1e-12)
    with pytest.raises(ValueError, match="forward_weight"):
        mixed_kl(prior, flow, energy, x, torch.Generator(), 1.5)


def test_infinite_energies_give_finite_loss_and_gradients() -> None:
    flow = make_spline_flow(2, hidden=8)
    loss, log_w = reverse_kl(
        GaussianPrior(2), flow, _Wall(), 1000, torch.Generator().manual_seed(0), energy_cap=50.0
    )
    assert bool((log_w == -math.inf).any()) and bool(torch.isfinite(log_w).any())
    assert math.isfinite(loss.item())
    loss.backward()
    grads = [p.grad for p in flow.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


def test_log_variance_of_an_exact_flow_is_zero_under_any_reference() -> None:
    """Var_r[log w] = 0 when q = p, for draws far outside the prior's bulk too; log w = ln Z."""
    energy = _gaussian()
    flow = AffineFlow.from_gaussian(energy.mean, energy.cov)
    broad = GaussianPrior(2, std=torch.full((2,), 4.0, dtype=F64))
    loss, log_w = log_variance(
        GaussianPrior(2), flow, energy, broad, 400, torch.Generator().manual_seed(0)
    )
    assert loss.item() == pytest.approx(0.0, abs=1e-18)
    torch.testing.assert_close(log_w, torch.full((400,), energy.log_z, dtype=F64))
    assert energy.counter.energy == 400


def test_log_variance_is_the_variance_of_the_reverse_kl_terms_and_positive_when_wrong() -> None:
    """On the prior's own draws the loss is the unbiased variance of u(f(z)) + log q(f(z)),
    whose mean is the reverse-KL loss; a flow that misses p gives a positive variance."""
    energy, prior, flow = _gaussian(), GaussianPrior(2), make_spline_flow(2, hidden=8).double()
    lv, log_w = log_variance(prior, flow, energy, prior, 256, torch.Generator().manual_seed(3))
    rev, log_w_rev = reverse_kl(prior, flow, energy, 256, torch.Generator().manual_seed(3))
    torch.testing.assert_close(log_w, log_w_rev)
    assert lv.item() == pytest.approx(float(log_w.var()), rel=1e-10) and lv.item() > 0.1
    assert rev.item() == pytest.approx(float(-log_w.mean()), rel=1e-10)
    with pytest.raises(ValueError, match="batch_size"):
        log_variance(prior, flow, energy, prior, 1, torch.Generator())


def test_training_by_log_variance_from_a_broad_reference_finds_the_exact_affine_map() -> None:
    """An affine flow trained only on draws of N(0, 3²) (not its N(0, 1) prior) reaches the
    target's mean and covariance: zero variance of log w means q = p."""
    energy = _gaussian()
    flow = AffineFlow(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    model = BoltzmannGenerator(GaussianPrior(2), flow, energy)
    broad = GaussianPrior(2, std=torch.full((2,), 3.0, dtype=F64))
    config = TrainConfig(steps=600, batch_size=64, lr=0.03, loss="log_variance")
    result = train(model, energy, config, progress=False, reference=broad)
    assert result.cost.energy_evals == 600 * 64
    x = model.sample(4000, torch.Generator().manual_seed(5)).x
    torch.testing.assert_close(x.mean(0), energy.mean.to(F64), atol=0.1, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), energy.cov.to(F64), atol=0.1, rtol=0)
    assert result.losses[-1] < 1e-3 * result.losses[0]
    with pytest.raises(ValueError, match="log_variance"):
        train(model, energy, TrainConfig(steps=1), progress=False, reference=broad)
