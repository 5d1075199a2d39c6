"""Every flow layer: shapes, round trip, log-det against the autograd Jacobian."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.autograd.functional import jacobian

from boltzgen.flows import (
    AffineCoupling,
    AffineFlow,
    ElementwiseAffine,
    Flow,
    RQSplineCoupling,
    Sequential,
    alternating_masks,
    make_spline_flow,
)
from boltzgen.flows.splines import n_spline_params, rq_spline_forward, rq_spline_inverse

F64 = torch.float64
DIMS = [2, 5, 32]


def _randomize(flow: Flow, seed: int, scale: float = 0.3) -> Flow:
    """Perturb every parameter by N(0, scale²) so that no layer is the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


def _spline(dim: int) -> Flow:
    return RQSplineCoupling(dim, alternating_masks(dim, 1)[0], hidden=16, n_bins=6, tail_bound=3.0)


def _spline_halves(dim: int) -> Flow:
    return RQSplineCoupling(dim, alternating_masks(dim, 3)[2], hidden=16, n_bins=6, tail_bound=3.0)


def _affine_coupling(dim: int) -> Flow:
    return AffineCoupling(dim, alternating_masks(dim, 2)[1], hidden=16)


def _affine_lower(dim: int) -> Flow:
    g = torch.Generator().manual_seed(dim)
    m = torch.randn(dim, dim, generator=g, dtype=F64).tril(-1) + torch.eye(dim, dtype=F64)
    return AffineFlow(torch.randn(dim, generator=g, dtype=F64), m)


def _affine_general(dim: int) -> Flow:
    g = torch.Generator().manual_seed(dim)
    m = torch.randn(dim, dim, generator=g, dtype=F64) / dim**0.5 + 2 * torch.eye(dim, dtype=F64)
    return AffineFlow(torch.randn(dim, generator=g, dtype=F64), m)


def _sequential(dim: int) -> Flow:
    masks = alternating_masks(dim, 2)
    return Sequential(
        RQSplineCoupling(dim, masks[0], hidden=8, n_bins=4, tail_bound=3.0),
        AffineCoupling(dim, masks[1], hidden=8),
        _affine_general(dim),
        ElementwiseAffine(dim),
    )


def _factory(dim: int) -> Flow:
    return make_spline_flow(dim, n_layers=4, hidden=8, n_bins=5, tail_bound=3.0)


LAYERS: dict[str, Callable[[int], Flow]] = {
    "rq_spline": _spline,
    "rq_spline_halves": _spline_halves,
    "affine_coupling": _affine_coupling,
    "affine_flow_lower": _affine_lower,
    "affine_flow_general": _affine_general,
    "elementwise_affine": ElementwiseAffine,
    "sequential": _sequential,
    "make_spline_flow": _factory,
}


def _inputs(dim: int, n: int = 64) -> torch.Tensor:
    """Standard-normal draws scaled by 2, so some fall outside the spline bound of 3."""
    return 2.0 * torch.randn(n, dim, generator=torch.Generator().manual_seed(7), dtype=F64)


def _jacobian_logdets(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """log|det ∂fn/∂x| per sample, from the full autograd Jacobian."""
    dets = [torch.linalg.slogdet(jacobian(lambda v: fn(v[None])[0], xi)).logabsdet for xi in x]
    return torch.stack(dets)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("name", LAYERS)
def test_round_trip(name: str, dim: int) -> None:
    flow = _randomize(LAYERS[name](dim), seed=dim)
    z = _inputs(dim)
    x, ld_fwd = flow(z)
    z_back, ld_inv = flow.inverse(x)
    assert x.shape == z.shape and ld_fwd.shape == (z.shape[0],)
    assert (x - z).abs().max() > 1e-2, "randomised layer should not be the identity"
    torch.testing.assert_close(z_back, z, atol=1e-6, rtol=0)
    torch.testing.assert_close(ld_inv, -ld_fwd, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("name", LAYERS)
def test_logdet_matches_autograd_jacobian(name: str, dim: int) -> None:
    flow = _randomize(LAYERS[name](dim), seed=dim + 1)
    z = _inputs(dim, n=4)
    x, ld_fwd = flow(z)
    _, ld_inv = flow.inverse(x)
    torch.testing.assert_close(
        ld_fwd, _jacobian_logdets(lambda v: flow(v)[0], z), atol=1e-6, rtol=0
    )
    expected_inv = _jacobian_logdets(lambda v: flow.inverse(v)[0], x.detach())
    torch.testing.assert_close(ld_inv, expected_inv, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["rq_spline", "affine_coupling", "make_spline_flow"])
def test_couplings_start_as_identity(name: str) -> None:
    z = _inputs(5)
    x, logdet = LAYERS[name](5)(z)
    torch.testing.assert_close(x, z, atol=1e-12, rtol=0)
    torch.testing.assert_close(logdet, torch.zeros(z.shape[0], dtype=F64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("linear_tails", [True, False])
def test_spline_zero_params_are_identity_and_round_trip(linear_tails: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 3, generator=g, dtype=F64) * 3.8 - 1.9
    p = n_spline_params(7, linear_tails)
    assert p == (20 if linear_tails else 22)
    y0, ld0 = rq_spline_forward(x, torch.zeros(50, 3, p, dtype=F64), 2.0, linear_tails)
    torch.testing.assert_close(y0, x, atol=1e-14, rtol=0)
    torch.testing.assert_close(ld0, torch.zeros(50, dtype=F64), atol=1e-14, rtol=0)
    params = torch.randn(50, 3, p, generator=g, dtype=F64)
    y, ld = rq_spline_forward(x, params, 2.0, linear_tails)
    x_back, ld_back = rq_spline_inverse(y, params, 2.0, linear_tails)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld_back, -ld, atol=1e-10, rtol=0)


def test_spline_rejects_bad_shapes_and_domain() -> None:
    x = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ValueError, match="3K-1"):
        rq_spline_forward(x, torch.zeros(4, 2, 9, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="outside"):
        rq_spline_forward(x + 2.0, torch.zeros(4, 2, 10, dtype=F64), 1.0, linear_tails=False)


def test_alternating_masks_cover_every_coordinate() -> None:
    for dim in DIMS:
        masks = alternating_masks(dim, 4)
        for a, b in zip(masks[0::2], masks[1::2], strict=True):
            assert bool((a ^ b).all())
    with pytest.raises(ValueError, match="at least 2"):
        alternating_masks(1, 2)


def test_coupling_rejects_bad_mask_and_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        RQSplineCoupling(3, torch.tensor([True, False]))
    with pytest.raises(ValueError, match="both True"):
        AffineCoupling(2, torch.tensor([True, True]))
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        _spline(4)(torch.zeros(3, 5, dtype=F64))


def test_affine_flow_rejects_singular_matrix() -> None:
    with pytest.raises(ValueError, match="invertible"):
        AffineFlow(torch.zeros(2, dtype=F64), torch.ones(2, 2, dtype=F64))


def test_seeded_construction_is_reproducible() -> None:
    a, b = make_spline_flow(4, seed=3), make_spline_flow(4, seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
