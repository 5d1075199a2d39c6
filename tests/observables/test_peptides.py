"""Backbone torsions: mdtraj indices, torch dihedrals against mdtraj, φ-interval states."""

import math

import mdtraj
import numpy as np
import pytest
import torch

from boltzgen.observables.peptides import (
    PhiInterval,
    backbone_torsion_indices,
    dihedrals,
    phi_psi,
)

RESIDUES = {
    "ACE": ["H1", "CH3", "H2", "H3", "C", "O"],
    "ALA": ["N", "H", "CA", "HA", "CB", "HB1", "HB2", "HB3", "C", "O"],
    "NME": ["N", "H", "C", "H1", "H2", "H3"],
}


def peptide(sequence: list[str]) -> mdtraj.Topology:
    """A topology with the atom names of a PDB file (alanine dipeptide: ACE ALA NME)."""
    top = mdtraj.Topology()
    chain = top.add_chain()
    for number, name in enumerate(sequence, start=1):
        residue = top.add_residue(name, chain, resSeq=number)
        for atom in RESIDUES[name]:
            top.add_atom(atom, mdtraj.element.get_by_symbol(atom[0]), residue)
    return top


def random_positions(batch: int, n_atoms: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, n_atoms, 3, generator=gen, dtype=torch.float64)


def reference_dihedrals(x: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Independent float64 formula: signed angle between the projections of b1 and b3."""
    p = x[:, indices]
    b1, b2, b3 = p[:, :, 1] - p[:, :, 0], p[:, :, 2] - p[:, :, 1], p[:, :, 3] - p[:, :, 2]
    axis = b2 / np.linalg.norm(b2, axis=-1, keepdims=True)
    v = -b1 - (-b1 * axis).sum(-1, keepdims=True) * axis
    w = b3 - (b3 * axis).sum(-1, keepdims=True) * axis
    return np.arctan2((np.cross(axis, v) * w).sum(-1), (v * w).sum(-1))


def test_alanine_dipeptide_indices():
    top = peptide(["ACE", "ALA", "NME"])
    phi, psi = backbone_torsion_indices(top)
    names = [[str(top.atom(int(i))) for i in row] for row in (phi[0], psi[0])]
    assert names == [
        ["ACE1-C", "ALA2-N", "ALA2-CA", "ALA2-C"],
        ["ALA2-N", "ALA2-CA", "ALA2-C", "NME3-N"],
    ]


def test_rows_pair_phi_and_psi_of_one_residue():
    """Uncapped ALA4: only the two middle residues have both torsions."""
    top = peptide(["ALA"] * 4)
    phi, psi = backbone_torsion_indices(top)
    assert phi.shape == psi.shape == (2, 4)
    residues = [[top.atom(int(q[1])).residue.index for q in idx] for idx in (phi, psi)]
    assert residues == [[1, 2], [1, 2]]


def test_no_backbone_is_an_error():
    top = peptide(["ACE"])
    with pytest.raises(ValueError, match="no residue has both"):
        backbone_torsion_indices(top)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dihedrals_match_independent_float64_formula(seed):
    x = random_positions(50, 12, seed)
    idx = torch.randint(12, (30, 4), generator=torch.Generator().manual_seed(seed))
    idx = idx[torch.tensor([len(set(row.tolist())) == 4 for row in idx])]
    expected = reference_dihedrals(x.numpy(), idx.numpy())
    expected = np.where(expected == -np.pi, np.pi, expected)
    np.testing.assert_allclose(dihedrals(x, idx).numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("seed", [3, 4])
def test_dihedrals_match_mdtraj_sign_convention(seed):
    """mdtraj computes in float32: agreement to ~1e-5 rad, as periodic differences."""
    top = peptide(["ACE", "ALA", "NME"])
    x = random_positions(40, top.n_atoms, seed)
    quartets = np.array([[0, 1, 2, 3], [4, 6, 8, 14], [21, 5, 9, 13], [7, 6, 2, 1]])
    traj = mdtraj.Trajectory(x.numpy().astype(np.float32), top)
    expected = mdtraj.compute_dihedrals(traj, quartets, periodic=False).astype(np.float64)
    ours = dihedrals(x.float().double(), torch.as_tensor(quartets)).numpy()
    gap = np.remainder(ours - expected + np.pi, 2 * np.pi) - np.pi
    assert np.abs(gap).max() < 1e-4


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_range_is_half_open(sign):
    """Trans quartets give +π, never −π; random ones stay in (−π, π]."""
    trans = torch.tensor([[[1.0, 0, 0], [0, 0, 0], [0, 0, 1], [-1.0, sign * 0.0, 1]]])
    assert float(dihedrals(trans.double(), torch.tensor([[0, 1, 2, 3]]))) == math.pi
    theta = dihedrals(random_positions(2000, 4, seed=8), torch.tensor([[0, 1, 2, 3]]))
    assert bool((theta > -math.pi).all() and (theta <= math.pi).all())


def test_dihedral_gradient_matches_finite_differences():
    x = random_positions(3, 6, seed=5).requires_grad_(True)
    idx = torch.tensor([[0, 1, 2, 3], [5, 4, 3, 2], [1, 3, 5, 0]])
    assert torch.autograd.gradcheck(lambda y: dihedrals(y, idx), (x,))
    (grad,) = torch.autograd.grad(dihedrals(x, idx).sum(), x)
    assert torch.isfinite(grad).all()


def test_phi_psi_and_states_of_alanine_dipeptide():
    top = peptide(["ACE", "ALA", "NME"])
    x = random_positions(500, top.n_atoms, seed=6)
    phi, psi = phi_psi(x, top)
    assert phi.shape == psi.shape == (500, 1)
    a, b = PhiInterval(top, 0, high=0.0), PhiInterval(top, 0, low=0.0, high=2.0)
    assert torch.equal(a(x), phi[:, 0] < 0)
    assert torch.equal(b(x), (phi[:, 0] > 0) & (phi[:, 0] < 2))
    assert a(x).dtype == torch.bool and 0 < int(b(x).sum()) < 500


def test_wrapping_interval_through_pi():
    top = peptide(["ACE", "ALA", "NME"])
    x = random_positions(300, top.n_atoms, seed=7)
    phi = phi_psi(x, top)[0][:, 0]
    state = PhiInterval(top, 0, low=2.5, high=-2.5)
    assert torch.equal(state(x), (phi > 2.5) | (phi < -2.5))


def test_phi_interval_checks_residue():
    with pytest.raises(ValueError, match=r"choose k in 0\.\.0"):
        PhiInterval(peptide(["ACE", "ALA", "NME"]), 1, high=0.0)
