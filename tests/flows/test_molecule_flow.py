"""The alanine-dipeptide flow of the FAB recipe: bounded splines on ±5 widths, circular
splines on the soft torsions, standardisation around the minimum, identity start, and
L-chirality: round trips, log-dets against autograd, the bond bound, the base density."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from boltzgen.energies.restricted import RestrictedEnergy
from boltzgen.flows.circular import MixedCoupling, MixedPrior
from boltzgen.flows.internal import (
    ChiralCentres,
    FixedFrameInternalCoordinates,
    StandardizeInternal,
    ZMatrix,
    soft_torsion_mask,
)
from boltzgen.flows.splines import bounded_rq_spline
from boltzgen.runner.methods.flows import FlowParams, build_generator
from boltzgen.systems import load_system

F64 = torch.float64
PARAMS = FlowParams(
    kind="internal",
    n_layers=4,
    hidden=16,
    standardize="minimum",
    bounded=True,
    chirality="L",
)


@pytest.fixture(scope="module")
def system():
    return load_system("alanine_dipeptide_implicit")


@pytest.fixture(scope="module")
def model(system):
    """The recipe's generator with randomised couplings (a trained-looking, non-identity flow)."""
    bg = build_generator(system, PARAMS, seed=0)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in bg.flow.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return bg


def _standardize(bg) -> StandardizeInternal:
    return next(m for m in bg.flow.modules() if isinstance(m, StandardizeInternal))


def test_soft_torsions_are_the_rotors(system):
    zm = ZMatrix.from_topology(system.topology)
    soft = soft_torsion_mask(zm, system.topology)
    rotors = {
        frozenset((int(b), int(a)))
        for (_, b, a, _), s in zip(zm.torsion_atoms, soft, strict=True)
        if s
    }
    # φ (N–CA), ψ (CA–C), both ω and the three methyl rotors, each bond once
    assert int(soft.sum()) == 7 and len(rotors) == 7


def test_round_trip_and_logdet(model):
    g = torch.Generator().manual_seed(0)
    z = model.prior.sample(64, g)
    x, logdet = model.flow(z)
    z_back, logdet_inv = model.flow.inverse(x)
    torch.testing.assert_close(z_back, z, atol=1e-7, rtol=0)
    torch.testing.assert_close(logdet_inv, -logdet, atol=1e-7, rtol=0)


def test_logdet_of_the_couplings_matches_autograd(model):
    """Couplings and standardisation (60 → 60): log|det J| against the autograd Jacobian."""
    layers = list(model.flow.layers)[:-1]
    z = model.prior.sample(3, torch.Generator().manual_seed(1))

    def f(v: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            v, _ = layer(v)
        return v

    out = z
    total = torch.zeros(3, dtype=F64)
    for layer in layers:
        out, ld = layer(out)
        total = total + ld
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: f(v[None])[0], z[i])
        torch.testing.assert_close(total[i], torch.linalg.slogdet(jac)[1], atol=1e-8, rtol=0)


def test_no_sample_stretches_a_bond_beyond_the_bound(model, system):
    """Bonds stay within ±5 widths of the minimum: at most 1.5× (here < 1.25×) equilibrium."""
    with torch.no_grad():
        x, _ = model.flow(model.prior.sample(4000, torch.Generator().manual_seed(2)))
    bonds = torch.tensor([[a.index, b.index] for a, b in system.topology.bonds])
    length = (x[:, bonds[:, 0]] - x[:, bonds[:, 1]]).norm(dim=-1)
    x0 = system.initial_positions[None].to(F64)
    ic = FixedFrameInternalCoordinates(ZMatrix.from_topology(system.topology))
    q0 = _standardize(model).mean[: ic.layout.bond_indices.numel()]
    ratio = length / (x0[:, bonds[:, 0]] - x0[:, bonds[:, 1]]).norm(dim=-1)
    assert float(ratio.max()) < 1.5 and float(ratio.min()) > 0.5
    # the bound is exact: every internal bond lies in μ ± 5·0.005 nm
    q, _ = ic.inverse(x)
    dev = (q[:, : q0.numel()] - q0).abs()
    assert float(dev.max()) <= 5 * PARAMS.bond_nm + 1e-9


def test_identity_init_gives_the_standardised_base_density(system):
    """Untrained: log q(x) = log p_Z((q − μ)/σ) − Σ log σ + log-det of the internal map."""
    bg = build_generator(system, PARAMS, seed=3)
    z = bg.prior.sample(32, torch.Generator().manual_seed(4))
    x, _ = bg.flow(z)
    std = _standardize(bg)
    q, ld_ic = list(bg.flow.layers)[-1].inverse(x)
    torch.testing.assert_close(std.inverse(q)[0], z, atol=1e-9, rtol=0)
    expected = bg.prior.log_prob(z) - std.std.log().sum() + ld_ic
    torch.testing.assert_close(bg.log_prob(x), expected, atol=1e-8, rtol=0)


def test_a_d_sample_is_detected_and_has_zero_weight(system):
    x = system.initial_positions[None].to(F64)
    mirror = x * torch.tensor([-1.0, 1.0, 1.0], dtype=F64)
    centres = ChiralCentres.from_topology(system.topology)
    assert centres.is_l(x).tolist() == [True] and centres.is_l(mirror).tolist() == [False]
    energy = RestrictedEnergy(system.energy, centres.is_l)
    u = energy.energy(torch.cat([x, mirror]))
    assert math.isfinite(float(u[0])) and float(u[1]) == math.inf
    # the unrestricted force field cannot tell the mirror image apart
    u_plain = system.energy.energy(torch.cat([x, mirror]))
    torch.testing.assert_close(u_plain[0], u_plain[1])


def test_bounded_spline_rejects_inputs_outside():
    x = torch.tensor([[0.5, 6.0], [1.0, -2.0]], dtype=F64)
    y, ld = bounded_rq_spline(x, torch.zeros(2, 2, 25, dtype=F64), 5.0)
    assert ld[0].item() == -math.inf and ld[1].item() == 0.0
    torch.testing.assert_close(y, x)


def test_bounded_spline_rejects_rows_with_non_finite_inputs_or_parameters():
    """A diverged configuration (NaN, ±inf) or a conditioner fed one (NaN parameters)
    gets zero density in its own row and leaves the other rows as they were."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, generator=g, dtype=F64) * 8 - 4
    params = torch.randn(4, 3, 25, generator=g, dtype=F64)
    x[1, 0], x[2, 2] = math.nan, math.inf
    params[3, 1, 4] = math.nan
    for inverse in (False, True):
        y, ld = bounded_rq_spline(x, params, 5.0, inverse)
        y0, ld0 = bounded_rq_spline(x[:1], params[:1], 5.0, inverse)
        assert ld[1:].tolist() == [-math.inf] * 3
        torch.testing.assert_close(ld[:1], ld0)
        torch.testing.assert_close(y[:1], y0)
        assert bool(torch.isfinite(y[3]).all())


# A bin of the FAB flow (float32) at which nflows' inverse rounds b² − 4ac below zero
# when the input sits on the interval's upper edge (a configuration clamped there).
# fmt: off
STEEP_EDGE_BIN = [
    0.84005904, 1.09135759, 1.29393315, -0.50373757, -1.51627326, 0.35673639, -0.50258368,
    -1.14593315, -0.49095073, -0.73966873, -1.08869922, 0.36303213, 1.17735434, -0.32888702,
    0.27828830, 0.93446463, 0.0, -1.78470588, -2.68774104, -2.45578837, 0.87074387,
    -0.02587237, -0.71479928, 4.02148867, -6.00351810,
]
# fmt: on


def test_float32_bounded_inverse_at_the_edge_matches_float64():
    params = torch.tensor([[STEEP_EDGE_BIN]])
    x = torch.tensor([[5.0]])
    y, ld = bounded_rq_spline(x, params, 5.0, inverse=True)
    y64, ld64 = bounded_rq_spline(x.double(), params.double(), 5.0, inverse=True)
    assert y.dtype == ld.dtype == torch.float32
    torch.testing.assert_close(y, y64.float())
    torch.testing.assert_close(ld, ld64.float())
    back, ld_forward = bounded_rq_spline(y64, params.double(), 5.0)
    torch.testing.assert_close(back, x.double())
    torch.testing.assert_close(ld_forward, -ld64)


def test_truncated_prior_is_normalised_and_bounded():
    prior = MixedPrior(torch.tensor([False, True]), bound=1.0)
    z = prior.sample(20000, torch.Generator().manual_seed(0))
    assert float(z[:, 0].abs().max()) <= 1.0
    grid = torch.linspace(-1, 1, 20001, dtype=F64)
    pts = torch.stack([grid, torch.zeros_like(grid)], 1)
    mass = torch.trapezoid(prior.log_prob(pts).exp(), grid) * 2 * math.pi
    assert abs(float(mass) - 1.0) < 1e-6
    # the truncated normal's variance 1 − 2φ(1)/(2Φ(1) − 1) ≈ 0.2911
    assert abs(float(z[:, 0].var()) - 0.2911) < 0.01


def test_mixed_coupling_bounded_starts_as_identity():
    layer = MixedCoupling(
        4, torch.tensor([1, 0, 1, 0]), torch.tensor([0, 0, 1, 1]), linear_tails=False
    )
    z = torch.rand(8, 4, dtype=F64) * 2 - 1
    x, ld = layer(z)
    torch.testing.assert_close(x, z)
    torch.testing.assert_close(ld, torch.zeros(8, dtype=F64))


def test_a_float32_flow_maps_latents_as_the_float64_one_does(system, model):
    """``dtype: float32``: same parameters, same map to float32 rounding; weights stay float64."""
    bg32 = build_generator(system, replace(PARAMS, dtype="float32"), seed=0)
    bg32.load_state_dict(model.state_dict())
    z = model.prior.sample(500, torch.Generator().manual_seed(6))
    with torch.no_grad():
        x64, ld64 = model.flow(z)
        x32, ld32 = bg32.flow(z.float())
        u64, u32 = model.energy.energy(x64), bg32.energy.energy(x32)
    assert x32.dtype == torch.float32 and bg32.prior.sample(3).dtype == torch.float32
    torch.testing.assert_close(x32.double(), x64, atol=1e-5, rtol=0)
    torch.testing.assert_close(ld32.double(), ld64, atol=1e-3, rtol=0)
    assert u32.dtype == F64
    low = u64 < 500  # clashes of 10¹⁰ kT amplify float32 rounding; typical draws do not
    assert int(low.sum()) > 10
    torch.testing.assert_close(u32[low], u64[low], atol=1e-2, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_a_torsion_one_rounding_step_beyond_pi_lies_on_the_circle(dtype):
    """A torsion wrapped to ±π comes out of a float32 flow up to a few ulps beyond it: it
    keeps the density 1/2π instead of −∞ (which made a forward-KL loss infinite)."""
    prior = MixedPrior(torch.tensor([False, True]), dtype)
    pi = torch.tensor(math.pi, dtype=dtype)
    edge = torch.nextafter(torch.nextafter(pi, pi + 1), pi + 1)
    assert float(edge) > math.pi
    z = torch.stack([torch.zeros(3, dtype=dtype), torch.stack([edge, -edge, 0.5 * edge])], 1)
    expected = -0.5 * math.log(2 * math.pi) - math.log(2 * math.pi)
    torch.testing.assert_close(prior.log_prob(z).double(), torch.full((3,), expected, dtype=F64))
    off = torch.tensor([[0.0, 3.2]], dtype=dtype)
    assert float(prior.log_prob(off)) == -math.inf
