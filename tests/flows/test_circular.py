"""Circular splines and mixed couplings: circle properties, round trips, log-dets vs autograd."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch.autograd.functional import jacobian

from boltzgen.flows.base import Flow, Sequential
from boltzgen.flows.circular import (
    CircularSplineCoupling,
    MixedCoupling,
    MixedPrior,
    circular_rq_spline,
    make_internal_flow,
    n_circular_params,
    wrap,
)
from boltzgen.flows.coupling import alternating_masks
from boltzgen.flows.internal import FixedFrameInternalCoordinates, StandardizeInternal, ZMatrix
from boltzgen.systems import load_system

F64 = torch.float64
PI = math.pi


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def angles(*shape: int, seed: int) -> torch.Tensor:
    return (2 * torch.rand(*shape, generator=gen(seed), dtype=F64) - 1) * PI


def spline_params(*shape: int, n_bins: int = 6, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, n_circular_params(n_bins), generator=gen(seed), dtype=F64)


def slope(x: torch.Tensor, params: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """dy/dx elementwise by autograd (the spline is elementwise, so the Jacobian is diagonal)."""
    x = x.clone().requires_grad_(True)
    y, _ = circular_rq_spline(x, params, inverse)
    return torch.autograd.grad(y.sum(), x)[0]


# --------------------------------------------------------------------------- the spline


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_endpoints_map_to_themselves(inverse: bool, seed: int) -> None:
    x = torch.tensor([[-PI, PI]], dtype=F64).expand(20, 2)
    y, _ = circular_rq_spline(x, spline_params(20, 2, seed=seed, scale=2.0), inverse)
    torch.testing.assert_close(y, x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slope_is_continuous_across_pi(inverse: bool, seed: int) -> None:
    """g′(−π) = g′(π) for random parameters: the pushed density has no jump at ±π."""
    params = spline_params(20, 1, seed=seed, scale=2.0).expand(20, 2, -1)
    x = torch.tensor([[-PI, PI]], dtype=F64).expand(20, 2)
    d = slope(x, params, inverse)
    assert (d[:, 0] - 1).abs().max() > 0.1, "random parameters should not give unit slopes"
    torch.testing.assert_close(d[:, 0], d[:, 1], atol=1e-10, rtol=1e-10)


def test_spline_is_increasing_onto_the_circle() -> None:
    x = torch.linspace(-PI, PI, 2001, dtype=F64)[None].expand(5, -1)
    y, _ = circular_rq_spline(
        x, spline_params(5, 2001, seed=3, scale=2.0)[:, :1].expand(5, 2001, -1)
    )
    assert bool((y.diff(dim=1) > 0).all())
    assert float(y.min()) == -PI and float(y.max()) == PI


@pytest.mark.parametrize("inverse", [False, True])
def test_float32_spline_stays_on_the_circle_at_its_ends(inverse: bool) -> None:
    """Rounding must not push an angle past ±π (the next circular layer would refuse it)."""
    g = torch.Generator().manual_seed(3)
    pi32 = torch.tensor(math.pi, dtype=torch.float32)
    x = torch.cat([pi32.repeat(4000), -pi32.repeat(4000)])[:, None]
    params = torch.randn(x.shape[0], 1, 24, generator=g, dtype=torch.float32)
    y, _ = circular_rq_spline(x, params, inverse)
    assert y.dtype == torch.float32 and bool((y.abs() <= pi32).all())
    assert bool(torch.isclose(y.abs(), pi32).all())


def knots_in_float32(params: torch.Tensor, ulps: int = 3) -> torch.Tensor:
    """Each interior knot height of each spline, moved by −ulps … ulps float32 steps, and the
    ends ±π as float32 (which lie outside float64's [−π, π]): ``[B, 1]``."""
    k = params.shape[-1] // 3
    heights = 1e-3 + (1 - 1e-3 * k) * torch.softmax(params[..., k : 2 * k].double(), dim=-1)
    knots = (2 * PI * heights.cumsum(dim=-1)[..., :-1] - PI).float()
    moved = [knots]
    for direction in (-PI, PI):
        step = knots
        for _ in range(ulps):
            step = torch.nextafter(step, torch.tensor(direction, dtype=torch.float32))
            moved.append(step)
    ends = torch.tensor([-PI, PI], dtype=torch.float32).expand(*knots.shape[:-1], 2)
    return torch.cat([*moved, ends], dim=-1).reshape(-1, 1)


def test_float32_inverse_at_the_knots_is_exact_to_rounding() -> None:
    """At a knot next to a steep or flat bin, float32 rounds nflows' b² − 4ac below zero.

    The inverse must still return the root (recomputed in float64, returned as float32): the
    float64 inverse of the same inputs to float32 rounding, and a round trip back to the knot.
    """
    g = torch.Generator().manual_seed(11)
    base = 3.0 * torch.randn(512, 1, n_circular_params(8), generator=g)
    y = knots_in_float32(base)
    params = base.repeat_interleave(y.shape[0] // base.shape[0], dim=0)
    x, ld = circular_rq_spline(y, params, inverse=True)
    x64, ld64 = circular_rq_spline(y.double().clamp(-PI, PI), params.double(), inverse=True)
    assert x.dtype == torch.float32 and ld.dtype == torch.float32
    torch.testing.assert_close(x.double(), x64, atol=1e-6, rtol=0)
    torch.testing.assert_close(ld.double(), ld64, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(circular_rq_spline(x, params)[0], y, atol=2e-5, rtol=0)


@pytest.mark.parametrize("n_bins", [1, 4, 9])
def test_spline_round_trip_and_logdet(n_bins: int) -> None:
    x = angles(30, 3, seed=4)
    params = spline_params(30, 3, n_bins=n_bins, seed=5, scale=1.5)
    y, ld = circular_rq_spline(x, params)
    x_back, ld_back = circular_rq_spline(y, params, inverse=True)
    torch.testing.assert_close(x_back, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld_back, -ld, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, slope(x, params).log().sum(dim=1), atol=1e-12, rtol=0)
    torch.testing.assert_close(ld_back, slope(y, params, True).log().sum(dim=1), atol=1e-12, rtol=0)


def test_spline_zero_params_are_identity() -> None:
    x = angles(10, 4, seed=6)
    y, ld = circular_rq_spline(x, torch.zeros(10, 4, n_circular_params(7), dtype=F64))
    torch.testing.assert_close(y, x, atol=1e-14, rtol=0)
    torch.testing.assert_close(ld, torch.zeros(10, dtype=F64), atol=1e-14, rtol=0)


def test_spline_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="outside"):
        circular_rq_spline(torch.full((2, 1), 3.2, dtype=F64), torch.zeros(2, 1, 12, dtype=F64))
    with pytest.raises(ValueError, match="3K"):
        circular_rq_spline(torch.zeros(2, 1, dtype=F64), torch.zeros(2, 1, 11, dtype=F64))


@pytest.mark.parametrize("inverse", [False, True])
def test_spline_gives_non_finite_rows_zero_density_and_leaves_the_others(inverse: bool) -> None:
    x = angles(4, 3, seed=8)
    params = torch.randn(4, 3, 12, generator=torch.Generator().manual_seed(9), dtype=F64)
    x[1, 0], x[2, 2] = math.nan, -math.inf
    params[3, 1, 2] = math.nan
    y, ld = circular_rq_spline(x, params, inverse)
    y0, ld0 = circular_rq_spline(x[:1], params[:1], inverse)
    assert ld[1:].tolist() == [-math.inf] * 3
    torch.testing.assert_close(ld[:1], ld0)
    torch.testing.assert_close(y[:1], y0)


def test_float32_wrap_never_leaves_the_circle() -> None:
    """a − 2πk rounds one ulp past ±π for some float32 a; the clamp keeps it inside, slope 1.

    Far from the circle (|a| ~ 10⁸, where a diverging HMC trajectory in latent space goes) the
    rounding error of a − 2πk is several units, so the clamp itself must be exact.
    """
    g = torch.Generator().manual_seed(0)
    near = (torch.rand(1_000_000, generator=g) * 2 - 1) * 40
    far = (torch.rand(100_000, generator=g) * 2 - 1) * 10.0 ** torch.randint(3, 12, (100_000,))
    a = torch.cat([near, far, torch.tensor([16.0, -16384.0, 1e11])]).requires_grad_(True)
    w = wrap(a)
    assert bool((w.abs() <= torch.tensor(PI, dtype=torch.float32)).all())
    (grad,) = torch.autograd.grad(w.sum(), a)
    assert bool((grad == 1).all())


def test_wrap() -> None:
    a = torch.tensor([-PI, PI, 0.5, 3 * PI, -3 * PI + 0.1, 7.0], dtype=F64)
    expected = torch.tensor([PI, PI, 0.5, PI, -PI + 0.1, 7.0 - 2 * PI], dtype=F64)
    torch.testing.assert_close(wrap(a), expected, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- coupling layers

TORSIONS_5 = torch.tensor([True, False, True, True, False])


def _randomize(flow: Flow, seed: int, scale: float = 0.3) -> Flow:
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen(seed), dtype=p.dtype))
    return flow


def _mixed(mask: list[bool], shift: bool = True) -> Flow:
    return MixedCoupling(
        5, torch.tensor(mask), TORSIONS_5, hidden=16, n_bins=5, circular_shift=shift
    )


LAYERS: dict[str, tuple[Callable[[], Flow], torch.Tensor]] = {
    "mixed": (lambda: _mixed([True, True, False, False, True]), TORSIONS_5),
    "mixed_no_shift": (lambda: _mixed([True, False, True, False, True], False), TORSIONS_5),
    "mixed_only_torsions": (lambda: _mixed([True, False, True, False, False]), TORSIONS_5),
    "mixed_no_torsions": (lambda: _mixed([False, True, False, False, True]), TORSIONS_5),
    "circular": (
        lambda: CircularSplineCoupling(4, torch.tensor([True, False, False, True]), hidden=16),
        torch.ones(4, dtype=torch.bool),
    ),
    "make_internal_flow": (
        lambda: make_internal_flow(5, TORSIONS_5, n_layers=4, hidden=8, n_bins=4, tail_bound=3.0),
        TORSIONS_5,
    ),
}


def inputs(torsion_mask: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Torsions uniform on (−π, π), the rest 2·N(0, 1) (some beyond the tail bound 3)."""
    normal = 2 * torch.randn(n, torsion_mask.numel(), generator=gen(seed), dtype=F64)
    return torch.where(torsion_mask, angles(n, torsion_mask.numel(), seed=seed + 1), normal)


def jacobian_logdets(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    dets = [torch.linalg.slogdet(jacobian(lambda v: fn(v[None])[0], xi)).logabsdet for xi in x]
    return torch.stack(dets)


@pytest.mark.parametrize("name", LAYERS)
def test_coupling_round_trip(name: str) -> None:
    build, torsions = LAYERS[name]
    flow = _randomize(build(), seed=8)
    z = inputs(torsions, 64, seed=9)
    x, ld_fwd = flow(z)
    z_back, ld_inv = flow.inverse(x)
    assert x.shape == z.shape and ld_fwd.shape == (64,)
    assert (x - z).abs().max() > 1e-2, "randomised layer should not be the identity"
    assert bool((x[:, torsions].abs() <= PI).all()), "torsions must stay on (−π, π]"
    diff = torch.where(torsions, wrap(z_back - z), z_back - z)
    torch.testing.assert_close(diff, torch.zeros_like(diff), atol=1e-9, rtol=0)
    torch.testing.assert_close(ld_inv, -ld_fwd, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", LAYERS)
def test_coupling_logdet_matches_autograd(name: str) -> None:
    build, torsions = LAYERS[name]
    flow = _randomize(build(), seed=10)
    z = inputs(torsions, 4, seed=11)
    x, ld_fwd = flow(z)
    _, ld_inv = flow.inverse(x)
    torch.testing.assert_close(ld_fwd, jacobian_logdets(lambda v: flow(v)[0], z), atol=1e-8, rtol=0)
    expected = jacobian_logdets(lambda v: flow.inverse(v)[0], x.detach())
    torch.testing.assert_close(ld_inv, expected, atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", LAYERS)
def test_coupling_starts_as_identity(name: str) -> None:
    build, torsions = LAYERS[name]
    z = inputs(torsions, 32, seed=12)
    x, ld = build()(z)
    torch.testing.assert_close(x, z, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, torch.zeros(32, dtype=F64), atol=1e-12, rtol=0)


def test_conditioner_is_periodic_in_torsions() -> None:
    """Conditioning torsions enter as (cos, sin): φ and φ ± 2π give the same transform."""
    flow = _randomize(_mixed([False, True, False, True, True]), seed=13)
    z = inputs(TORSIONS_5, 16, seed=14)
    z_shifted = z + 2 * PI * torch.tensor([1.0, 0, 0, 0, 0], dtype=F64)
    x, ld = flow(z)
    x_shifted, ld_shifted = flow(z_shifted)
    torch.testing.assert_close(x[:, 1:], x_shifted[:, 1:], atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, ld_shifted, atol=1e-12, rtol=0)


def test_mixed_coupling_rejects_bad_masks() -> None:
    with pytest.raises(ValueError, match="torsion_mask"):
        MixedCoupling(3, torch.tensor([True, False, True]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="both True"):
        MixedCoupling(2, torch.tensor([True, True]), torch.tensor([True, False]))


# --------------------------------------------------------------------------- prior


def test_mixed_prior_samples_and_density() -> None:
    prior = MixedPrior(TORSIONS_5)
    z = prior.sample(20000, gen(15))
    assert z.shape == (20000, 5) and bool((z[:, TORSIONS_5].abs() <= PI).all())
    assert abs(float(z[:, TORSIONS_5].var(0).mean()) - PI**2 / 3) < 0.05  # uniform variance
    assert abs(float(z[:, ~TORSIONS_5].var(0).mean()) - 1.0) < 0.05
    expected = -3 * math.log(2 * PI) - 0.5 * (z[:, ~TORSIONS_5] ** 2).sum(1) - math.log(2 * PI)
    torch.testing.assert_close(prior.log_prob(z), expected, atol=1e-12, rtol=0)
    outside = z[:1].clone()
    outside[0, 0] = 3.5
    assert prior.log_prob(outside).item() == -math.inf


# --------------------------------------------------------------------------- a Boltzmann generator


def test_alanine_dipeptide_generator_round_trip() -> None:
    """prior → mixed couplings → standardisation → internal coordinates → Cartesian (nm)."""
    system = load_system("alanine_dipeptide_implicit")
    ic = FixedFrameInternalCoordinates(ZMatrix.from_topology(system.topology))
    x = system.initial_positions + 0.005 * torch.randn(64, 22, 3, generator=gen(16), dtype=F64)
    q, _ = ic.inverse(x)
    mask = ic.layout.torsion_mask
    assert ic.dim == 60 and int(mask.sum()) == 19
    body = _randomize(make_internal_flow(60, mask, n_layers=4, hidden=32), seed=17, scale=0.1)
    flow = Sequential(body, StandardizeInternal.from_data(q, mask), ic)
    prior = MixedPrior(mask)
    z, ld_inv = flow.inverse(x)
    assert bool(prior.log_prob(z).isfinite().all())
    x_back, ld_fwd = flow(z)
    torch.testing.assert_close(ld_fwd, -ld_inv, atol=1e-9, rtol=0)
    d = torch.linalg.vector_norm(x[:, :, None] - x[:, None], dim=-1)
    d_back = torch.linalg.vector_norm(x_back[:, :, None] - x_back[:, None], dim=-1)
    torch.testing.assert_close(d_back, d, atol=1e-9, rtol=0)
    x_new, ld_new = flow(prior.sample(256, gen(18)))
    assert x_new.shape == (256, 22, 3) and bool(ld_new.isfinite().all())


def test_factory_masks_are_alternating_and_seeded() -> None:
    flow = make_internal_flow(6, torch.tensor([1, 1, 0, 0, 1, 0]), n_layers=4, seed=3)
    for layer, mask in zip(flow.layers, alternating_masks(6, 4), strict=True):
        assert torch.equal(layer.transformed, mask.nonzero()[:, 0])
    again = make_internal_flow(6, torch.tensor([1, 1, 0, 0, 1, 0]), n_layers=4, seed=3)
    for a, b in zip(flow.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
