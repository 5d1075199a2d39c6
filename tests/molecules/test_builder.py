"""Tests for the peptide builder: composition, bonds, geometry, chirality, force field."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import mdtraj
import numpy as np
import openmm
import pytest
from openmm import app

from boltzgen.molecules.builder import (
    SHIPPED,
    alanine_peptide,
    backbone_torsion_atoms,
    build_peptide,
    main,
    make_system,
    minimize,
    potential_energy,
)
from boltzgen.molecules.geometry import dihedral, place_atom
from boltzgen.molecules.templates import AMINO_ACIDS

STRUCTURES = Path(__file__).resolve().parents[2] / "systems" / "structures"
VILLIN = Path(app.__file__).parent / "data" / "test.pdb"  # an all-L protein, with hydrogens
COVALENT_RADIUS = {"H": 0.031, "C": 0.076, "N": 0.071, "O": 0.066, "S": 0.105}  # nm, Cordero
BASINS = {"beta": (-1.35, 2.7), "alpha_R": (-1.2, -0.7), "alpha_L": (1.0, 0.5)}

# Residue formulas inside a chain (amino acid minus water) at pH 7, and the two caps.
FORMULA = {
    "ALA": "C3 H5 N1 O1", "ARG": "C6 H13 N4 O1", "ASN": "C4 H6 N2 O2", "ASP": "C4 H4 N1 O3",
    "CYS": "C3 H5 N1 O1 S1", "GLN": "C5 H8 N2 O2", "GLU": "C5 H6 N1 O3", "GLY": "C2 H3 N1 O1",
    "ILE": "C6 H11 N1 O1", "LEU": "C6 H11 N1 O1", "LYS": "C6 H13 N2 O1",
    "MET": "C5 H9 N1 O1 S1", "PHE": "C9 H9 N1 O1", "SER": "C3 H5 N1 O2",
    "THR": "C4 H7 N1 O2", "TYR": "C9 H9 N1 O2", "VAL": "C5 H9 N1 O1",
    "ACE": "C2 H3 O1", "NME": "C1 H4 N1",
}  # fmt: skip
CHARGE = {"ASP": -1, "GLU": -1, "LYS": 1, "ARG": 1}


def _formula(names: list[str]) -> Counter:
    counts: Counter = Counter()
    for name in names:
        counts.update({part[0]: int(part[1:]) for part in FORMULA[name].split()})
    return counts


def _elements(topology: app.Topology) -> list[str]:
    return [atom.element.symbol for atom in topology.atoms()]


def _bond_set(topology: app.Topology) -> set[frozenset[int]]:
    return {frozenset((a.index, b.index)) for a, b in topology.bonds()}


def _distances(positions: np.ndarray) -> np.ndarray:
    return np.linalg.norm(positions[:, None] - positions[None], axis=-1)


def _bonds_from_distances(positions: np.ndarray, elements: list[str]) -> set[frozenset[int]]:
    """Pairs closer than 1.2 × the sum of covalent radii."""
    radii = np.array([COVALENT_RADIUS[e] for e in elements])
    close = _distances(positions) < 1.2 * (radii[:, None] + radii[None])
    return {frozenset((i, j)) for i, j in zip(*np.nonzero(np.triu(close, k=1)), strict=True)}


def _within_two_bonds(topology: app.Topology) -> np.ndarray:
    """[N, N] bool: atoms joined by at most two bonds (1-2 and 1-3 pairs, and i = j)."""
    n = topology.getNumAtoms()
    adjacency = np.eye(n, dtype=int)
    for a, b in topology.bonds():
        adjacency[a.index, b.index] = adjacency[b.index, a.index] = 1
    return (adjacency @ adjacency) > 0


def _angle_error(a: np.ndarray, b: float | np.ndarray) -> np.ndarray:
    return np.abs(np.angle(np.exp(1j * (np.asarray(a, dtype=float) - b))))


def _chirality_volume(x: np.ndarray, atoms: dict[str, int], names: str) -> float:
    """(B − A) · [(C − A) × (D − A)] for names "A B C D"."""
    a, b, c, d = (x[atoms[n]] for n in names.split())
    return float(np.dot(b - a, np.cross(c - a, d - a)))


def _residue_atoms(topology: app.Topology, name: str) -> list[dict[str, int]]:
    return [{a.name: a.index for a in r.atoms()} for r in topology.residues() if r.name == name]


@pytest.fixture(scope="module")
def villin() -> tuple[app.Topology, np.ndarray]:
    pdb = app.PDBFile(str(VILLIN))
    return pdb.topology, np.asarray(pdb.getPositions(asNumpy=True)._value)


# --- geometry ---------------------------------------------------------------------------


def test_place_atom_reproduces_bond_angle_and_dihedral():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b, c = rng.normal(size=(3, 3))
        bond, angle, torsion = 0.15, rng.uniform(0.5, 2.8), rng.uniform(-np.pi, np.pi)
        d = place_atom(a, b, c, bond, angle, torsion)
        u, v = b - c, d - c
        assert np.linalg.norm(v) == pytest.approx(bond, abs=1e-12)
        assert np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)) == pytest.approx(angle)
        assert _angle_error(dihedral(a, b, c, d), torsion) < 1e-10


def test_dihedral_matches_mdtraj():
    x = np.random.default_rng(1).normal(size=(8, 4, 3))
    topology = build_peptide("A").to_mdtraj().topology.subset([0, 1, 4, 6])
    ours = dihedral(x[:, 0], x[:, 1], x[:, 2], x[:, 3])
    theirs = mdtraj.compute_dihedrals(mdtraj.Trajectory(x, topology), [[0, 1, 2, 3]])[:, 0]
    assert np.max(_angle_error(ours, theirs)) < 1e-5


# --- composition and bonds --------------------------------------------------------------


@pytest.mark.parametrize(
    ("sequence", "n_atoms"), [("A", 22), ("AA", 32), ("AAA", 42), ("A" * 5, 62)]
)
def test_alanine_atom_count(sequence: str, n_atoms: int):
    peptide = build_peptide(sequence)
    assert peptide.topology.getNumAtoms() == n_atoms == 12 + 10 * len(sequence)
    assert peptide.positions.shape == (n_atoms, 3)
    assert [r.name for r in peptide.topology.residues()] == ["ACE"] + ["ALA"] * len(sequence) + [
        "NME"
    ]


@pytest.mark.parametrize("residue", sorted(AMINO_ACIDS))
def test_element_counts(residue: str):
    topology = build_peptide([residue]).topology
    assert Counter(_elements(topology)) == _formula(["ACE", residue, "NME"])


@pytest.mark.parametrize("residue", sorted(AMINO_ACIDS))
def test_bonds_match_geometry(residue: str):
    peptide = build_peptide([residue])
    elements = _elements(peptide.topology)
    assert _bond_set(peptide.topology) == _bonds_from_distances(peptide.positions, elements)
    degree = Counter(i for bond in _bond_set(peptide.topology) for i in bond)
    assert all(degree[i] == 1 for i, e in enumerate(elements) if e == "H")


@pytest.mark.parametrize("basin", sorted(BASINS))
@pytest.mark.parametrize("residue", sorted(AMINO_ACIDS))
def test_bonds_match_geometry_in_a_chain(residue: str, basin: str):
    """Ala₄-X-Ala₄ in each basin: bonds from distances are the topology's bonds."""
    peptide = build_peptide(["ALA"] * 4 + [residue] + ["ALA"] * 4, *BASINS[basin])
    elements = _elements(peptide.topology)
    assert _bond_set(peptide.topology) == _bonds_from_distances(peptide.positions, elements)


def test_bonds_match_openmm_standard_bonds(tmp_path: Path):
    """Read back through PDBFile, which bonds residues from OpenMM's residues.xml."""
    peptide = build_peptide(sorted(AMINO_ACIDS))
    peptide.write_pdb(tmp_path / "all.pdb")
    assert _bond_set(app.PDBFile(str(tmp_path / "all.pdb")).topology) == _bond_set(peptide.topology)


@pytest.mark.parametrize("basin", sorted(BASINS))
@pytest.mark.parametrize("residue", sorted(AMINO_ACIDS))
def test_no_clashes(residue: str, basin: str):
    """Ala₄-X-Ala₄: no pair closer than 0.09 nm; pairs three or more bonds apart beyond
    0.17 nm (the H···O distance of a short hydrogen bond)."""
    peptide = build_peptide(["ALA"] * 4 + [residue] + ["ALA"] * 4, *BASINS[basin])
    distances = _distances(peptide.positions) + np.eye(len(peptide.positions))
    assert distances.min() > 0.09
    assert distances[~_within_two_bonds(peptide.topology)].min() > 0.17


# --- torsions ---------------------------------------------------------------------------


@pytest.mark.parametrize("basin", sorted(BASINS))
@pytest.mark.parametrize("sequence", ["A", "AAA", "GSV"])
def test_built_torsions_match_request(sequence: str, basin: str):
    phi, psi = BASINS[basin]
    peptide = build_peptide(sequence, phi, psi)
    trajectory = peptide.to_mdtraj()
    (phi_atoms, phi_md), (psi_atoms, psi_md) = (
        mdtraj.compute_phi(trajectory),
        mdtraj.compute_psi(trajectory),
    )
    assert phi_md.shape == psi_md.shape == (1, len(sequence))
    ours = backbone_torsion_atoms(peptide.topology)
    assert np.array_equal(ours[0], phi_atoms) and np.array_equal(ours[1], psi_atoms)
    assert np.max(_angle_error(phi_md, phi)) < 1e-6
    assert np.max(_angle_error(psi_md, psi)) < 1e-6
    x = peptide.positions  # float64: exact up to round-off
    assert np.max(_angle_error(dihedral(*x[phi_atoms.T]), phi)) < 1e-9
    assert np.max(_angle_error(dihedral(*x[psi_atoms.T]), psi)) < 1e-9


def test_per_residue_torsions_and_peptide_bonds():
    phi, psi, omega = [-1.35, -1.2, 1.0], [2.7, -0.7, 0.5], [np.pi, np.pi, 0.0, np.pi]
    peptide = build_peptide(["ALA", "GLY", "SER"], phi, psi, omega)
    phi_atoms, psi_atoms = backbone_torsion_atoms(peptide.topology)
    x = peptide.positions
    assert np.max(_angle_error(dihedral(*x[phi_atoms.T]), np.array(phi))) < 1e-9
    assert np.max(_angle_error(dihedral(*x[psi_atoms.T]), np.array(psi))) < 1e-9
    residues = [{a.name: a.index for a in r.atoms()} for r in peptide.topology.residues()]
    alpha = [r.get("CA", r.get("CH3")) for r in residues]  # the caps' methyls stand in for CA
    omega_atoms = [
        [alpha[i], r["C"], residues[i + 1]["N"], alpha[i + 1]] for i, r in enumerate(residues[:-1])
    ]
    atoms = np.array(omega_atoms).T
    assert np.max(_angle_error(dihedral(*x[atoms]), np.array(omega))) < 1e-9


@pytest.mark.parametrize("basin", sorted(BASINS))
def test_restrained_minimisation_keeps_torsions(basin: str):
    phi, psi = BASINS[basin]
    peptide = build_peptide("AAA", phi, psi)
    system = make_system(peptide.topology, implicit="obc1")
    relaxed = minimize(system, peptide.topology, peptide.positions)
    trajectory = mdtraj.Trajectory(relaxed[None], peptide.to_mdtraj().topology)
    assert np.max(_angle_error(mdtraj.compute_phi(trajectory)[1], phi)) < np.radians(5)
    assert np.max(_angle_error(mdtraj.compute_psi(trajectory)[1], psi)) < np.radians(5)
    assert potential_energy(system, relaxed) < potential_energy(system, peptide.positions)


def test_minimize_leaves_the_system_unchanged():
    peptide = build_peptide("A")
    system = make_system(peptide.topology)
    n_forces = system.getNumForces()
    minimize(system, peptide.topology, peptide.positions, max_iterations=10)
    assert system.getNumForces() == n_forces


# --- chirality --------------------------------------------------------------------------


def test_alpha_carbons_are_l(villin: tuple[app.Topology, np.ndarray]):
    """The CA chirality volume of every non-glycine residue has villin's (all-L) sign."""
    names = "CA N C CB"
    reference = [
        np.sign(_chirality_volume(villin[1], atoms, names))
        for atoms in (
            {a.name: a.index for a in r.atoms()} for r in villin[0].residues() if r.name != "GLY"
        )
        if "CB" in atoms
    ]
    assert len(reference) > 20 and len(set(reference)) == 1
    peptide = build_peptide(sorted(set(AMINO_ACIDS) - {"GLY"}))
    ours = [
        np.sign(_chirality_volume(peptide.positions, atoms, names))
        for atoms in ({a.name: a.index for a in r.atoms()} for r in peptide.topology.residues())
        if "CB" in atoms
    ]
    assert len(ours) == len(AMINO_ACIDS) - 1 and set(ours) == set(reference)


def test_alanine_improper_sign_is_l(villin: tuple[app.Topology, np.ndarray]):
    """Improper N-CA-C-CB of alanine has the sign it has in villin's alanines (≈ +34°)."""
    names = ("N", "CA", "C", "CB")
    expected = {
        np.sign(dihedral(*villin[1][[ref[n] for n in names]]))
        for ref in _residue_atoms(villin[0], "ALA")
    }
    assert len(expected) == 1
    peptide = build_peptide("AAA")
    ours = {
        np.sign(dihedral(*peptide.positions[[ala[n] for n in names]]))
        for ala in _residue_atoms(peptide.topology, "ALA")
    }
    assert ours == expected


def test_threonine_beta_carbon_matches_villin(villin: tuple[app.Topology, np.ndarray]):
    names = "CB OG1 CG2 CA"
    (ref,) = _residue_atoms(villin[0], "THR")
    (thr,) = _residue_atoms(build_peptide("T").topology, "THR")
    assert np.sign(_chirality_volume(build_peptide("T").positions, thr, names)) == np.sign(
        _chirality_volume(villin[1], ref, names)
    )


# --- force field ------------------------------------------------------------------------


@pytest.mark.parametrize("residue", sorted(AMINO_ACIDS))
def test_names_match_amber99sbildn_templates(residue: str):
    topology = build_peptide([residue]).topology
    templates = app.ForceField("amber99sbildn.xml").getMatchingTemplates(topology)
    for res, template in zip(topology.residues(), templates, strict=True):
        assert template.name == res.name
        assert sorted(a.name for a in template.atoms) == sorted(a.name for a in res.atoms())


@pytest.mark.parametrize("implicit", [None, "obc1"])
@pytest.mark.parametrize("residue", sorted(AMINO_ACIDS))
def test_create_system_and_minimise(residue: str, implicit: str | None):
    peptide = build_peptide([residue])
    system = make_system(peptide.topology, implicit=implicit)
    assert system.getNumParticles() == peptide.topology.getNumAtoms()
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    charge = sum(
        nonbonded.getParticleParameters(i)[0]._value for i in range(len(peptide.positions))
    )
    assert charge == pytest.approx(CHARGE.get(residue, 0), abs=1e-4)
    before = potential_energy(system, peptide.positions)
    after = potential_energy(system, minimize(system, peptide.topology, peptide.positions))
    assert np.isfinite(before) and np.isfinite(after) and after < before


@pytest.mark.parametrize(
    ("implicit", "force"),
    [("obc1", "GBSAOBCForce"), ("obc2", "CustomGBForce"), ("gbn2", "CustomGBForce")],
)
def test_implicit_solvent_adds_its_force(implicit: str, force: str):
    peptide = build_peptide("A")
    assert force not in {type(f).__name__ for f in make_system(peptide.topology).getForces()}
    system = make_system(peptide.topology, implicit=implicit)
    assert force in {type(f).__name__ for f in system.getForces()}
    assert np.isfinite(potential_energy(system, peptide.positions))


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("sequence", ["P", ["ALA", "PRO"], ["HIS"], "AX", ["ACE", "ALA"]])
def test_unsupported_residue_lists_supported_ones(sequence: str | list[str]):
    with pytest.raises(ValueError, match=r"unsupported residue .*supported: ALA \(A\)"):
        build_peptide(sequence)


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="phi needs one value or 2 values"):
        build_peptide("AA", phi=[-1.0, -1.0, -1.0])
    with pytest.raises(ValueError, match="omega needs one value or 3 values"):
        build_peptide("AA", omega=[np.pi, np.pi])
    with pytest.raises(ValueError, match="sequence is empty"):
        build_peptide("")
    with pytest.raises(ValueError, match=r"implicit must be None or one of .*obc1"):
        make_system(build_peptide("A").topology, implicit="water")


# --- shipped structures -----------------------------------------------------------------


@pytest.mark.parametrize("stem", sorted(SHIPPED))
def test_shipped_structure(stem: str):
    n_ala, implicit = SHIPPED[stem]
    pdb = app.PDBFile(str(STRUCTURES / f"{stem}.pdb"))
    positions = np.asarray(pdb.getPositions(asNumpy=True)._value)
    assert pdb.topology.getNumAtoms() == 12 + 10 * n_ala
    system = make_system(pdb.topology, implicit="obc1" if implicit else None)
    built = build_peptide("A" * n_ala)
    assert potential_energy(system, positions) < potential_energy(system, built.positions)
    trajectory = mdtraj.Trajectory(positions[None], mdtraj.Topology.from_openmm(pdb.topology))
    assert np.max(_angle_error(mdtraj.compute_phi(trajectory)[1], -1.35)) < np.radians(5)
    assert np.max(_angle_error(mdtraj.compute_psi(trajectory)[1], 2.7)) < np.radians(5)


def test_shipped_structures_are_reproducible(tmp_path: Path):
    main(["--write", str(tmp_path)])
    for stem in SHIPPED:
        fresh = app.PDBFile(str(tmp_path / f"{stem}.pdb")).getPositions(asNumpy=True)._value
        shipped = app.PDBFile(str(STRUCTURES / f"{stem}.pdb")).getPositions(asNumpy=True)._value
        assert np.max(np.abs(np.asarray(fresh) - np.asarray(shipped))) < 1e-3


def test_alanine_peptide_convenience():
    topology, positions, system = alanine_peptide(2, implicit=True)
    assert positions.shape == (32, 3) and system.getNumParticles() == topology.getNumAtoms() == 32
    assert any(isinstance(f, openmm.GBSAOBCForce) for f in system.getForces())
