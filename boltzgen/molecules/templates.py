"""Residue templates as internal coordinates, with amber99sbildn atom names.

A template has a backbone (atoms on the main chain, placed in chain order from the
backbone torsions φ, ψ, ω) and a Z-matrix for every other atom (placed afterwards from
three already placed atoms with a fixed bond length, angle and dihedral). Atom names and
their order follow OpenMM's `amber99sbildn.xml` residue templates.

Ideal values are those of Engh & Huber ("Accurate bond and angle parameters for X-ray
protein structure refinement", Acta Cryst. A47, 392 (1991)), with tetrahedral (109.5°)
or trigonal (120°) angles for hydrogens, C-H 0.109 nm, aromatic C-H 0.108 nm, N-H 0.101
nm and O-H 0.096 nm. Side chains start in a common rotamer (χ₁ = −60° unless noted), chosen so that
Ala₄-X-Ala₄ has no clash in the β, αR and αL basins.
Lengths are stored in nm and angles in radians; the tables below are written in nm and
degrees and converted once, in `_z`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np


@dataclass(frozen=True)
class BackboneAtom:
    """An atom on the main chain, placed from the three main-chain atoms before it.

    Attributes:
        name: atom name.
        element: element symbol.
        bond: length of the bond to the preceding main-chain atom, nm (unused for the
            chain's first atom).
        angle: bond angle at the preceding main-chain atom, radians (unused for the
            chain's first two atoms).
    """

    name: str
    element: str
    bond: float
    angle: float


@dataclass(frozen=True)
class ZAtom:
    """An atom D placed from atoms (A, B, C) = `refs`; D is bonded to C.

    A reference name may carry a prefix: "-C" is atom C of the previous residue, "+N"
    atom N of the next one.

    Attributes:
        name: atom name.
        element: element symbol.
        refs: (A, B, C) atom names.
        bond: |CD| in nm.
        angle: ∠BCD in radians.
        torsion: dihedral A-B-C-D in radians.
    """

    name: str
    element: str
    refs: tuple[str, str, str]
    bond: float
    angle: float
    torsion: float


@dataclass(frozen=True)
class ResidueTemplate:
    """A residue: its main-chain atoms, the Z-matrix of the rest and the atom order.

    Attributes:
        name: residue name (amber99sbildn).
        order: all atom names in the order they are written.
        backbone: main-chain atoms in chain order.
        zmatrix: the other atoms, in placement order.
        ring_bonds: bonds that close a ring (not implied by the Z-matrix).
    """

    name: str
    order: tuple[str, ...]
    backbone: tuple[BackboneAtom, ...]
    zmatrix: tuple[ZAtom, ...]
    ring_bonds: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        placed = [a.name for a in self.backbone] + [a.name for a in self.zmatrix]
        if sorted(placed) != sorted(self.order) or len(set(placed)) != len(placed):
            raise ValueError(
                f"template {self.name}: placed atoms {placed} do not match order {self.order}"
            )

    def elements(self) -> dict[str, str]:
        """Element symbol of each atom name."""
        return {a.name: a.element for a in (*self.backbone, *self.zmatrix)}

    def bonds(self) -> list[tuple[str, str]]:
        """Bonds inside the residue as name pairs: chain, Z-matrix and ring closures."""
        chain = [(a.name, b.name) for a, b in pairwise(self.backbone)]
        placed = [(a.refs[2], a.name) for a in self.zmatrix]
        return chain + placed + list(self.ring_bonds)


def _z(name: str, refs: str, bond: float, angle_deg: float, torsion_deg: float) -> ZAtom:
    """A Z-matrix entry; `refs` is "A B C", the bond in nm, the angles in degrees."""
    a, b, c = refs.split()
    element = name[0]
    return ZAtom(name, element, (a, b, c), bond, np.radians(angle_deg), np.radians(torsion_deg))


def _methyl(names: str, refs: str, bond: float = 0.109, start: float = 180.0) -> tuple[ZAtom, ...]:
    """Three staggered hydrogens on atom C of `refs`, at dihedrals start, start ± 120°."""
    return tuple(
        _z(h, refs, bond, 109.5, start + shift)
        for h, shift in zip(names.split(), (0.0, 120.0, -120.0), strict=True)
    )


def _methylene(names: str, refs: str) -> tuple[ZAtom, ...]:
    """Two hydrogens on atom C of `refs` = "partner parent C", at dihedrals ±120°."""
    first, second = names.split()
    return (_z(first, refs, 0.109, 109.5, 120.0), _z(second, refs, 0.109, 109.5, -120.0))


def _aromatic_h(name: str, refs: str) -> ZAtom:
    """A ring hydrogen in the ring plane, on atom C of `refs` = "next previous C"."""
    return _z(name, refs, 0.108, 120.0, 180.0)


_AMIDE_H = _z("H", "-C CA N", 0.101, 119.0, 180.0)
_CARBONYL_O = _z("O", "+N CA C", 0.1231, 120.1, 180.0)
_HA = _z("HA", "C N CA", 0.109, 109.5, 118.0)
_CB = _z("CB", "C N CA", 0.1530, 110.5, -122.6)
_BACKBONE = (
    BackboneAtom("N", "N", 0.1329, np.radians(116.2)),
    BackboneAtom("CA", "C", 0.1458, np.radians(121.7)),
    BackboneAtom("C", "C", 0.1525, np.radians(111.2)),
)


def _amino_acid(
    name: str,
    side_order: str,
    side: tuple[ZAtom, ...],
    ring_bonds: tuple[tuple[str, str], ...] = (),
) -> ResidueTemplate:
    """An amino acid: N H CA HA CB (side chain) C O, with the side chain after CB."""
    order = ("N", "H", "CA", "HA", "CB", *side_order.split(), "C", "O")
    zmatrix = (_AMIDE_H, _CARBONYL_O, _HA, _CB, *side)
    return ResidueTemplate(name, order, _BACKBONE, zmatrix, ring_bonds)


# The ring starts in the t80-like rotamer χ₁ = 180°, χ₂ = 60°: with χ₁ = −60° the ring of
# residue i meets the carbonyl O of residue i − 4 in an α-helix.
_PHENYL = (
    _z("CG", "N CA CB", 0.1502, 113.8, 180.0),
    _z("CD1", "CA CB CG", 0.1390, 120.0, 60.0),
    _z("CD2", "CA CB CG", 0.1390, 120.0, -120.0),
    _z("CE1", "CB CG CD1", 0.1390, 120.0, 180.0),
    _z("CE2", "CB CG CD2", 0.1390, 120.0, 180.0),
    _z("CZ", "CG CD1 CE1", 0.1390, 120.0, 0.0),
    _aromatic_h("HD1", "CE1 CG CD1"),
    _aromatic_h("HE1", "CZ CD1 CE1"),
    _aromatic_h("HE2", "CZ CD2 CE2"),
    _aromatic_h("HD2", "CE2 CG CD2"),
    *_methylene("HB2 HB3", "CG CA CB"),
)

ACE = ResidueTemplate(
    "ACE",
    ("HH31", "CH3", "HH32", "HH33", "C", "O"),
    (BackboneAtom("CH3", "C", 0.0, 0.0), BackboneAtom("C", "C", 0.1520, 0.0)),
    (_z("O", "+N CH3 C", 0.1231, 120.1, 180.0), *_methyl("HH31 HH32 HH33", "+N C CH3")),
)
NME = ResidueTemplate(
    "NME",
    ("N", "H", "CH3", "HH31", "HH32", "HH33"),
    (
        BackboneAtom("N", "N", 0.1329, np.radians(116.2)),
        BackboneAtom("CH3", "C", 0.1449, np.radians(121.9)),
    ),
    (_z("H", "-C CH3 N", 0.101, 119.0, 180.0), *_methyl("HH31 HH32 HH33", "-C N CH3")),
)
GLY = ResidueTemplate(
    "GLY",
    ("N", "H", "CA", "HA2", "HA3", "C", "O"),
    (
        BackboneAtom("N", "N", 0.1329, np.radians(116.2)),
        BackboneAtom("CA", "C", 0.1451, np.radians(120.6)),
        BackboneAtom("C", "C", 0.1516, np.radians(113.1)),
    ),
    (
        _AMIDE_H,
        _CARBONYL_O,
        _z("HA2", "C N CA", 0.109, 109.5, -120.0),
        _z("HA3", "C N CA", 0.109, 109.5, 120.0),
    ),
)
ALA = _amino_acid("ALA", "HB1 HB2 HB3", _methyl("HB1 HB2 HB3", "N CA CB"))
SER = _amino_acid(
    "SER",
    "HB2 HB3 OG HG",
    (
        _z("OG", "N CA CB", 0.1417, 111.1, -60.0),
        _z("HG", "CA CB OG", 0.096, 109.5, 180.0),
        *_methylene("HB2 HB3", "OG CA CB"),
    ),
)
CYS = _amino_acid(
    "CYS",
    "HB2 HB3 SG HG",
    (
        _z("SG", "N CA CB", 0.1808, 114.4, -60.0),
        _z("HG", "CA CB SG", 0.1336, 96.0, 180.0),
        *_methylene("HB2 HB3", "SG CA CB"),
    ),
)
THR = _amino_acid(
    "THR",
    "HB CG2 HG21 HG22 HG23 OG1 HG1",
    (
        _z("OG1", "N CA CB", 0.1433, 109.6, 60.0),
        _z("CG2", "N CA CB", 0.1521, 110.5, -60.0),
        _z("HB", "N CA CB", 0.109, 109.5, 180.0),
        _z("HG1", "CA CB OG1", 0.096, 109.5, 180.0),
        *_methyl("HG21 HG22 HG23", "CA CB CG2"),
    ),
)
VAL = _amino_acid(
    "VAL",
    "HB CG1 HG11 HG12 HG13 CG2 HG21 HG22 HG23",
    (
        _z("CG1", "N CA CB", 0.1521, 110.5, 180.0),
        _z("CG2", "N CA CB", 0.1521, 110.5, -60.0),
        _z("HB", "N CA CB", 0.109, 109.5, 60.0),
        *_methyl("HG11 HG12 HG13", "CA CB CG1"),
        *_methyl("HG21 HG22 HG23", "CA CB CG2"),
    ),
)
LEU = _amino_acid(
    "LEU",
    "HB2 HB3 CG HG CD1 HD11 HD12 HD13 CD2 HD21 HD22 HD23",
    (
        _z("CG", "N CA CB", 0.1530, 116.3, -60.0),
        _z("CD1", "CA CB CG", 0.1521, 110.7, 180.0),
        _z("CD2", "CA CB CG", 0.1521, 110.7, -60.0),
        _z("HG", "CA CB CG", 0.109, 109.5, 60.0),
        *_methylene("HB2 HB3", "CG CA CB"),
        *_methyl("HD11 HD12 HD13", "CB CG CD1"),
        *_methyl("HD21 HD22 HD23", "CB CG CD2"),
    ),
)
ILE = _amino_acid(
    "ILE",
    "HB CG2 HG21 HG22 HG23 CG1 HG12 HG13 CD1 HD11 HD12 HD13",
    (
        _z("CG1", "N CA CB", 0.1530, 110.4, -60.0),
        _z("CG2", "N CA CB", 0.1521, 110.5, 180.0),
        _z("HB", "N CA CB", 0.109, 109.5, 60.0),
        _z("CD1", "CA CB CG1", 0.1513, 113.8, 180.0),
        *_methyl("HG21 HG22 HG23", "CA CB CG2"),
        *_methylene("HG12 HG13", "CD1 CB CG1"),
        *_methyl("HD11 HD12 HD13", "CB CG1 CD1"),
    ),
)
MET = _amino_acid(
    "MET",
    "HB2 HB3 CG HG2 HG3 SD CE HE1 HE2 HE3",
    (
        _z("CG", "N CA CB", 0.1520, 114.1, -60.0),
        _z("SD", "CA CB CG", 0.1803, 112.7, 180.0),
        _z("CE", "CB CG SD", 0.1791, 100.9, 180.0),
        *_methylene("HB2 HB3", "CG CA CB"),
        *_methylene("HG2 HG3", "SD CB CG"),
        *_methyl("HE1 HE2 HE3", "CG SD CE"),
    ),
)
PHE = _amino_acid(
    "PHE",
    "HB2 HB3 CG CD1 HD1 CE1 HE1 CZ HZ CE2 HE2 CD2 HD2",
    (*_PHENYL, _aromatic_h("HZ", "CE2 CE1 CZ")),
    (("CE2", "CZ"),),
)
TYR = _amino_acid(
    "TYR",
    "HB2 HB3 CG CD1 HD1 CE1 HE1 CZ OH HH CE2 HE2 CD2 HD2",
    (
        *_PHENYL,
        _z("OH", "CE2 CE1 CZ", 0.1376, 120.0, 180.0),
        _z("HH", "CE1 CZ OH", 0.096, 109.5, 180.0),
    ),
    (("CE2", "CZ"),),
)
ASN = _amino_acid(
    "ASN",
    "HB2 HB3 CG OD1 ND2 HD21 HD22",
    (
        _z("CG", "N CA CB", 0.1516, 112.6, -60.0),
        _z("OD1", "CA CB CG", 0.1231, 120.8, -60.0),
        _z("ND2", "CA CB CG", 0.1328, 116.4, 120.0),
        _z("HD21", "CB CG ND2", 0.101, 120.0, 180.0),
        _z("HD22", "CB CG ND2", 0.101, 120.0, 0.0),
        *_methylene("HB2 HB3", "CG CA CB"),
    ),
)
ASP = _amino_acid(
    "ASP",
    "HB2 HB3 CG OD1 OD2",
    (
        _z("CG", "N CA CB", 0.1516, 112.6, -60.0),
        _z("OD1", "CA CB CG", 0.1249, 118.4, -60.0),
        _z("OD2", "CA CB CG", 0.1249, 118.4, 120.0),
        *_methylene("HB2 HB3", "CG CA CB"),
    ),
)
GLN = _amino_acid(
    "GLN",
    "HB2 HB3 CG HG2 HG3 CD OE1 NE2 HE21 HE22",
    (
        _z("CG", "N CA CB", 0.1520, 114.1, -60.0),
        _z("CD", "CA CB CG", 0.1516, 112.6, 180.0),
        _z("OE1", "CB CG CD", 0.1231, 120.8, -60.0),
        _z("NE2", "CB CG CD", 0.1328, 116.4, 120.0),
        _z("HE21", "CG CD NE2", 0.101, 120.0, 180.0),
        _z("HE22", "CG CD NE2", 0.101, 120.0, 0.0),
        *_methylene("HB2 HB3", "CG CA CB"),
        *_methylene("HG2 HG3", "CD CB CG"),
    ),
)
GLU = _amino_acid(
    "GLU",
    "HB2 HB3 CG HG2 HG3 CD OE1 OE2",
    (
        _z("CG", "N CA CB", 0.1520, 114.1, -60.0),
        _z("CD", "CA CB CG", 0.1516, 112.6, 180.0),
        _z("OE1", "CB CG CD", 0.1249, 118.4, -60.0),
        _z("OE2", "CB CG CD", 0.1249, 118.4, 120.0),
        *_methylene("HB2 HB3", "CG CA CB"),
        *_methylene("HG2 HG3", "CD CB CG"),
    ),
)
LYS = _amino_acid(
    "LYS",
    "HB2 HB3 CG HG2 HG3 CD HD2 HD3 CE HE2 HE3 NZ HZ1 HZ2 HZ3",
    (
        _z("CG", "N CA CB", 0.1520, 114.1, -60.0),
        _z("CD", "CA CB CG", 0.1520, 111.3, 180.0),
        _z("CE", "CB CG CD", 0.1520, 111.3, 180.0),
        _z("NZ", "CG CD CE", 0.1489, 111.9, 180.0),
        *_methylene("HB2 HB3", "CG CA CB"),
        *_methylene("HG2 HG3", "CD CB CG"),
        *_methylene("HD2 HD3", "CE CG CD"),
        *_methylene("HE2 HE3", "NZ CD CE"),
        *_methyl("HZ1 HZ2 HZ3", "CD CE NZ", bond=0.101),
    ),
)
ARG = _amino_acid(
    "ARG",
    "HB2 HB3 CG HG2 HG3 CD HD2 HD3 NE HE CZ NH1 HH11 HH12 NH2 HH21 HH22",
    (
        _z("CG", "N CA CB", 0.1520, 114.1, -60.0),
        _z("CD", "CA CB CG", 0.1520, 111.3, 180.0),
        _z("NE", "CB CG CD", 0.1460, 112.0, 180.0),
        _z("CZ", "CG CD NE", 0.1329, 124.2, 180.0),
        _z("HE", "CZ CD NE", 0.101, 118.0, 180.0),
        _z("NH1", "CD NE CZ", 0.1326, 120.0, 0.0),
        _z("NH2", "CD NE CZ", 0.1326, 120.0, 180.0),
        _z("HH11", "NE CZ NH1", 0.101, 120.0, 0.0),
        _z("HH12", "NE CZ NH1", 0.101, 120.0, 180.0),
        _z("HH21", "NE CZ NH2", 0.101, 120.0, 0.0),
        _z("HH22", "NE CZ NH2", 0.101, 120.0, 180.0),
        *_methylene("HB2 HB3", "CG CA CB"),
        *_methylene("HG2 HG3", "CD CB CG"),
        *_methylene("HD2 HD3", "NE CG CD"),
    ),
)

AMINO_ACIDS: dict[str, ResidueTemplate] = {
    t.name: t
    for t in (ALA, ARG, ASN, ASP, CYS, GLN, GLU, GLY, ILE, LEU, LYS, MET, PHE, SER, THR, TYR, VAL)
}
"""The amino acids the builder supports, by three-letter name."""

ONE_LETTER: dict[str, str] = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU",
    "G": "GLY", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE", "S": "SER",
    "T": "THR", "Y": "TYR", "V": "VAL",
}  # fmt: skip
"""One-letter code → three-letter name of each supported amino acid."""
