"""Continuous normalizing flow: round trip, exact log-det against the autograd Jacobian,
Hutchinson unbiasedness, time segments, cost counting and trainability."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from boltzgen.flows.ode import (
    ContinuousFlow,
    VectorField,
    exact_divergence,
    flow_matching_loss,
    hutchinson_divergence,
)

F64 = torch.float64


def _field(dim: int, seed: int = 1, scale: float = 0.7) -> VectorField:
    """A non-trivial field: the zero-initialised last layer replaced by random weights."""
    field = VectorField(dim, hidden=16, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        last = field.net[-1]
        last.weight.copy_(scale * torch.randn(last.weight.shape, generator=g, dtype=F64))
        last.bias.copy_(0.3 * torch.randn(last.bias.shape, generator=g, dtype=F64))
    return field


def _points(n: int, dim: int, seed: int = 0) -> Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
@pytest.mark.parametrize("dim", [1, 3])
def test_round_trip_and_inverse_logdet(method: str, dim: int) -> None:
    flow = ContinuousFlow(_field(dim), method=method, n_steps=32)
    z = _points(64, dim)
    with torch.no_grad():
        x, logdet = flow(z)
        z_back, inv_logdet = flow.inverse(x)
    assert (x - z).abs().max() > 0.1  # the map is far from the identity
    torch.testing.assert_close(z_back, z, atol=1e-6, rtol=0.0)
    torch.testing.assert_close(inv_logdet, -logdet, atol=1e-6, rtol=0.0)
    torch.testing.assert_close(flow.push(z), x, atol=1e-6, rtol=0.0)


@pytest.mark.parametrize("dim", [2, 4])
def test_exact_logdet_matches_autograd_jacobian(dim: int) -> None:
    flow = ContinuousFlow(_field(dim, seed=dim), n_steps=32)
    z = _points(4, dim, seed=3)
    with torch.no_grad():
        _, logdet = flow(z)
    for i in range(z.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: flow.push(v[None])[0], z[i])
        assert float(torch.linalg.slogdet(jac).logabsdet) == pytest.approx(
            float(logdet[i]), abs=1e-6
        )
    assert float(logdet.abs().max()) > 0.05


def test_divergences_match_the_jacobian_trace() -> None:
    field = _field(3)
    x = _points(5, 3).requires_grad_(True)
    t = torch.tensor(0.4, dtype=F64)
    v = field(x, t)
    exact = exact_divergence(v, x, create_graph=True).detach()
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda y: field(y[None], t)[0], x[i].detach())
        assert float(exact[i]) == pytest.approx(float(jac.trace()), abs=1e-12)
    basis = torch.eye(3, dtype=F64)[:, None, :].expand(3, 5, 3)
    torch.testing.assert_close(hutchinson_divergence(v, x, basis, False).detach() * 3, exact)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_logdet_is_unbiased(probe: str) -> None:
    """ℓ̂ with a probe held along the path is unbiased for ℓ: mean over 4000 probes."""
    dim, n = 3, 4000
    flow = ContinuousFlow(_field(dim, seed=2), n_steps=8)
    z0 = _points(1, dim, seed=5)
    with torch.no_grad():
        _, exact = flow(z0)
        estimator = flow.with_options(hutchinson=True, probe=probe)
        _, estimates = estimator.integrate(
            z0.expand(n, dim), trace="hutchinson", generator=torch.Generator().manual_seed(7)
        )
    se = float(estimates.std()) / math.sqrt(n)
    assert float(estimates.std()) > 0.01  # a genuinely noisy estimator
    assert abs(float(estimates.mean()) - float(exact[0])) < 4 * se


def test_counter_charges_d_backward_passes_for_exact_and_one_for_hutchinson() -> None:
    dim, steps = 5, 4
    flow = ContinuousFlow(_field(dim), n_steps=steps)
    z = _points(10, dim)
    with torch.no_grad():
        flow(z)
        assert flow.counter.field_evals == 4 * steps  # RK4: four stages per step
        assert flow.counter.backward_passes == 4 * steps * dim
        before = flow.counter.snapshot()
        flow.with_options(hutchinson=True)(z)
        spent = flow.counter.since(before)
        assert (spent.field_evals, spent.backward_passes) == (4 * steps, 4 * steps)
        before = flow.counter.snapshot()
        flow.push(z)
        assert flow.counter.since(before).backward_passes == 0


def test_segments_compose_to_the_whole_flow() -> None:
    flow = ContinuousFlow(_field(2), n_steps=12)
    z = _points(20, 2)
    with torch.no_grad():
        x, logdet = flow(z)
        y, total = z, torch.zeros(20, dtype=F64)
        for piece in flow.segments(3):
            y, ld = piece(y)
            total = total + ld
    torch.testing.assert_close(y, x, atol=1e-12, rtol=0.0)
    torch.testing.assert_close(total, logdet, atol=1e-12, rtol=0.0)


@pytest.mark.parametrize("hutchinson", [False, True])
def test_logdet_gradient_matches_finite_differences(hutchinson: bool) -> None:
    """Gradients flow through the solver and the trace (create_graph) to the field."""
    flow = ContinuousFlow(_field(2), n_steps=8, hutchinson=hutchinson, seed=3)
    z = _points(6, 2)
    weight = flow.field.net[0].weight

    def objective() -> Tensor:
        flow.generator.manual_seed(3)
        x, logdet = flow(z)
        return (logdet + x.square().sum(1)).mean()

    (grad,) = torch.autograd.grad(objective(), weight)
    h = 1e-6
    with torch.no_grad():
        weight[0, 0] += h
        up = objective()
        weight[0, 0] -= 2 * h
        down = objective()
        weight[0, 0] += h
    assert float(grad[0, 0]) == pytest.approx(float(up - down) / (2 * h), rel=1e-5, abs=1e-8)


def test_flow_matching_transports_a_shifted_gaussian() -> None:
    """Trained briefly by flow matching, the CNF maps N(0, I) near N(μ, I) (coarse check)."""
    field = VectorField(2, hidden=32, seed=0)
    mu = torch.tensor([2.0, -1.0], dtype=F64)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(field.parameters(), lr=1e-2)
    for _ in range(300):
        z = torch.randn(256, 2, generator=g, dtype=F64)
        x = mu + torch.randn(256, 2, generator=g, dtype=F64)
        loss = flow_matching_loss(field, z, x, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    flow = ContinuousFlow(field, n_steps=16)
    with torch.no_grad():
        z = _points(2000, 2)
        x, logdet = flow(z)
    torch.testing.assert_close(x.mean(0), mu, atol=0.2, rtol=0.0)
    torch.testing.assert_close(x.std(0), torch.ones(2, dtype=F64), atol=0.15, rtol=0.0)
    assert float(logdet.abs().mean()) < 0.2


def test_hutchinson_weights_are_biased_up() -> None:
    """exp(ℓ̂) — what an importance weight uses — overestimates exp(ℓ) (Jensen): the
    mean of exp(ℓ̂ − ℓ) over 4000 probes exceeds 1 by more than 4 standard errors."""
    dim, n = 4, 4000
    flow = ContinuousFlow(_field(dim, seed=2, scale=1.5), n_steps=8)
    z0 = _points(1, dim, seed=5)
    with torch.no_grad():
        _, exact = flow(z0)
        _, estimates = flow.integrate(
            z0.expand(n, dim), trace="hutchinson", generator=torch.Generator().manual_seed(8)
        )
    ratio = (estimates - exact).exp()
    assert float(ratio.mean()) - 1.0 > 4 * float(ratio.std()) / math.sqrt(n)
