"""Cartesian placement from internal coordinates: the NeRF algorithm and dihedral angles.

NeRF (natural extension reference frame) places an atom D from three placed atoms A, B, C
given the bond length |CD|, the bond angle ∠BCD and the dihedral A-B-C-D, in a local
frame built on B→C (Parsons et al., "Practical conversion from torsion space to Cartesian
space for in silico protein synthesis", J. Comput. Chem. 26, 1063 (2005)).

Lengths are in nm, angles in radians; dihedrals follow the IUPAC sign convention (the one
mdtraj and OpenMM use): positive when, looking along B→C, the bond C-D is turned clockwise
from A-B.
"""

from __future__ import annotations

import numpy as np


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def place_atom(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, torsion: float
) -> np.ndarray:
    """Position of D with |CD| = `bond` (nm), ∠BCD = `angle` and dihedral ABCD = `torsion`.

    In the frame e₁ = (C − B)/|C − B|, e₃ = (B − A) × e₁ / |…|, e₂ = e₃ × e₁ the atom sits at
    D = C + r (−cos θ e₁ + sin θ cos φ e₂ + sin θ sin φ e₃).

    Args:
        a, b, c: [3] placed atoms, nm; A, B, C must not be collinear.
        bond: |CD| in nm.
        angle: ∠BCD in radians, in (0, π).
        torsion: dihedral A-B-C-D in radians.

    Returns:
        [3] position of D, nm.

    Example:
        >>> a, b, c = np.eye(3)
        >>> d = place_atom(a, b, c, 0.15, 2.0, 1.0)
        >>> bool(abs(dihedral(a, b, c, d) - 1.0) < 1e-12)
        True
    """
    e1 = _unit(c - b)
    e3 = _unit(np.cross(b - a, e1))
    e2 = np.cross(e3, e1)
    local = bond * np.array(
        [-np.cos(angle), np.sin(angle) * np.cos(torsion), np.sin(angle) * np.sin(torsion)]
    )
    return c + local[0] * e1 + local[1] * e2 + local[2] * e3


def seed_frame(bond_ab: float, bond_bc: float, angle_abc: float) -> np.ndarray:
    """The first three atoms of a chain: A at the origin, B on +x, C in the xy plane.

    Args:
        bond_ab: |AB| in nm.
        bond_bc: |BC| in nm.
        angle_abc: ∠ABC in radians.

    Returns:
        [3, 3] positions of A, B, C in nm.
    """
    a = np.zeros(3)
    b = np.array([bond_ab, 0.0, 0.0])
    c = b + bond_bc * np.array([-np.cos(angle_abc), np.sin(angle_abc), 0.0])
    return np.stack([a, b, c])


def dihedral(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Dihedral angle A-B-C-D in radians, in (−π, π], IUPAC sign convention.

    Args:
        a, b, c, d: [..., 3] positions (any length unit); leading axes broadcast.

    Returns:
        [...] dihedral angles in radians.
    """
    b0, b1, b2 = b - a, c - b, d - c
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    y = np.linalg.norm(b1, axis=-1) * np.sum(b0 * n2, axis=-1)
    return np.arctan2(y, np.sum(n1 * n2, axis=-1))
