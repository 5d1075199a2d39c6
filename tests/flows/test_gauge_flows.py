"""Gauge-equivariant U(1) couplings: round trip, log-det vs autograd, gauge invariance."""

import math

import pytest
import torch

from boltzgen.energies.lattice import U1Wilson, gauge_transform
from boltzgen.flows.gauge import UniformAnglePrior, make_gauge_flow
from boltzgen.flows.lattice import load_at_any_volume

TRANSFORMS = pytest.mark.parametrize("transform", ["ncp", "spline"])


def _randomised(length: int = 4, seed: int = 0, transform: str = "ncp", kernel_size: int = 3):
    """A flow with every parameter perturbed by N(0, σ²), σ = 0.3 · 3 / ``kernel_size`` (the
    same spread of the conditioners' outputs whatever the kernel's fan-in)."""
    flow = make_gauge_flow(
        length, n_layers=4, hidden=4, seed=seed, transform=transform, kernel_size=kernel_size
    )
    generator = torch.Generator().manual_seed(seed + 1)
    sigma = 0.3 * 3 / kernel_size
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(sigma * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return flow


def _links(n: int, length: int, seed: int) -> torch.Tensor:
    u = torch.rand(n, 2 * length * length, generator=torch.Generator().manual_seed(seed))
    return 2 * math.pi * u.double()


@TRANSFORMS
def test_round_trip_and_logdets_are_opposite(transform):
    flow = _randomised(transform=transform)
    z = _links(5, 4, 2)
    x, ld = flow(z)
    assert x.shape == (5, 2, 4, 4)
    z2, ld_inv = flow.inverse(x)
    torch.testing.assert_close(z2, z, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ld_inv, -ld, rtol=1e-9, atol=1e-9)


@TRANSFORMS
def test_logdet_equals_the_autograd_jacobian(transform):
    flow = _randomised(transform=transform)
    z = _links(2, 4, 3)
    _, ld = flow(z)
    for b in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0].reshape(-1), z[b])
        assert float(ld[b].detach()) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-9)


@TRANSFORMS
def test_density_is_gauge_invariant_and_the_action_too(transform):
    flow, prior = _randomised(transform=transform), UniformAnglePrior(32)
    theta = _links(4, 4, 4).reshape(4, 2, 4, 4)
    alpha = 3 * torch.randn(4, 4, 4, generator=torch.Generator().manual_seed(5)).double()
    rotated = gauge_transform(theta, alpha)

    def log_q(x):
        z, ld = flow.inverse(x)
        return prior.log_prob(z.reshape(4, -1)) + ld

    torch.testing.assert_close(log_q(rotated), log_q(theta), rtol=1e-8, atol=1e-8)
    energy = U1Wilson(L=4, beta=2.0)
    torch.testing.assert_close(energy.energy(rotated), energy.energy(theta))


def test_a_wide_kernel_flow_is_invertible_exact_and_gauge_invariant():
    """5 × 5 conditioner kernels on an 8 × 8 lattice (each sees 25 of 64 sites): the round
    trip, the log-det against autograd and the density's gauge invariance still hold."""
    length = 8
    flow, prior = _randomised(length, kernel_size=5), UniformAnglePrior(2 * length**2)
    z = _links(3, length, 7)
    x, ld = flow(z)
    z2, ld_inv = flow.inverse(x)
    torch.testing.assert_close(z2, z, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ld_inv, -ld, rtol=1e-9, atol=1e-9)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0].reshape(-1), z[0])
    assert float(ld[0].detach()) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-9)
    alpha = 3 * torch.randn(3, length, length, generator=torch.Generator().manual_seed(8)).double()
    rotated = gauge_transform(x, alpha)

    def log_q(links):
        back, logdet = flow.inverse(links)
        return prior.log_prob(back.reshape(3, -1)) + logdet

    torch.testing.assert_close(log_q(rotated), log_q(x.detach()), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(("transform", "n_components"), [("ncp", 1), ("spline", 2), ("spline", 8)])
def test_flow_starts_as_the_identity(transform, n_components):
    flow = make_gauge_flow(4, n_layers=2, transform=transform, n_components=n_components)
    z = _links(3, 4, 6)
    x, ld = flow(z)
    torch.testing.assert_close(x.reshape(3, -1), z)
    torch.testing.assert_close(ld, torch.zeros(3, dtype=torch.float64))


def _ncp_scales(flow, z: torch.Tensor) -> torch.Tensor:
    """The first layer's NCP scales s_k at the active plaquettes of ``z``: ``[B, A, K]``."""
    layer = flow.layers[0]
    with torch.no_grad():
        return layer._active(z)[1]


def test_ncp_mixture_components_start_apart_and_training_keeps_them_apart():
    """Equal scales would get equal gradients forever: the mixture would be one NCP."""
    flow = make_gauge_flow(4, n_layers=2, hidden=4, n_components=3, transform="ncp")
    prior, energy = UniformAnglePrior(32), U1Wilson(L=4, beta=2.0)
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(3)
    for _ in range(5):
        z = prior.sample(16, generator)
        x, ld = flow(z)
        loss = (energy.energy(x) - ld).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    scales = _ncp_scales(flow, _links(4, 4, 8))
    gaps = (scales[..., :, None] - scales[..., None, :]).abs()
    off_diagonal = gaps[..., ~torch.eye(3, dtype=torch.bool)]
    assert float(off_diagonal.min()) > 0.1


def test_silu_conditioners_give_an_invertible_flow_and_unknown_activations_fail():
    flow = make_gauge_flow(4, n_layers=4, hidden=4, activation="silu")
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    z = _links(5, 4, 6)
    x, ld = flow(z)
    z2, ld_inv = flow.inverse(x)
    torch.testing.assert_close(z2, z, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ld_inv, -ld, rtol=1e-9, atol=1e-9)
    assert any(isinstance(m, torch.nn.SiLU) for m in flow.modules())
    with pytest.raises(ValueError, match="activation"):
        make_gauge_flow(4, n_layers=2, hidden=4, activation="relu")


@TRANSFORMS
def test_a_flow_moved_to_a_larger_lattice_repeats_itself_on_a_repeating_field(transform):
    small = _randomised(length=4, transform=transform)
    large = make_gauge_flow(8, n_layers=4, hidden=4, transform=transform)
    load_at_any_volume(large, small.state_dict())
    theta = _links(3, 4, 7).reshape(3, 2, 4, 4)
    tiled = theta.repeat(1, 1, 2, 2)
    x_small, ld_small = small(theta.reshape(3, -1))
    x_large, ld_large = large(tiled.reshape(3, -1))
    torch.testing.assert_close(x_large, x_small.repeat(1, 1, 2, 2), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ld_large, 4 * ld_small, rtol=1e-9, atol=1e-9)
    z_back, ld_back = large.inverse(x_large)
    torch.testing.assert_close(z_back.reshape(3, 2, 8, 8), tiled, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ld_back, -ld_large, rtol=1e-9, atol=1e-9)


def test_moving_a_flow_to_another_lattice_refuses_another_architecture():
    small = _randomised(length=4)
    with pytest.raises(ValueError, match="lacks parameter"):
        load_at_any_volume(make_gauge_flow(8, n_layers=6, hidden=4), small.state_dict())
    with pytest.raises(ValueError, match="this one lacks"):
        load_at_any_volume(make_gauge_flow(8, n_layers=2, hidden=4), small.state_dict())
    with pytest.raises(ValueError, match="shape"):
        load_at_any_volume(make_gauge_flow(8, n_layers=4, hidden=8), small.state_dict())
