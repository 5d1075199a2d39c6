"""Cartesian Transformer flow: exact inverse, log-det on the zero-centroid subspace V,
autoregressive structure, centroid handling, the prior on V, random rotations.
Statistical checks compare many entries at once and allow 6 standard errors each."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from torch.autograd.functional import jacobian

from boltzgen.energies.base import Energy
from boltzgen.flows import Flow
from boltzgen.flows.transformer import (
    CenteredGaussianPrior,
    TransformerBlock,
    make_transformer_flow,
    random_rotation,
    random_rotation_matrices,
)
from boltzgen.metrics.weights import log_z
from boltzgen.samplers.importance import BoltzmannGenerator

F64 = torch.float64
D = 3
SMALL = {"d_model": 16, "n_heads": 2, "n_layers": 1}


def _randomize(flow: Flow, seed: int, scale: float = 0.2) -> Flow:
    """Perturb every parameter by N(0, scale²), so no block is the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


def _order(kind: str, n: int) -> Tensor:
    if kind == "identity":
        return torch.arange(n)
    if kind == "reversed":
        return torch.arange(n - 1, -1, -1)
    return torch.randperm(n, generator=torch.Generator().manual_seed(n))


def _block(n: int, order: str, seed: int = 0) -> TransformerBlock:
    types = torch.arange(n) % 2
    return _randomize(TransformerBlock(n, _order(order, n), atom_types=types, **SMALL), seed)


def _centered(n_atoms: int, batch: int = 16, seed: int = 3) -> Tensor:
    """Zero-centroid configurations ``[batch, N·3]`` with spread ~1.5."""
    g = torch.Generator().manual_seed(seed)
    x = 1.5 * torch.randn(batch, n_atoms, D, generator=g, dtype=F64)
    return (x - x.mean(dim=1, keepdim=True)).reshape(batch, -1)


def _subspace_basis(n_atoms: int) -> Tensor:
    """Orthonormal basis Q ``[N·3, (N−1)·3]`` of V, from the eigenvectors of I − 11ᵀ/N."""
    centring = torch.eye(n_atoms, dtype=F64) - 1.0 / n_atoms
    _, vectors = torch.linalg.eigh(centring)  # eigenvalues 0, 1, …, 1 (ascending)
    return torch.einsum("ij,ab->iajb", vectors[:, 1:], torch.eye(D, dtype=F64)).reshape(
        n_atoms * D, (n_atoms - 1) * D
    )


def _restricted_logdets(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """log|det Qᵀ J Q| per sample: the log-det of ``fn`` restricted to V."""
    q = _subspace_basis(x.shape[1] // D)
    dets = []
    for xi in x:
        jac = jacobian(lambda v: fn(v[None]).reshape(-1), xi)
        dets.append(torch.linalg.slogdet(q.T @ jac @ q).logabsdet)
    return torch.stack(dets)


def _centroid(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1, D).mean(dim=1)


@pytest.mark.parametrize("order", ["identity", "reversed", "random"])
@pytest.mark.parametrize("n_atoms", [2, 4, 6])
def test_block_round_trip(n_atoms: int, order: str) -> None:
    block = _block(n_atoms, order, seed=n_atoms)
    z = _centered(n_atoms)
    x, ld_fwd = block(z)
    z_back, ld_inv = block.inverse(x)
    assert x.shape == z.shape and ld_fwd.shape == (z.shape[0],)
    assert (x - z).abs().max() > 1e-2, "randomised block should not be the identity"
    torch.testing.assert_close(z_back, z, atol=1e-6, rtol=0)
    torch.testing.assert_close(ld_inv, -ld_fwd, atol=1e-6, rtol=0)


@pytest.mark.parametrize("n_atoms", [3, 5])
def test_flow_round_trip(n_atoms: int) -> None:
    flow = make_transformer_flow(
        n_atoms, n_blocks=3, atom_types=[0, 1] + [2] * (n_atoms - 2), **SMALL
    )
    _randomize(flow, seed=n_atoms)
    z = _centered(n_atoms)
    x, ld_fwd = flow(z)
    z_back, ld_inv = flow.inverse(x)
    assert x.shape == (z.shape[0], n_atoms, D)
    assert (x.reshape(z.shape) - z).abs().max() > 1e-2
    torch.testing.assert_close(z_back, z, atol=1e-6, rtol=0)
    torch.testing.assert_close(ld_inv, -ld_fwd, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("n_atoms", "make"),
    [
        (4, lambda n: _block(n, "identity", seed=11)),
        (5, lambda n: _block(n, "reversed", seed=12)),
        (4, lambda n: _randomize(make_transformer_flow(n, n_blocks=2, **SMALL), seed=13)),
    ],
    ids=["block_identity", "block_reversed", "flow"],
)
def test_logdet_matches_jacobian_restricted_to_subspace(
    n_atoms: int, make: Callable[[int], Flow]
) -> None:
    flow = make(n_atoms)
    z = _centered(n_atoms, batch=3)
    x, ld_fwd = flow(z)
    x = x.detach().reshape(z.shape)
    _, ld_inv = flow.inverse(x)
    expected_fwd = _restricted_logdets(lambda v: flow(v)[0], z)
    torch.testing.assert_close(ld_fwd, expected_fwd, atol=1e-6, rtol=0)
    expected_inv = _restricted_logdets(lambda v: flow.inverse(v)[0], x)
    torch.testing.assert_close(ld_inv, expected_inv, atol=1e-6, rtol=0)


def _chart_map(block: TransformerBlock, direction: str) -> Callable[[Tensor], Tensor]:
    """The block in its chart: first N − 1 atoms in block order ``[(N−1)·3]`` → same."""
    order = block.order
    unorder = torch.argsort(order)

    def fn(y: Tensor) -> Tensor:
        atoms = y.reshape(-1, D)
        full = torch.cat([atoms, -atoms.sum(dim=0, keepdim=True)])[unorder]
        out = getattr(block, direction)(full.reshape(1, -1))[0]
        return out.reshape(-1, D)[order[:-1]].reshape(-1)

    return fn


@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("order", ["identity", "reversed", "random"])
def test_block_is_autoregressive_in_its_order(order: str, direction: str) -> None:
    n = 5
    block = _block(n, order, seed=21)
    z = _centered(n, batch=2)
    _, logdet = getattr(block, direction)(z)
    for b in range(z.shape[0]):
        y = z[b].reshape(n, D)[block.order[:-1]].reshape(-1)
        jac = jacobian(_chart_map(block, direction), y).reshape(n - 1, D, n - 1, D)
        for i in range(n - 1):
            diag = jac[i, :, i, :]
            torch.testing.assert_close(diag, torch.diag(diag.diagonal()), atol=1e-12, rtol=0)
            for j in range(i + 1, n - 1):
                assert jac[i, :, j, :].abs().max() < 1e-12, f"atom {i} depends on later atom {j}"
        assert jac[n - 2, :, 0, :].abs().max() > 1e-3, "last atom should depend on the first"
        diag_logdet = torch.stack([jac[i, :, i, :].diagonal() for i in range(n - 1)]).log().sum()
        torch.testing.assert_close(diag_logdet, logdet[b], atol=1e-10, rtol=0)


@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_centroid_is_preserved_and_ignored(direction: str) -> None:
    n = 5
    flow = _randomize(make_transformer_flow(n, n_blocks=2, **SMALL), seed=31)
    z = _centered(n)
    x, logdet = getattr(flow, direction)(z)
    torch.testing.assert_close(
        _centroid(x), torch.zeros(z.shape[0], D, dtype=F64), atol=1e-12, rtol=0
    )
    shift = torch.tensor([0.7, -1.3, 2.1], dtype=F64).repeat(n)
    x_shifted, logdet_shifted = getattr(flow, direction)(z + shift)
    torch.testing.assert_close(x_shifted, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(logdet_shifted, logdet, atol=1e-10, rtol=0)


def test_new_flow_is_the_identity() -> None:
    z = _centered(6)
    x, logdet = make_transformer_flow(6, n_blocks=2, **SMALL)(z)
    torch.testing.assert_close(x.reshape(z.shape), z, atol=1e-12, rtol=0)
    torch.testing.assert_close(logdet, torch.zeros(z.shape[0], dtype=F64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("std", [1.0, 0.3])
@pytest.mark.parametrize("n_atoms", [2, 5])
def test_prior_is_the_normalised_gaussian_on_the_subspace(n_atoms: int, std: float) -> None:
    prior = CenteredGaussianPrior(n_atoms, std=std)
    z = prior.sample(50, torch.Generator().manual_seed(n_atoms))
    assert z.shape == (50, n_atoms * D) and prior.dim == n_atoms * D
    torch.testing.assert_close(_centroid(z), torch.zeros(50, D, dtype=F64), atol=1e-12, rtol=0)
    w = z @ _subspace_basis(n_atoms)  # orthonormal coordinates of V
    explicit = torch.distributions.Normal(0.0, torch.tensor(std, dtype=F64)).log_prob(w).sum(dim=1)
    torch.testing.assert_close(prior.log_prob(z), explicit, atol=1e-10, rtol=0)


def test_prior_draws_have_covariance_sigma_squared_on_the_subspace() -> None:
    n_atoms, std, n = 3, 0.5, 20_000
    w = CenteredGaussianPrior(n_atoms, std=std).sample(n, torch.Generator().manual_seed(0))
    w = w @ _subspace_basis(n_atoms)
    cov = w.T @ w / n
    stderr = std**2 * math.sqrt(2.0 / n)  # of a variance; off-diagonals have σ²/√n
    assert (cov - std**2 * torch.eye(w.shape[1], dtype=F64)).abs().max() < 6 * stderr


class _HarmonicOnSubspace(Energy):
    """u(x) = |Px|² / (2s²) on ``[B, N, 3]``; Z over V is (2πs²)^{(N−1)·3/2}."""

    def __init__(self, n_atoms: int, s: float):
        super().__init__((n_atoms, D), temperature=1.0)
        self.s = s
        self.log_z = 0.5 * (n_atoms - 1) * D * math.log(2 * math.pi * s**2)

    def _energy(self, x: Tensor) -> Tensor:
        return (x - x.mean(dim=1, keepdim=True)).pow(2).sum(dim=(1, 2)) / (2 * self.s**2)


@pytest.mark.parametrize("n_atoms", [2, 3])
def test_importance_weights_recover_the_partition_function_on_the_subspace(
    n_atoms: int,
) -> None:
    energy = _HarmonicOnSubspace(n_atoms, s=0.8)
    flow = _randomize(make_transformer_flow(n_atoms, n_blocks=2, **SMALL), seed=41, scale=0.05)
    model = BoltzmannGenerator(CenteredGaussianPrior(n_atoms), flow, energy)
    samples = model.sample(4000, torch.Generator().manual_seed(n_atoms))
    estimate, stderr = log_z(samples.log_weights)
    assert stderr < 0.05, "weights too spread for a sharp test"
    assert abs(estimate - energy.log_z) < 6 * stderr + 1e-12


def test_random_rotations_are_proper_and_haar_distributed() -> None:
    n = 20_000
    rot = random_rotation_matrices(n, torch.Generator().manual_seed(0))
    eye = torch.eye(3, dtype=F64).expand(n, 3, 3)
    torch.testing.assert_close(rot @ rot.transpose(1, 2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(n, dtype=F64), atol=1e-12, rtol=0)
    # Haar on SO(3): E[R_ij] = 0 and E[R_ij R_kl] = δ_ik δ_jl / 3 (orthogonality relations
    # of the irreducible representation on R³). A uniform angle about a uniform axis fails
    # the first (E[tr R] = 1), quaternions from one octant of S³ fail both.
    flat = rot.reshape(n, 9)
    moments = [(flat, torch.zeros(9, dtype=F64))]
    pairs = (flat[:, :, None] * flat[:, None, :]).reshape(n, 81)
    eye = torch.eye(3, dtype=F64)
    moments.append((pairs, torch.einsum("ik,jl->ijkl", eye, eye).reshape(81) / 3))
    for values, mean in moments:
        stderr = values.std(dim=0) / math.sqrt(n)
        assert bool(((values.mean(dim=0) - mean).abs() < 6 * stderr + 1e-12).all())


@pytest.mark.parametrize("flat", [False, True])
def test_random_rotation_keeps_geometry_and_centroid(flat: bool) -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(32, 4, 3, generator=g, dtype=F64) + torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    y = random_rotation(x.reshape(32, 12) if flat else x, torch.Generator().manual_seed(1))
    assert y.shape == ((32, 12) if flat else (32, 4, 3))
    y = y.reshape(32, 4, 3)
    torch.testing.assert_close(torch.cdist(y, y), torch.cdist(x, x), atol=1e-12, rtol=0)
    torch.testing.assert_close(y.mean(dim=1), x.mean(dim=1), atol=1e-12, rtol=0)
    edges = (x[:, 1:] - x[:, :1], y[:, 1:] - y[:, :1])  # signed volumes: no reflections
    torch.testing.assert_close(
        torch.linalg.det(edges[1]), torch.linalg.det(edges[0]), atol=1e-10, rtol=0
    )
    assert (y - x).abs().max() > 1e-1
    again = random_rotation(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(again, y, atol=0, rtol=0)


def test_factory_alternates_orders_and_is_reproducible() -> None:
    a, b = (make_transformer_flow(4, n_blocks=3, seed=2, **SMALL) for _ in range(2))
    orders = [layer.order.tolist() for layer in a.layers if isinstance(layer, TransformerBlock)]
    assert orders == [[0, 1, 2, 3], [3, 2, 1, 0], [0, 1, 2, 3]]
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    c = make_transformer_flow(4, n_blocks=3, seed=3, **SMALL)
    assert not torch.equal(
        a.state_dict()["layers.0.net.coords.weight"], c.state_dict()["layers.0.net.coords.weight"]
    )


def test_bad_arguments_are_rejected_with_reasons() -> None:
    with pytest.raises(ValueError, match="permutation"):
        TransformerBlock(3, [0, 0, 1], **SMALL)
    with pytest.raises(ValueError, match="divisible"):
        TransformerBlock(3, [0, 1, 2], d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="n_atoms ≥ 2"):
        TransformerBlock(1, [0], **SMALL)
    with pytest.raises(ValueError, match="atom_types"):
        TransformerBlock(3, [0, 1, 2], atom_types=[0, -1, 0], **SMALL)
    with pytest.raises(ValueError, match=r"\[B, 9\]"):
        TransformerBlock(3, [0, 1, 2], **SMALL)(torch.zeros(2, 8, dtype=F64))
    with pytest.raises(ValueError, match="random_rotation"):
        random_rotation(torch.zeros(2, 4, 2, dtype=F64))
    with pytest.raises(ValueError, match="std > 0"):
        CenteredGaussianPrior(3, std=0.0)
