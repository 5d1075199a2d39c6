"""The molecular part of a system card: structure + force field → an OpenMM system.

A card's ``energy`` block for a molecule::

    energy:
      kind: openmm
      structure: structures/alanine_dipeptide.pdb   # relative to the card, or absolute
      # sequence: A                                 # or build Ace-(X)n-Nme with our builder
      forcefield: [amber99sbildn.xml, amber99_obc.xml]   # OpenMM's files or paths of your own
      nonbonded_method: NoCutoff      # NoCutoff | CutoffNonPeriodic | CutoffPeriodic | PME
      nonbonded_cutoff_nm: 1.0        # for the cutoff methods
      constraints: null               # null | HBonds | AllBonds | HAngles
      backend: torch                  # torch (batched TorchForceField; default where it
                                      # supports every force) | openmm (OpenMMEnergy)
      device: cpu                     # torch: cpu | cuda;  dtype: float64 | float32
      compile: false                  # torch: fuse kernels with torch.compile
      n_workers: 2                    # openmm: worker processes for batched energies
      platform: CPU

"Bring your own molecule": point ``structure`` at your PDB and ``forcefield`` at your
XML files (paths relative to the card are resolved).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mdtraj
import numpy as np
import openmm
from openmm import app, unit

from boltzgen.errors import ConfigError
from boltzgen.molecules.builder import build_peptide, minimize

NONBONDED = {
    "NoCutoff": app.NoCutoff,
    "CutoffNonPeriodic": app.CutoffNonPeriodic,
    "CutoffPeriodic": app.CutoffPeriodic,
    "PME": app.PME,
}
CONSTRAINTS = {None: None, "HBonds": app.HBonds, "AllBonds": app.AllBonds, "HAngles": app.HAngles}
FIELDS = {
    "kind",
    "structure",
    "sequence",
    "forcefield",
    "nonbonded_method",
    "nonbonded_cutoff_nm",
    "constraints",
    "n_workers",
    "platform",
    "threads_per_worker",
    "backend",
    "device",
    "dtype",
    "compile",
}


@dataclass
class Molecule:
    """What a molecular card builds: the OpenMM system, topology and positions (nm)."""

    openmm_system: openmm.System
    topology: app.Topology
    positions: np.ndarray

    @property
    def mdtraj_topology(self) -> mdtraj.Topology:
        return mdtraj.Topology.from_openmm(self.topology)


def _resolve(name: str, card_dir: Path) -> str:
    """A path relative to the card if that file exists, else the name as given."""
    local = card_dir / name
    return str(local) if local.exists() else name


def _structure(
    spec: Mapping[str, Any], card_dir: Path, source: Path
) -> tuple[app.Topology, np.ndarray]:
    if ("structure" in spec) == ("sequence" in spec):
        raise ConfigError(source, "energy", "needs exactly one of `structure` and `sequence`")
    if "sequence" in spec:
        try:
            peptide = build_peptide(str(spec["sequence"]))
        except ValueError as error:
            raise ConfigError(source, "energy.sequence", str(error)) from error
        return peptide.topology, peptide.positions
    path = card_dir / str(spec["structure"])
    if not path.exists():
        raise ConfigError(source, "energy.structure", "names no file", str(path))
    pdb = app.PDBFile(str(path))
    return pdb.topology, np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer))


def _create_system(
    spec: Mapping[str, Any], topology: app.Topology, card_dir: Path, source: Path
) -> openmm.System:
    files = spec.get("forcefield", ["amber99sbildn.xml"])
    if not isinstance(files, list) or not files:
        raise ConfigError(source, "energy.forcefield", "must be a list of force-field files", files)
    method = spec.get("nonbonded_method", "NoCutoff")
    if method not in NONBONDED:
        raise ConfigError(source, "energy.nonbonded_method", "is not known", method, NONBONDED)
    constraints = spec.get("constraints")
    if constraints not in CONSTRAINTS:
        raise ConfigError(
            source, "energy.constraints", "is not known", constraints, [str(c) for c in CONSTRAINTS]
        )
    kwargs: dict[str, Any] = {
        "nonbondedMethod": NONBONDED[method],
        "constraints": CONSTRAINTS[constraints],
    }
    if method != "NoCutoff":
        kwargs["nonbondedCutoff"] = float(spec.get("nonbonded_cutoff_nm", 1.0)) * unit.nanometer
    try:
        forcefield = app.ForceField(*(_resolve(f, card_dir) for f in files))
        return forcefield.createSystem(topology, **kwargs)
    except (ValueError, OSError) as error:
        raise ConfigError(
            source, "energy.forcefield", f"could not build the system: {error}"
        ) from error


def build_molecule(spec: Mapping[str, Any], card_dir: Path, source: Path) -> Molecule:
    """Build the molecule a card's ``energy`` block describes (a built sequence is minimised)."""
    unknown = set(spec) - FIELDS
    if unknown:
        raise ConfigError(
            source,
            f"energy.{sorted(unknown)[0]}",
            "is not a field of an openmm energy",
            choices=FIELDS,
        )
    topology, positions = _structure(spec, card_dir, source)
    system = _create_system(spec, topology, card_dir, source)
    if "sequence" in spec:
        positions = minimize(system, topology, positions)
    return Molecule(system, topology, positions)
