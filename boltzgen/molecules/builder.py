"""Capped peptides Ace-(X)n-Nme built from residue templates, and their OpenMM systems.

`build_peptide` places every atom with NeRF (`geometry.place_atom`) from the ideal
internal coordinates in `templates`, with the requested backbone torsions φ, ψ, ω;
`make_system` parametrises the result with an OpenMM force field; `minimize` relaxes it
while restraining φ/ψ. Lengths are in nm, angles in radians, energies in kJ/mol.

Regenerate the shipped structures with
``python -m boltzgen.molecules.builder --write systems/structures``.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mdtraj
import numpy as np
import openmm
from openmm import app, unit

from boltzgen.molecules.geometry import dihedral, place_atom, seed_frame
from boltzgen.molecules.templates import ACE, AMINO_ACIDS, NME, ONE_LETTER, ResidueTemplate

IMPLICIT_SOLVENTS: dict[str, str] = {
    "obc1": "amber99_obc.xml",
    "obc2": "implicit/obc2.xml",
    "gbn": "implicit/gbn.xml",
    "gbn2": "implicit/gbn2.xml",
    "hct": "implicit/hct.xml",
}
"""Implicit-solvent name → the OpenMM force-field file that adds it."""

PLATFORMS = ("Reference", "CPU")

Placed = dict[tuple[int, str], np.ndarray]
"""Placed atoms: (residue index, atom name) → [3] position in nm."""


@dataclass(frozen=True)
class Peptide:
    """A built peptide.

    Attributes:
        topology: OpenMM topology with residues ACE, the amino acids, NME, and all bonds.
        positions: [N, 3] atom positions, nm.
        sequence: three-letter names of the amino acids, caps excluded.
        phi, psi: [n] requested backbone torsions of the amino acids, radians.
        omega: [n + 1] requested peptide-bond torsions CA-C-N-CA, radians, from Ace-X₁
            to Xₙ-Nme.
    """

    topology: app.Topology
    positions: np.ndarray
    sequence: tuple[str, ...]
    phi: np.ndarray
    psi: np.ndarray
    omega: np.ndarray

    def to_mdtraj(self) -> mdtraj.Trajectory:
        """A one-frame mdtraj trajectory of the peptide."""
        return mdtraj.Trajectory(self.positions[None], mdtraj.Topology.from_openmm(self.topology))

    def write_pdb(self, path: str | Path) -> None:
        """Write the peptide to a PDB file (positions rounded to 0.0001 nm)."""
        write_pdb(self.topology, self.positions, path)


def write_pdb(topology: app.Topology, positions: np.ndarray, path: str | Path) -> None:
    """Write `positions` [N, 3] (nm) with `topology` to a PDB file."""
    with open(path, "w") as handle:
        app.PDBFile.writeFile(topology, positions * unit.nanometer, handle)


def _resolve_residue(code: str, position: int) -> ResidueTemplate:
    """The template for one residue code (one- or three-letter, any case)."""
    name = ONE_LETTER.get(code.upper(), code.upper()) if len(code) == 1 else code.upper()
    if name not in AMINO_ACIDS:
        supported = ", ".join(f"{n} ({c})" for c, n in sorted(ONE_LETTER.items()))
        caps = " (the Ace/Nme caps are added automatically)" if name in ("ACE", "NME") else ""
        raise ValueError(
            f"unsupported residue {code!r} at position {position}{caps}; supported: {supported}"
        )
    return AMINO_ACIDS[name]


def _per_residue(value: float | Sequence[float], n: int, name: str) -> np.ndarray:
    """Broadcast a torsion (radians) to [n], checking the length of a sequence."""
    array = np.asarray(value, dtype=float)
    if array.ndim == 0:
        return np.full(n, float(array))
    if array.shape != (n,):
        raise ValueError(f"{name} needs one value or {n} values (radians), got {array.shape}")
    return array


def _backbone(templates: list[ResidueTemplate], torsions: np.ndarray) -> Placed:
    """Place the main chain: {(residue index, name): [3] nm}.

    The chain's torsions are consumed in order ω₁, φ₁, ψ₁, ω₂, …, ψₙ, ωₙ₊₁, each the
    dihedral that ends at the atom being placed (CA, C, next N, …, Nme CH3).
    """
    chain = [(i, atom) for i, t in enumerate(templates) for atom in t.backbone]
    second, third = chain[1][1], chain[2][1]
    frame = seed_frame(second.bond, third.bond, third.angle)
    positions = [frame[0], frame[1], frame[2]]
    for (_, atom), torsion in zip(chain[3:], torsions, strict=True):
        positions.append(place_atom(*positions[-3:], atom.bond, atom.angle, torsion))
    return {(i, atom.name): x for (i, atom), x in zip(chain, positions, strict=True)}


def _lookup(positions: Placed, residue: int, ref: str) -> np.ndarray:
    """Position of reference `ref` ("N", "-C", "+N") seen from residue `residue`."""
    shift = {"-": -1, "+": 1}.get(ref[0], 0)
    return positions[(residue + shift, ref.lstrip("+-"))]


def _place_rest(templates: list[ResidueTemplate], positions: Placed) -> None:
    """Place every Z-matrix atom, residue by residue, into `positions` (in place)."""
    for i, template in enumerate(templates):
        for atom in template.zmatrix:
            a, b, c = (_lookup(positions, i, ref) for ref in atom.refs)
            positions[(i, atom.name)] = place_atom(a, b, c, atom.bond, atom.angle, atom.torsion)


def _topology(templates: list[ResidueTemplate]) -> app.Topology:
    """One chain with the residues, atoms in template order, and every covalent bond."""
    topology = app.Topology()
    chain = topology.addChain("A")
    atoms: list[dict[str, app.topology.Atom]] = []
    for number, template in enumerate(templates, start=1):
        residue = topology.addResidue(template.name, chain, id=str(number))
        elements = template.elements()
        atoms.append(
            {
                name: topology.addAtom(name, app.Element.getBySymbol(elements[name]), residue)
                for name in template.order
            }
        )
        for first, second in template.bonds():
            topology.addBond(atoms[-1][first], atoms[-1][second])
        if number > 1:
            topology.addBond(atoms[-2]["C"], atoms[-1]["N"])
    return topology


def build_peptide(
    sequence: str | Sequence[str],
    phi: float | Sequence[float] = -1.35,
    psi: float | Sequence[float] = 2.7,
    omega: float | Sequence[float] = np.pi,
) -> Peptide:
    """Build Ace-(X)n-Nme with ideal bond lengths and angles and the given torsions.

    Args:
        sequence: the amino acids without caps: a string of one-letter codes ("AAA") or
            a sequence of three- or one-letter codes (["ALA", "GLY"]).
        phi: φᵢ = C(i−1)-N-CA-C, radians; one value for all residues or n values.
            The default −1.35 (≈ −77°) with ψ = 2.7 (≈ 155°) is the β/PII basin.
        psi: ψᵢ = N-CA-C-N(i+1), radians; one value or n values.
        omega: ω = CA-C-N-CA of each peptide bond, radians; one value or n + 1 values
            (Ace-X₁, …, Xₙ-Nme); π is trans.

    Returns:
        The `Peptide` (12 + Σ residue atoms; Ace-Ala-Nme has 22 atoms).

    Raises:
        ValueError: an empty sequence, an unsupported residue (the message lists the
            supported ones), or torsion arrays of the wrong length.
    """
    codes = list(sequence)
    if not codes:
        raise ValueError("sequence is empty; give at least one amino acid, e.g. 'A'")
    residues = [_resolve_residue(code, k) for k, code in enumerate(codes, start=1)]
    n = len(residues)
    phis, psis = _per_residue(phi, n, "phi"), _per_residue(psi, n, "psi")
    omegas = _per_residue(omega, n + 1, "omega")
    torsions = np.append(np.stack([omegas[:-1], phis, psis], axis=1).ravel(), omegas[-1])
    templates = [ACE, *residues, NME]
    placed = _backbone(templates, torsions)
    _place_rest(templates, placed)
    order = [(i, name) for i, t in enumerate(templates) for name in t.order]
    return Peptide(
        topology=_topology(templates),
        positions=np.array([placed[key] for key in order]),
        sequence=tuple(t.name for t in residues),
        phi=phis,
        psi=psis,
        omega=omegas,
    )


def backbone_torsion_atoms(topology: app.Topology) -> tuple[np.ndarray, np.ndarray]:
    """Atom indices of the φ and ψ torsions of every residue that has N, CA and C.

    Returns:
        phi: [n, 4] indices C(i−1), N, CA, C; psi: [n, 4] indices N, CA, C, N(i+1). A
        residue whose previous (next) residue has no C (N) has no φ (ψ) entry.
    """
    residues = [{a.name: a.index for a in r.atoms()} for r in topology.residues()]
    phi, psi = [], []
    for i, res in enumerate(residues):
        if not {"N", "CA", "C"} <= res.keys():
            continue
        if i > 0 and "C" in residues[i - 1]:
            phi.append([residues[i - 1]["C"], res["N"], res["CA"], res["C"]])
        if i + 1 < len(residues) and "N" in residues[i + 1]:
            psi.append([res["N"], res["CA"], res["C"], residues[i + 1]["N"]])
    return np.array(phi, dtype=int).reshape(-1, 4), np.array(psi, dtype=int).reshape(-1, 4)


def make_system(
    topology: app.Topology,
    forcefield: Sequence[str] = ("amber99sbildn.xml",),
    implicit: str | None = None,
    nonbonded_method: object = app.NoCutoff,
    constraints: object | None = None,
) -> openmm.System:
    """Parametrise `topology` with OpenMM force-field files.

    Args:
        topology: the molecule (residue and atom names as in the force field).
        forcefield: OpenMM force-field XML files.
        implicit: None for vacuum, or an implicit solvent, one of `IMPLICIT_SOLVENTS`
            ("obc1" adds amber99_obc.xml; "obc2", "gbn", "gbn2", "hct" add
            implicit/<name>.xml).
        nonbonded_method: an `openmm.app` nonbonded method (NoCutoff by default).
        constraints: None, or app.HBonds / app.AllBonds / app.HAngles.

    Returns:
        The `openmm.System`.
    """
    files = list(forcefield)
    if implicit is not None:
        if implicit not in IMPLICIT_SOLVENTS:
            choices = ", ".join(sorted(IMPLICIT_SOLVENTS))
            raise ValueError(f"implicit must be None or one of {choices}, got {implicit!r}")
        files.append(IMPLICIT_SOLVENTS[implicit])
    return app.ForceField(*files).createSystem(
        topology, nonbondedMethod=nonbonded_method, constraints=constraints
    )


def _context(system: openmm.System, positions: np.ndarray, platform: str) -> openmm.Context:
    """A context on `platform` ("Reference" or "CPU") at `positions` [N, 3] nm."""
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}, got {platform!r}")
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions * unit.nanometer)
    return context


def potential_energy(
    system: openmm.System, positions: np.ndarray, platform: str = "Reference"
) -> float:
    """Potential energy of `positions` [N, 3] (nm) in kJ/mol."""
    state = _context(system, positions, platform).getState(getEnergy=True)
    return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def _torsion_restraints(
    topology: app.Topology, positions: np.ndarray, k: float
) -> openmm.CustomTorsionForce:
    """Harmonic restraints ½ k Δθ² (Δθ wrapped to [0, π]) on φ/ψ at their current values."""
    force = openmm.CustomTorsionForce(
        "0.5*k_torsion*dtheta^2; dtheta = min(d, 2*pi - d); "
        "d = abs(theta - theta0); pi = 3.141592653589793"
    )
    force.addGlobalParameter("k_torsion", k)
    force.addPerTorsionParameter("theta0")
    for atoms in np.concatenate(backbone_torsion_atoms(topology)):
        theta0 = dihedral(*positions[atoms])
        force.addTorsion(*(int(a) for a in atoms), [float(theta0)])
    return force


def minimize(
    system: openmm.System,
    topology: app.Topology,
    positions: np.ndarray,
    tolerance: float = 1.0,
    max_iterations: int = 0,
    restrain_dihedrals: bool = True,
    restraint_k: float = 5000.0,
    platform: str = "Reference",
) -> np.ndarray:
    """Local energy minimisation (L-BFGS, OpenMM's LocalEnergyMinimizer).

    With `restrain_dihedrals`, every backbone φ/ψ is held near its value in `positions`
    by a temporary restraint ½ k Δθ² added to a copy of `system` (the system passed in is
    not changed), so a built conformation keeps its torsions to within a few degrees.

    Args:
        system: the OpenMM system.
        topology: its topology (finds the φ/ψ atoms).
        positions: [N, 3] start positions, nm.
        tolerance: convergence tolerance on the force, kJ/(mol nm).
        max_iterations: iteration limit; 0 runs until converged.
        restrain_dihedrals: restrain φ/ψ during the minimisation.
        restraint_k: restraint force constant k, kJ/(mol rad²).
        platform: "Reference" (deterministic) or "CPU".

    Returns:
        [N, 3] minimised positions, nm.
    """
    if restrain_dihedrals:
        system = copy.deepcopy(system)
        system.addForce(_torsion_restraints(topology, positions, restraint_k))
    context = _context(system, positions, platform)
    openmm.LocalEnergyMinimizer.minimize(context, tolerance, max_iterations)
    state = context.getState(getPositions=True)
    return np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))


def alanine_peptide(
    n_ala: int,
    implicit: bool,
    phi: float = -1.35,
    psi: float = 2.7,
    relax: bool = True,
) -> tuple[app.Topology, np.ndarray, openmm.System]:
    """Ace-(Ala)n-Nme with amber99sbildn, in vacuum or OBC implicit solvent (amber99_obc).

    Args:
        n_ala: number of alanines (1 gives alanine dipeptide, 22 atoms).
        implicit: add amber99_obc.xml (GB/SA OBC) to the force field.
        phi, psi: backbone torsions of every alanine, radians.
        relax: minimise with φ/ψ restrained (`minimize`).

    Returns:
        (topology, positions [12 + 10 n, 3] nm, system).
    """
    peptide = build_peptide("A" * n_ala, phi=phi, psi=psi)
    system = make_system(peptide.topology, implicit="obc1" if implicit else None)
    positions = peptide.positions
    if relax:
        positions = minimize(system, peptide.topology, positions)
    return peptide.topology, positions, system


SHIPPED: dict[str, tuple[int, bool]] = {
    "alanine_dipeptide": (1, False),
    "alanine_tripeptide": (2, True),
    "alanine_tetrapeptide": (3, True),
    "alanine_hexapeptide": (5, True),
}
"""The structures in systems/structures: file stem → (number of alanines, implicit)."""


def main(argv: Sequence[str] | None = None) -> None:
    """Write the shipped alanine-peptide structures and print their energies."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    args.write.mkdir(parents=True, exist_ok=True)
    for stem, (n_ala, implicit) in SHIPPED.items():
        topology, positions, system = alanine_peptide(n_ala, implicit)
        built = build_peptide("A" * n_ala).positions
        path = args.write / f"{stem}.pdb"
        write_pdb(topology, positions, path)
        print(
            f"{path}: {topology.getNumAtoms()} atoms, "
            f"{'amber99sbildn + amber99_obc' if implicit else 'amber99sbildn (vacuum)'}, "
            f"U = {potential_energy(system, built):.2f} -> "
            f"{potential_energy(system, positions):.2f} kJ/mol"
        )


if __name__ == "__main__":
    main()
