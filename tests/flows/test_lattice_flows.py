"""Checkerboard lattice couplings: round trip, log-det vs autograd, translation invariance."""

import pytest
import torch

from boltzgen.flows import GaussianPrior
from boltzgen.flows.lattice import load_at_any_volume, make_lattice_flow

TRANSFORMS = pytest.mark.parametrize("transform", ["affine", "spline"])
# nflows' spline inverse solves a quadratic: round trips hold to ~1e-8, not to rounding.
TOLERANCE = {"affine": 1e-10, "spline": 1e-7}


def _randomised(length: int, seed: int = 0, transform: str = "affine"):
    """A flow whose last convolutions are non-zero (not the identity it starts as)."""
    flow = make_lattice_flow(
        length, n_layers=4, hidden=4, seed=seed, transform=transform, n_bins=4, tail_bound=2.0
    ).double()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return flow


@TRANSFORMS
def test_round_trip_and_logdets_are_opposite(transform):
    flow = _randomised(6, transform=transform)
    z = torch.randn(5, 36, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x, ld = flow(z)
    assert x.shape == (5, 6, 6)
    z2, ld_inv = flow.inverse(x)
    tol = TOLERANCE[transform]
    torch.testing.assert_close(z2, z, rtol=tol, atol=tol)
    torch.testing.assert_close(ld_inv, -ld, rtol=tol, atol=tol)


@TRANSFORMS
def test_logdet_equals_the_autograd_jacobian(transform):
    flow = _randomised(4, transform=transform)
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    _, ld = flow(z)
    for b in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0].reshape(-1), z[b])
        assert float(ld[b].detach()) == pytest.approx(
            float(torch.linalg.slogdet(jac)[1]), abs=TOLERANCE[transform]
        )


@TRANSFORMS
@pytest.mark.parametrize("shift", [(2, 0), (0, 2), (1, 1), (3, 5)])
def test_density_is_invariant_under_checkerboard_translations(shift, transform):
    """Translations keeping x₀ + x₁ even leave log q(φ) unchanged."""
    length = 6
    flow, prior = _randomised(length, transform=transform), GaussianPrior(length * length)
    phi = torch.randn(4, length, length, generator=torch.Generator().manual_seed(4)).double()

    def log_q(x):
        z, ld = flow.inverse(x)
        return prior.log_prob(z) + ld

    torch.testing.assert_close(log_q(phi.roll(shift, (-2, -1))), log_q(phi), rtol=1e-10, atol=1e-10)


@TRANSFORMS
def test_flow_starts_as_the_identity(transform):
    flow = make_lattice_flow(4, transform=transform)
    z = torch.randn(2, 16, dtype=torch.float64)
    x, ld = flow(z)
    torch.testing.assert_close(x.reshape(2, 16), z)
    torch.testing.assert_close(ld, torch.zeros(2, dtype=torch.float64))


@TRANSFORMS
def test_a_flow_moved_to_a_larger_lattice_repeats_itself_on_a_repeating_field(transform):
    small = _randomised(4, transform=transform)
    large = make_lattice_flow(
        8, n_layers=4, hidden=4, transform=transform, n_bins=4, tail_bound=2.0
    ).double()
    load_at_any_volume(large, small.state_dict())
    phi = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    x_small, ld_small = small(phi.reshape(3, -1))
    x_large, ld_large = large(phi.repeat(1, 2, 2).reshape(3, -1))
    tol = TOLERANCE[transform]
    torch.testing.assert_close(x_large, x_small.repeat(1, 2, 2), rtol=tol, atol=tol)
    torch.testing.assert_close(ld_large, 4 * ld_small, rtol=tol, atol=tol)


def test_moving_a_flow_to_another_lattice_refuses_another_architecture():
    small = _randomised(4)
    with pytest.raises(ValueError, match="lacks parameter"):
        load_at_any_volume(make_lattice_flow(8, n_layers=6, hidden=4).double(), small.state_dict())
    with pytest.raises(ValueError, match="this one lacks"):
        load_at_any_volume(make_lattice_flow(8, n_layers=2, hidden=4).double(), small.state_dict())
    with pytest.raises(ValueError, match="shape"):
        load_at_any_volume(make_lattice_flow(8, n_layers=4, hidden=8).double(), small.state_dict())
