"""Peptide backbone torsions: φ/ψ atom indices, dihedral angles in torch, φ-interval states.

For four atoms p0, p1, p2, p3 with bond vectors b1 = p1 − p0, b2 = p2 − p1, b3 = p3 − p2
the dihedral angle is

    θ = atan2( |b2| b1 · (b2 × b3),  (b1 × b2) · (b2 × b3) )   ∈ (−π, π]  (radians),

the atan2 form of Blondel & Karplus ("New formulation for derivatives of torsion angles
and improper torsion angles in molecular mechanics: elimination of singularities",
J. Comput. Chem. 17, 1132, 1996). Its sign is the IUPAC one (θ = 0 when p0 and p3
eclipse, as mdtraj and OpenMM compute it); it is smooth wherever three consecutive atoms
are not collinear.

The backbone torsions of residue i are φ_i = C(i−1)–N(i)–CA(i)–C(i) and
ψ_i = N(i)–CA(i)–C(i)–N(i+1). Alanine dipeptide (ACE–ALA–NME) has one pair; its
conventional states are A = {φ < 0} and B = {0 < φ < 2} (see ``METHODS.md``); a card
names them with the state kind ``phi``: ``{phi: 0, max: 0.0}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mdtraj
import numpy as np
import torch
from torch import Tensor

from boltzgen.observables.states import StateContext, interval_bounds, register_state_kind


def backbone_torsion_indices(topology: mdtraj.Topology) -> tuple[Tensor, Tensor]:
    """Atom indices of the φ and ψ torsions of every residue that has both.

    Row k of both outputs belongs to the same residue (the k-th one, in chain order,
    with a preceding C and a following N), so ``(φ_k, ψ_k)`` is a Ramachandran pair.
    Indices are found by mdtraj from atom and residue names alone.

    Args:
        topology: an ``mdtraj.Topology`` of a peptide (caps such as ACE/NME included).

    Returns:
        ``phi_idx: [K, 4]`` and ``psi_idx: [K, 4]`` int64 atom indices.

    Raises:
        ValueError: if no residue has both a φ and a ψ torsion.
    """
    frame = mdtraj.Trajectory(np.zeros((1, topology.n_atoms, 3), dtype=np.float32), topology)
    phi_idx, _ = mdtraj.compute_phi(frame, periodic=False)
    psi_idx, _ = mdtraj.compute_psi(frame, periodic=False)
    phi_by_residue = {topology.atom(int(q[1])).residue.index: q for q in phi_idx}
    psi_by_residue = {topology.atom(int(q[1])).residue.index: q for q in psi_idx}
    residues = sorted(phi_by_residue.keys() & psi_by_residue.keys())
    if not residues:
        raise ValueError(
            f"{topology}: no residue has both a phi and a psi torsion; backbone atoms must "
            "be named C, N, CA as in a PDB file (capped peptides: ACE ... NME)"
        )
    phi = torch.as_tensor(np.stack([phi_by_residue[r] for r in residues]), dtype=torch.int64)
    psi = torch.as_tensor(np.stack([psi_by_residue[r] for r in residues]), dtype=torch.int64)
    return phi, psi


def dihedrals(x: Tensor, indices: Tensor | np.ndarray) -> Tensor:
    """Dihedral angles θ ∈ (−π, π] (radians) of atom quartets, differentiable in ``x``.

    Args:
        x: ``[B, N, 3]`` positions (any length unit; nm for molecules).
        indices: ``[K, 4]`` atom indices, one quartet (p0, p1, p2, p3) per row.

    Returns:
        ``[B, K]`` float64 angles, with the sign convention of
        ``mdtraj.compute_dihedrals`` (see the module docstring for the formula).

    Example:
        >>> x = torch.tensor([[[1.0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 1, 1]]])
        >>> round(float(dihedrals(x, torch.tensor([[0, 1, 2, 3]]))), 6)  # π/2
        1.570796
    """
    if x.dim() != 3 or x.shape[-1] != 3:
        raise ValueError(f"x must have shape [B, N, 3], got {list(x.shape)}")
    idx = torch.as_tensor(indices, dtype=torch.int64, device=x.device)
    if idx.dim() != 2 or idx.shape[1] != 4:
        raise ValueError(f"indices must have shape [K, 4], got {list(idx.shape)}")
    p = x.to(torch.float64)[:, idx]  # [B, K, 4, 3]
    b1, b2, b3 = (p[:, :, i + 1] - p[:, :, i] for i in range(3))
    n12 = torch.linalg.cross(b1, b2)
    n23 = torch.linalg.cross(b2, b3)
    y = b2.norm(dim=-1) * (b1 * n23).sum(-1)
    theta = torch.atan2(y, (n12 * n23).sum(-1))
    return torch.where(theta == -math.pi, math.pi, theta)


def phi_psi(x: Tensor, topology: mdtraj.Topology) -> tuple[Tensor, Tensor]:
    """Backbone torsions of configurations: ``phi, psi: [B, K]`` float64 radians in (−π, π].

    Column k of both is residue k of :func:`backbone_torsion_indices`.

    Args:
        x: ``[B, N, 3]`` positions in nm, atoms ordered as in ``topology``.
        topology: the peptide's ``mdtraj.Topology``.
    """
    if x.dim() != 3 or x.shape[1] != topology.n_atoms:
        raise ValueError(
            f"x must have shape [B, {topology.n_atoms}, 3] for this topology, got {list(x.shape)}"
        )
    phi_idx, psi_idx = backbone_torsion_indices(topology)
    return dihedrals(x, phi_idx), dihedrals(x, psi_idx)


@dataclass(frozen=True)
class PhiInterval:
    """The state {low < φ_k < high} of a peptide, as a callable ``x: [B, N, 3] -> bool[B]``.

    ``low`` and ``high`` are radians in [−π, π] (infinite bounds mean "no bound"). If
    ``low > high`` the interval wraps through ±π: {φ_k > low or φ_k < high}.

    Attributes:
        topology: the peptide's ``mdtraj.Topology``.
        k: which backbone torsion pair (row of :func:`backbone_torsion_indices`); 0 is
            the only one of alanine dipeptide.
        low, high: open interval bounds in radians.

    Example (alanine dipeptide, ``METHODS.md``)::

        A = PhiInterval(topology, 0, high=0.0)            # φ < 0
        B = PhiInterval(topology, 0, low=0.0, high=2.0)   # 0 < φ < 2
        in_b = B(samples.x)                               # bool[n]
    """

    topology: mdtraj.Topology
    k: int = 0
    low: float = -math.inf
    high: float = math.inf
    atoms: Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if math.isnan(self.low) or math.isnan(self.high):
            raise ValueError(f"PhiInterval bounds must be numbers, got ({self.low}, {self.high})")
        phi_idx, _ = backbone_torsion_indices(self.topology)
        if not 0 <= self.k < len(phi_idx):
            raise ValueError(
                f"PhiInterval: k = {self.k} but the peptide has {len(phi_idx)} phi/psi "
                f"pairs; choose k in 0..{len(phi_idx) - 1}"
            )
        object.__setattr__(self, "atoms", phi_idx[self.k : self.k + 1])

    def __call__(self, x: Tensor) -> Tensor:
        """``bool[B]``: whether each configuration ``x: [B, N, 3]`` lies in the interval."""
        phi = dihedrals(x.detach(), self.atoms)[:, 0]
        above, below = phi > self.low, phi < self.high
        return above & below if self.low <= self.high else above | below


@register_state_kind("phi")
def phi_state(entry: Mapping[str, Any], context: StateContext) -> PhiInterval:
    """``{phi: k, min: a, max: b}``: a < φ_k < b (radians) of a molecule's backbone."""
    low, high = interval_bounds(entry, context)
    if context.topology is None:
        raise context.error("phi", "needs a molecule (energy kind openmm)")
    try:
        return PhiInterval(context.topology, int(entry["phi"]), low, high)
    except (ValueError, TypeError) as error:
        raise context.error("phi", str(error), entry["phi"]) from error
