"""Temperature-steerable flows: q_T ∝ q_T0^{T0/T} exactly, volume-preserving layers.
Statistical checks compare many entries at once and allow 6 standard errors each."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from torch.autograd.functional import jacobian

from boltzgen.flows import AffineCoupling, AffineFlow, ElementwiseAffine, Flow, alternating_masks
from boltzgen.flows.steerable import (
    TemperatureSteerableFlow,
    VolumePreservingCoupling,
    make_steerable_flow,
)

F64 = torch.float64
T0 = 300.0
TEMPERATURES = [150.0, 450.0, 1200.0]


def _randomize(module: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """Perturb every parameter by N(0, scale²), so no layer is the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _trained_like(dim: int, seed: int = 0) -> TemperatureSteerableFlow:
    return _randomize(make_steerable_flow(dim, T0, n_layers=4, hidden=16), seed)


def _inputs(dim: int, n: int = 64, seed: int = 7) -> Tensor:
    return 2.0 * torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _jacobian_logdets(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """log|det ∂fn/∂x| per sample, from the full autograd Jacobian."""
    dets = [torch.linalg.slogdet(jacobian(lambda v: fn(v[None])[0], xi)).logabsdet for xi in x]
    return torch.stack(dets)


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("dim", [2, 5, 16])
def test_tempered_density_is_a_power_of_the_reference_density(dim: int, temperature: float) -> None:
    tsf = _trained_like(dim, seed=dim)
    x = _inputs(dim)
    beta = T0 / temperature
    diff = (tsf.log_prob(x, temperature) - beta * tsf.log_prob(x, T0)).detach()
    assert float(diff.max() - diff.min()) < 1e-6, "log q_T − (T0/T)·log q_T0 must be constant"
    log_c = -tsf.flow.layers[-1].log_scale.detach().sum()  # ElementwiseAffine: the volume change
    half_d = 0.5 * dim
    expected = (1 - beta) * (log_c - half_d * math.log(2 * math.pi)) - half_d * math.log(1 / beta)
    torch.testing.assert_close(diff, expected.expand(x.shape[0]), atol=1e-6, rtol=0)


def test_the_check_detects_a_non_volume_preserving_flow() -> None:
    """The same difference varies with x once a layer's log-det depends on x."""
    dim = 4
    flow = _randomize(AffineCoupling(dim, alternating_masks(dim, 1)[0], hidden=16), seed=1)
    steerable = _trained_like(dim)
    x = _inputs(dim)
    z, logdet = flow.inverse(x)
    log_q = {t: steerable.prior(t).log_prob(z) + logdet for t in (T0, 600.0)}
    diff = (log_q[600.0] - 0.5 * log_q[T0]).detach()
    assert float(diff.max() - diff.min()) > 1e-2


@pytest.mark.parametrize("dim", [2, 5, 16])
def test_volume_preserving_coupling_has_zero_logdet(dim: int) -> None:
    mask = alternating_masks(dim, 3)[2]
    layer = _randomize(VolumePreservingCoupling(dim, mask, hidden=16), seed=dim)
    z = _inputs(dim, n=4)
    x, ld_fwd = layer(z)
    z_back, ld_inv = layer.inverse(x)
    assert (x - z).abs().max() > 1e-2
    zeros = torch.zeros(z.shape[0], dtype=F64)
    assert torch.equal(ld_fwd, zeros) and torch.equal(ld_inv, zeros)
    torch.testing.assert_close(
        _jacobian_logdets(lambda v: layer(v)[0], z), zeros, atol=1e-10, rtol=0
    )
    torch.testing.assert_close(z_back, z, atol=1e-10, rtol=0)


@pytest.mark.parametrize("dim", [2, 5])
def test_steerable_flow_round_trip_with_constant_logdet(dim: int) -> None:
    tsf = _trained_like(dim, seed=dim + 10)
    z = _inputs(dim, n=6)
    x, ld_fwd = tsf.flow(z)
    z_back, ld_inv = tsf.flow.inverse(x)
    torch.testing.assert_close(z_back, z, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld_inv, -ld_fwd, atol=1e-12, rtol=0)
    expected = _jacobian_logdets(lambda v: tsf.flow(v)[0], z)
    torch.testing.assert_close(ld_fwd, expected, atol=1e-8, rtol=0)
    assert float(expected.max() - expected.min()) < 1e-8, "log-det must not depend on z"


@pytest.mark.parametrize("temperature", [T0, *TEMPERATURES])
def test_identity_flow_samples_have_variance_t_over_t0(temperature: float) -> None:
    dim, n = 3, 20_000
    tsf = make_steerable_flow(dim, T0, n_layers=2, hidden=8)
    x = tsf.sample(n, temperature, torch.Generator().manual_seed(int(temperature)))
    ratio = temperature / T0
    stderr = ratio * math.sqrt(2.0 / (n - 1))  # of a Gaussian sample variance
    assert (x.var(dim=0) - ratio).abs().max() < 6 * stderr
    assert x.mean(dim=0).abs().max() < 6 * math.sqrt(ratio / n)


@pytest.mark.parametrize("temperature", [T0, *TEMPERATURES])
def test_exact_gaussian_flow_stays_exact_at_every_temperature(temperature: float) -> None:
    """x = Lz + μ is exact for N(μ, Σ) at T0, so q_T = N(μ, (T/T0)·Σ) = p_T at every T."""
    mean = torch.tensor([1.0, -0.5, 2.0], dtype=F64)
    a = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 2.0]], dtype=F64)
    tsf = TemperatureSteerableFlow(3, [AffineFlow.from_gaussian(mean, a)], T0)
    x, log_q = tsf.sample_with_log_prob(50, temperature, torch.Generator().manual_seed(0))
    target = torch.distributions.MultivariateNormal(mean, a * temperature / T0)
    torch.testing.assert_close(log_q, target.log_prob(x), atol=1e-10, rtol=0)
    torch.testing.assert_close(tsf.log_prob(x, temperature), log_q, atol=1e-10, rtol=0)


def test_layers_with_input_dependent_logdets_are_rejected() -> None:
    coupling = AffineCoupling(4, alternating_masks(4, 1)[0])
    with pytest.raises(ValueError, match="AffineCoupling"):
        TemperatureSteerableFlow(4, [ElementwiseAffine(4), coupling], T0)


@pytest.mark.parametrize("bad", [0.0, -10.0, math.inf, math.nan])
def test_temperatures_must_be_finite_and_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="finite positive"):
        make_steerable_flow(2, T0, n_layers=2, hidden=4).sample(3, bad)
    with pytest.raises(ValueError, match="reference temperature"):
        TemperatureSteerableFlow(2, [ElementwiseAffine(2)], bad)


def test_prior_follows_the_module_dtype() -> None:
    tsf = make_steerable_flow(2, T0, n_layers=2, hidden=4).to(torch.float32)
    flow: Flow = tsf.flow
    assert tsf.prior(600.0).sample(4).dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in flow.parameters())
