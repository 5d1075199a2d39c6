"""Reading an ``openmm.System`` into torch terms, or saying why it cannot be read.

Supported: HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce, NonbondedForce
(NoCutoff, CutoffNonPeriodic, CutoffPeriodic), GBSAOBCForce, and the CustomGBForce forms
openmm.app creates for implicit/obc2.xml and implicit/gbn2.xml. CMMotionRemover is
ignored (it changes velocities, not the energy). Constraints are ignored: the energy
of a configuration is defined whether or not it satisfies them. Force groups are
ignored: every force counts, as in ``Context.getState(getEnergy=True)``.

Anything else raises :class:`UnsupportedForceError`; :func:`unsupported_forces` lists
the problems without raising, so that a caller can fall back to OpenMM.
"""

from __future__ import annotations

from collections.abc import Callable

import openmm
from openmm import unit

from boltzgen.energies.forcefield import bonded, customgb, gbsa, nonbonded
from boltzgen.energies.forcefield.geometry import Box, PairList
from boltzgen.energies.forcefield.terms import Term

IGNORED: tuple[type, ...] = (openmm.CMMotionRemover,)
"""Forces that do not contribute to the potential energy."""

_REASONS: dict[type, Callable[[openmm.Force], str | None]] = {
    openmm.HarmonicBondForce: lambda force: None,
    openmm.HarmonicAngleForce: lambda force: None,
    openmm.PeriodicTorsionForce: lambda force: None,
    openmm.NonbondedForce: nonbonded.unsupported_reason,
    openmm.GBSAOBCForce: lambda force: None,
    openmm.CustomGBForce: customgb.unsupported_reason,
}
SUPPORTED: tuple[str, ...] = tuple(kind.__name__ for kind in _REASONS)


class UnsupportedForceError(ValueError):
    """The System has forces (or features) that :class:`TorchForceField` cannot compile.

    Attributes:
        problems: one line per problem, each naming the force, e.g.
            ``"CustomExternalForce (force 5): not supported"``.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(
            "TorchForceField cannot compile this openmm.System:\n  "
            + "\n  ".join(self.problems)
            + f"\nSupported forces: {', '.join(SUPPORTED)} (CMMotionRemover is ignored). "
            "Use boltzgen.energies.OpenMMEnergy for this system."
        )


def _kind(force: openmm.Force) -> type | None:
    for kind in _REASONS:
        if isinstance(force, kind):
            return kind
    return None


def unsupported_forces(system: openmm.System) -> list[str]:
    """One line per force (or feature) of ``system`` that cannot be compiled; [] if none."""
    problems = []
    for index, force in enumerate(system.getForces()):
        name = f"{type(force).__name__} (force {index})"
        if isinstance(force, IGNORED):
            continue
        kind = _kind(force)
        reason = "not supported" if kind is None else _REASONS[kind](force)
        if reason is not None:
            problems.append(f"{name}: {reason}")
    sites = sum(system.isVirtualSite(i) for i in range(system.getNumParticles()))
    if sites:
        problems.append(f"virtual sites ({sites} particles): not supported")
    return problems


def default_box(system: openmm.System) -> Box | None:
    """The System's default periodic box if any force is periodic, else None."""
    if not system.usesPeriodicBoundaryConditions():
        return None
    vectors = system.getDefaultPeriodicBoxVectors()
    return Box(tuple(tuple(v.value_in_unit(unit.nanometer)) for v in vectors))


def compile_terms(system: openmm.System) -> tuple[list[Term], Box | None]:
    """The terms (float64, CPU) of every force of ``system`` and its box.

    Raises:
        UnsupportedForceError: listing every force that cannot be compiled.
    """
    problems = unsupported_forces(system)
    if problems:
        raise UnsupportedForceError(problems)
    box = default_box(system)
    terms: list[Term] = []
    for force in system.getForces():
        terms.extend(_compile(force, box))
    return terms, box


def _compile(force: openmm.Force, box: Box | None) -> list[Term]:
    if isinstance(force, IGNORED):
        return []
    if isinstance(force, openmm.HarmonicBondForce):
        return bonded.harmonic_bonds(force)
    if isinstance(force, openmm.HarmonicAngleForce):
        return bonded.harmonic_angles(force)
    if isinstance(force, openmm.PeriodicTorsionForce):
        return bonded.periodic_torsions(force)
    if isinstance(force, openmm.NonbondedForce):
        return nonbonded.nonbonded(force, box)
    pairs = PairList.all_pairs(force.getNumParticles())
    if isinstance(force, openmm.GBSAOBCForce):
        return gbsa.gbsa_obc(force, pairs)
    return customgb.custom_gb(force, pairs)
