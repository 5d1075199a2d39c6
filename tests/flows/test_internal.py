"""Internal coordinates: Z-matrix validity, exact round trips, log-dets vs autograd Jacobians."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import mdtraj
import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from boltzgen.flows.circular import wrap
from boltzgen.flows.internal import (
    FixedFrameInternalCoordinates,
    InternalCoordinates,
    InternalLayout,
    StandardizeInternal,
    ZMatrix,
)
from boltzgen.observables.peptides import backbone_torsion_indices
from boltzgen.systems import load_system

F64 = torch.float64
PEPTIDES = [
    "alanine_dipeptide_implicit",
    "alanine_tripeptide_implicit",
    "alanine_tetrapeptide_implicit",
    "alanine_hexapeptide_implicit",
]


@functools.cache
def peptide(name: str) -> tuple[mdtraj.Topology, torch.Tensor]:
    system = load_system(name)
    return system.topology, system.initial_positions


def perturbed(x0: torch.Tensor, n: int, seed: int, scale: float = 0.01) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return x0 + scale * torch.randn(n, *x0.shape, generator=g, dtype=F64)


def molecule(elements: list[str], bonds: list[tuple[int, int]]) -> mdtraj.Topology:
    """A one-residue topology with the given elements and bonds (atom names X0, X1, ...)."""
    top = mdtraj.Topology()
    residue = top.add_residue("MOL", top.add_chain())
    atoms = [
        top.add_atom(f"{e}{i}", mdtraj.element.get_by_symbol(e), residue)
        for i, e in enumerate(elements)
    ]
    for a, b in bonds:
        top.add_bond(atoms[a], atoms[b])
    return top


RING = [(i, (i + 1) % 6) for i in range(6)]
SYNTHETIC: dict[str, Callable[[], mdtraj.Topology]] = {
    "water": lambda: molecule(["O", "H", "H"], [(0, 1), (0, 2)]),
    "methane": lambda: molecule(["C", "H", "H", "H", "H"], [(0, i) for i in range(1, 5)]),
    "neopentane": lambda: molecule(["C"] * 5, [(0, i) for i in range(1, 5)]),
    "benzene": lambda: molecule(["C"] * 6 + ["H"] * 6, RING + [(i, i + 6) for i in range(6)]),
    "butane_h": lambda: molecule(
        ["C"] * 4 + ["H"] * 10,
        [(0, 1), (1, 2), (2, 3), *zip([0, 0, 0, 1, 1, 2, 2, 3, 3, 3], range(4, 14), strict=True)],
    ),
}


def random_internal(layout: InternalLayout, n: int, seed: int) -> torch.Tensor:
    """Random valid internal coordinates: bonds 0.09–0.16 nm, angles 0.6–2.8 rad, any torsion."""
    g = torch.Generator().manual_seed(seed)
    q = torch.empty(n, layout.dim, dtype=F64)

    def uniform(index: torch.Tensor, low: float, high: float) -> None:
        q[:, index] = low + (high - low) * torch.rand(n, index.numel(), generator=g, dtype=F64)

    uniform(layout.bond_indices, 0.09, 0.16)
    uniform(layout.angle_indices, 0.6, 2.8)
    uniform(layout.torsion_indices, -math.pi, math.pi)
    if layout.with_frame:
        uniform(layout.origin_indices, -1.0, 1.0)
        uniform(layout.rotation_indices[:1], 0.3, 2.8)
        uniform(layout.rotation_indices[1:], -math.pi, math.pi)
    return q


def random_rotation(seed: int) -> torch.Tensor:
    """A random proper rotation ``[3, 3]`` (QR of a Gaussian matrix, det +1)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=F64))[0]
    return r if torch.linalg.det(r) > 0 else -r


def distances(x: torch.Tensor) -> torch.Tensor:
    """All pairwise distances ``[B, N, N]`` (exact differences, not cdist's matmul trick)."""
    return torch.linalg.vector_norm(x[:, :, None] - x[:, None], dim=-1)


def assert_internal_close(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, atol: float):
    """Equal internal vectors, torsions compared on the circle."""
    diff = torch.where(mask, wrap(a - b), a - b)
    torch.testing.assert_close(diff, torch.zeros_like(diff), atol=atol, rtol=0)


def jacobian_logdets(fn: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor) -> torch.Tensor:
    """log|det ∂fn/∂v| per sample from the full autograd Jacobian (flattened outputs)."""

    def flat(u: torch.Tensor) -> torch.Tensor:
        return fn(u[None]).reshape(-1)

    dets = [torch.linalg.slogdet(jacobian(flat, vi, vectorize=True)).logabsdet for vi in v]
    return torch.stack(dets)


# --------------------------------------------------------------------------- Z-matrix


@pytest.mark.parametrize("name", PEPTIDES)
def test_zmatrix_is_valid_and_chemical(name: str) -> None:
    top, _ = peptide(name)
    zm = ZMatrix.from_topology(top)
    bonds = {frozenset((a.index, b.index)) for a, b in top.bonds}
    rank = {int(a): k for k, a in enumerate(zm.order)}
    assert sorted(rank) == list(range(top.n_atoms))
    for k in range(1, top.n_atoms):
        atom, refs = int(zm.order[k]), [int(r) for r in zm.refs[k, : min(k, 3)]]
        assert all(rank[r] < k for r in refs), f"row {k}: reference not yet placed"
        assert len(set(refs)) == len(refs)
        assert frozenset((atom, refs[0])) in bonds, f"row {k}: bond is not a chemical bond"
        if k >= 2:
            assert frozenset(refs[:2]) in bonds, f"row {k}: angle does not follow bonds"
    hydrogen = [top.atom(int(i)).element.symbol == "H" for i in zm.order]
    assert hydrogen == sorted(hydrogen), "heavy atoms must come before hydrogens"
    assert top.atom(int(zm.order[0])).name in {"CA", "C", "N"}, "root should be on the backbone"


@pytest.mark.parametrize("name", PEPTIDES)
def test_one_proper_torsion_per_rotatable_bond(name: str) -> None:
    """Other atoms across a bond take a sibling as third reference (a stiff offset torsion)."""
    top, _ = peptide(name)
    zm = ZMatrix.from_topology(top)
    bonds = {frozenset((a.index, b.index)) for a, b in top.bonds}
    proper: dict[frozenset[int], int] = {}
    for a, b, c in zm.refs[3:].tolist():
        if frozenset((b, c)) in bonds:
            proper[frozenset((a, b))] = proper.get(frozenset((a, b)), 0) + 1
        else:
            assert frozenset((a, c)) in bonds, "an offset torsion's c must be a sibling"
    assert max(proper.values()) == 1


@pytest.mark.parametrize("name", PEPTIDES)
def test_backbone_phi_psi_are_coordinates(name: str) -> None:
    top, _ = peptide(name)
    torsions = {tuple(t) for t in ZMatrix.from_topology(top).torsion_atoms.tolist()}
    torsions |= {t[::-1] for t in torsions}
    phi, psi = backbone_torsion_indices(top)
    for quad in torch.cat([phi, psi]).tolist():
        assert tuple(quad) in torsions, f"backbone torsion {quad} is not a Z-matrix torsion"


@pytest.mark.parametrize("name", PEPTIDES)
def test_coordinates_match_mdtraj(name: str) -> None:
    top, x0 = peptide(name)
    zm = ZMatrix.from_topology(top)
    ic = InternalCoordinates(zm)
    x = perturbed(x0, 3, seed=1)
    q, _ = ic.inverse(x)
    traj = mdtraj.Trajectory(x.numpy(), top)
    bonds = mdtraj.compute_distances(traj, zm.bond_atoms.numpy(), periodic=False)
    angles = mdtraj.compute_angles(traj, zm.angle_atoms.numpy(), periodic=False)
    torsions = mdtraj.compute_dihedrals(traj, zm.torsion_atoms.numpy(), periodic=False)
    layout = ic.layout
    np.testing.assert_allclose(q[:, layout.bond_indices].numpy(), bonds, atol=1e-6)
    np.testing.assert_allclose(q[:, layout.angle_indices].numpy(), angles, atol=1e-5)
    t = q[:, layout.torsion_indices]
    np.testing.assert_allclose(wrap(t - torch.as_tensor(torsions, dtype=F64)).numpy(), 0, atol=1e-5)


def test_zmatrix_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="not connected"):
        ZMatrix.from_topology(molecule(["C", "C", "C", "C"], [(0, 1), (2, 3)]))
    with pytest.raises(ValueError, match="bonded to no heavy atom"):
        ZMatrix.from_topology(molecule(["C", "C", "H"], [(0, 1)]))
    with pytest.raises(ValueError, match="at least 3"):
        ZMatrix.from_topology(molecule(["C", "C"], [(0, 1)]))
    with pytest.raises(ValueError, match="row 2"):
        ZMatrix(torch.tensor([0, 1, 2]), torch.tensor([[-1, -1, -1], [0, -1, -1], [2, 0, -1]]))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", PEPTIDES)
def test_round_trip_peptides(name: str) -> None:
    top, x0 = peptide(name)
    ic = InternalCoordinates(ZMatrix.from_topology(top))
    x = perturbed(x0, 8, seed=2)
    q, ld_inv = ic.inverse(x)
    x_back, ld_fwd = ic(q)
    assert q.shape == (8, 3 * top.n_atoms) and x_back.shape == x.shape
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld_fwd, -ld_inv, atol=1e-10, rtol=0)
    q_back, _ = ic.inverse(x_back.reshape(8, -1))  # flat Cartesian input is accepted too
    assert_internal_close(q_back, q, ic.layout.torsion_mask, atol=1e-12)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_round_trip_random_geometries(name: str) -> None:
    ic = InternalCoordinates(ZMatrix.from_topology(SYNTHETIC[name]()))
    q = random_internal(ic.layout, 16, seed=3)
    x, ld_fwd = ic(q)
    q_back, ld_inv = ic.inverse(x)
    assert_internal_close(q_back, q, ic.layout.torsion_mask, atol=1e-11)
    torch.testing.assert_close(ld_inv, -ld_fwd, atol=1e-11, rtol=0)


@pytest.mark.parametrize("name", PEPTIDES)
def test_fixed_frame_round_trip_and_invariance(name: str) -> None:
    top, x0 = peptide(name)
    zm = ZMatrix.from_topology(top)
    ic = FixedFrameInternalCoordinates(zm, reference=x0)
    x = perturbed(x0, 6, seed=4)
    q, ld_inv = ic.inverse(x)
    assert q.shape == (6, 3 * top.n_atoms - 6)
    moved = x @ random_rotation(seed=5).T + torch.tensor([0.3, -1.0, 2.0], dtype=F64)
    q_moved, ld_moved = ic.inverse(moved)
    assert_internal_close(q_moved, q, ic.layout.torsion_mask, atol=1e-10)
    torch.testing.assert_close(ld_moved, ld_inv, atol=1e-10, rtol=0)
    x_back, ld_fwd = ic(q)
    torch.testing.assert_close(distances(x_back), distances(x), atol=1e-10, rtol=0)
    torch.testing.assert_close(ld_fwd, -ld_inv, atol=1e-10, rtol=0)
    x0_back, _ = ic(ic.inverse(x0[None])[0])
    torch.testing.assert_close(x0_back[0], x0, atol=1e-10, rtol=0)  # the stored frame is x0's


# --------------------------------------------------------------------------- log-dets


def _peptide_internal(n: int) -> tuple[InternalCoordinates, torch.Tensor]:
    top, x0 = peptide("alanine_dipeptide_implicit")
    ic = InternalCoordinates(ZMatrix.from_topology(top))
    return ic, ic.inverse(perturbed(x0, n, seed=6, scale=0.02))[0]


def test_logdet_matches_autograd_alanine_dipeptide() -> None:
    ic, q = _peptide_internal(2)
    x, ld_fwd = ic(q)
    torch.testing.assert_close(ld_fwd, jacobian_logdets(lambda v: ic(v)[0], q), atol=1e-8, rtol=0)
    _, ld_inv = ic.inverse(x)
    expected = jacobian_logdets(lambda v: ic.inverse(v.reshape(-1, 22, 3))[0], x.reshape(2, -1))
    torch.testing.assert_close(ld_inv, expected, atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", ["water", "benzene", "butane_h", "alanine_dipeptide"])
def test_logdet_matches_autograd_random_geometry(name: str) -> None:
    if name == "alanine_dipeptide":
        topology = peptide("alanine_dipeptide_implicit")[0]
    else:
        topology = SYNTHETIC[name]()
    ic = InternalCoordinates(ZMatrix.from_topology(topology))
    q = random_internal(ic.layout, 2, seed=7)
    _, ld = ic(q)
    torch.testing.assert_close(ld, jacobian_logdets(lambda v: ic(v)[0], q), atol=1e-8, rtol=0)


def test_fixed_frame_logdet_is_full_logdet_without_haar_density() -> None:
    """|det ∂x/∂(q′, g)| = J(q′) · sin θ₁: the frame factorises with the SO(3) Haar density."""
    ic, q = _peptide_internal(3)
    fixed = FixedFrameInternalCoordinates(ic.zmatrix)
    g = torch.Generator().manual_seed(8)
    frame = q[:, 60:] + 0.5 * torch.randn(3, 6, generator=g, dtype=F64)
    q_full = torch.cat([q[:, :60], frame], dim=1)
    full = jacobian_logdets(lambda v: ic(v)[0], q_full)
    _, reduced = fixed(q[:, :60])
    torch.testing.assert_close(reduced + frame[:, 3].sin().log(), full, atol=1e-8, rtol=0)


# --------------------------------------------------------------------------- layout and helpers


@pytest.mark.parametrize("with_frame", [True, False])
def test_layout_partitions_coordinates(with_frame: bool) -> None:
    layout = InternalLayout(22, with_frame)
    assert layout.dim == (66 if with_frame else 60)
    masks = torch.stack([layout.bond_mask, layout.angle_mask, layout.torsion_mask])
    assert bool((masks.sum(0) <= 1).all())
    assert int(masks.sum()) == layout.dim - (3 if with_frame else 0)
    assert int(layout.torsion_mask.sum()) == 19 + (2 if with_frame else 0)
    index = torch.cat(
        [
            layout.bond_indices,
            layout.angle_indices,
            layout.torsion_indices,
            layout.origin_indices,
            layout.rotation_indices,
        ]
    )
    assert torch.equal(index, torch.arange(layout.dim))


def test_standardize_internal() -> None:
    ic, q = _peptide_internal(50)
    fixed = FixedFrameInternalCoordinates(ic.zmatrix)
    q = q[:, :60]
    mask = fixed.layout.torsion_mask
    norm = StandardizeInternal.from_data(q, mask)
    z, ld_inv = norm.inverse(q)
    torch.testing.assert_close(z[:, mask], q[:, mask], atol=0, rtol=0)
    torch.testing.assert_close(z[:, ~mask].mean(0), torch.zeros(41, dtype=F64), atol=1e-10, rtol=0)
    torch.testing.assert_close(z[:, ~mask].std(0), torch.ones(41, dtype=F64), atol=1e-10, rtol=0)
    q_back, ld_fwd = norm(z)
    torch.testing.assert_close(q_back, q, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        ld_fwd, jacobian_logdets(lambda v: norm(v)[0], z[:2]).mean().expand(50)
    )
    torch.testing.assert_close(ld_inv, -ld_fwd)


def test_shape_errors() -> None:
    ic, q = _peptide_internal(1)
    with pytest.raises(ValueError, match=r"\[B, 66\]"):
        ic(q[:, :60])
    with pytest.raises(ValueError, match=r"\[B, 22, 3\]"):
        ic.inverse(torch.zeros(1, 21, 3, dtype=F64))
