"""The periodic particle flow: round trip, log-det against autograd, equivariance, in the box."""

from __future__ import annotations

import pytest
import torch

from boltzgen.flows.particles import (
    ProbeConditioner,
    alternating_particle_masks,
    periodic_particle_flow,
    probe_particle_flow,
)

SPECIES = torch.tensor([0, 0, 0, 1, 1])


def _flow(d: int):
    torch.manual_seed(0)
    box = torch.tensor([3.0, 4.0, 3.5][:d], dtype=torch.float64)
    flow = periodic_particle_flow(box, SPECIES, n_layers=2 * d, n_bins=6, hidden=16).double()
    with torch.no_grad():
        for layer in flow.layers:
            last = layer.conditioner.update[-1]
            last.weight.normal_(0, 0.5)
            last.bias.normal_(0, 0.5)
    z = torch.rand(3, SPECIES.numel(), d, dtype=torch.float64) * box
    return flow, box, z


@pytest.mark.parametrize("d", [2, 3])
def test_round_trip_and_inverse_log_det(d):
    flow, box, z = _flow(d)
    x, logdet = flow(z)
    assert bool(((x >= 0) & (x <= box)).all())
    back, inverse_logdet = flow.inverse(x)
    delta = back - z
    torch.testing.assert_close(delta - box * torch.round(delta / box), torch.zeros_like(z))
    torch.testing.assert_close(inverse_logdet, -logdet)
    assert float(logdet.detach().abs().max()) > 1e-3  # not the identity


@pytest.mark.parametrize("d", [2, 3])
def test_log_det_matches_the_autograd_jacobian(d):
    flow, _, z = _flow(d)
    _, logdet = flow(z)
    _assert_logdet_is_the_autograd_one(flow, z, logdet)


def test_permuting_same_species_particles_permutes_the_output():
    flow, _, z = _flow(2)
    order = torch.tensor([2, 0, 1, 4, 3])
    x, logdet = flow(z)
    x_perm, logdet_perm = flow(z[:, order])
    torch.testing.assert_close(x_perm, x[:, order])
    torch.testing.assert_close(logdet_perm, logdet)


@pytest.mark.parametrize(
    "make",
    [
        lambda box: periodic_particle_flow(box, SPECIES, n_layers=2),
        lambda box: probe_particle_flow(box, SPECIES, n_layers=4),
    ],
)
def test_a_fresh_flow_is_the_identity(make):
    box = torch.tensor([3.0, 3.0], dtype=torch.float64)
    flow = make(box).double()
    z = torch.rand(2, 5, 2, dtype=torch.float64) * box
    x, logdet = flow(z)
    torch.testing.assert_close(x, z)
    torch.testing.assert_close(logdet, torch.zeros(2, dtype=torch.float64))


def _assert_logdet_is_the_autograd_one(flow, z, logdet) -> None:
    """log|det ∂f/∂z| of each row equals slogdet of its autograd Jacobian."""
    for b in range(z.shape[0]):
        jacobian = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], z[b])
        matrix = jacobian.reshape(z[b].numel(), z[b].numel())
        torch.testing.assert_close(torch.linalg.slogdet(matrix)[1], logdet[b])


def _probe_flow(d: int):
    torch.manual_seed(0)
    box = torch.tensor([3.0, 4.0, 3.5][:d], dtype=torch.float64)
    flow = probe_particle_flow(box, SPECIES, n_layers=2 * d, n_bins=6, hidden=16).double()
    with torch.no_grad():
        for layer in flow.layers:
            layer.conditioner.head.weight.normal_(0, 0.5)
            layer.conditioner.head.bias.normal_(0, 0.5)
    z = torch.rand(3, SPECIES.numel(), d, dtype=torch.float64) * box
    return flow, box, z


@pytest.mark.parametrize("d", [2, 3])
def test_probe_flow_round_trip_and_log_det_against_autograd(d):
    flow, box, z = _probe_flow(d)
    x, logdet = flow(z)
    assert bool(((x >= 0) & (x <= box)).all())
    back, inverse_logdet = flow.inverse(x)
    delta = back - z
    torch.testing.assert_close(delta - box * torch.round(delta / box), torch.zeros_like(z))
    torch.testing.assert_close(inverse_logdet, -logdet)
    assert float(logdet.detach().abs().max()) > 1e-3
    _assert_logdet_is_the_autograd_one(flow, z, logdet)


def test_probe_flow_is_equivariant_under_permutations_within_species_and_mask():
    """Particles 0, 2 (even rank, species 0) and 3 (species 1) move first, 1 and 4 after."""
    flow, _, z = _probe_flow(2)
    even, odd = alternating_particle_masks(SPECIES)
    assert (odd == ~even).all()
    assert even.tolist() == [True, False, True, True, False]
    order = torch.tensor([2, 1, 0, 3, 4])
    x, logdet = flow(z)
    x_perm, logdet_perm = flow(z[:, order])
    torch.testing.assert_close(x_perm, x[:, order])
    torch.testing.assert_close(logdet_perm, logdet)


def test_particles_alone_in_their_species_are_split_between_both_masks():
    """A polydisperse box gives each particle its own species: both masks must move some."""
    species = torch.tensor([0, 1, 2, 3, 4, 5, 6, 6, 6])
    even, odd = alternating_particle_masks(species)
    assert (odd == ~even).all()
    assert even.tolist() == [True, False, True, False, True, False, True, False, True]
    box = torch.tensor([3.0, 3.0, 3.0], dtype=torch.float64)
    flow = probe_particle_flow(box, species, n_layers=6, n_bins=4, hidden=8).double()
    z = torch.rand(2, species.numel(), 3, generator=torch.Generator().manual_seed(0)).double()
    x, logdet = flow(z * box)
    back, inverse_logdet = flow.inverse(x)
    delta = back - z * box
    torch.testing.assert_close(delta - box * torch.round(delta / box), torch.zeros_like(z))
    torch.testing.assert_close(inverse_logdet, -logdet)


def test_probe_pair_sum_equals_the_pair_network_on_each_pair():
    """H_ib = Σ_j φ([r_bj features, one-hot s_i, one-hot s_j]), pair by pair, as defined."""
    torch.manual_seed(3)
    conditioner = ProbeConditioner(n_species=3, hidden=8).double()
    with torch.no_grad():
        for parameter in conditioner.parameters():
            parameter.normal_(0, 0.5)
    box = torch.tensor([3.0, 4.0], dtype=torch.float64)
    probes = torch.rand(2, 3, 5, 2, dtype=torch.float64) * box  # [B, M, K, d]
    fixed = torch.rand(2, 4, 2, dtype=torch.float64) * box  # [B, S, d]
    own, other = torch.tensor([0, 2, 1]), torch.tensor([1, 1, 0, 2])
    params = conditioner(probes, fixed, box, (own, other))
    one_hot = torch.eye(3, dtype=torch.float64)
    h = torch.zeros(2, 3, 5, 8, dtype=torch.float64)
    for i in range(3):
        for j in range(4):
            delta = fixed[:, None, j] - probes[:, i]  # [B, K, d]
            delta = delta - box * torch.round(delta / box)
            radial = conditioner._radial(delta.norm(dim=-1))  # [B, K, R]
            codes = torch.cat([one_hot[own[i]], one_hot[other[j]]]).expand(2, 5, 6)
            h[:, i] += conditioner.pair(torch.cat([radial, codes], -1))
    out = conditioner.head(h)
    knots = out[..., 1]
    expected = torch.cat([out[..., 0], 0.5 * (knots + knots.roll(1, -1))], -1)
    torch.testing.assert_close(params[..., 5:], expected)
    torch.testing.assert_close(params[..., :5], torch.zeros_like(params[..., :5]))
