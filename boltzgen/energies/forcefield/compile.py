"""Reading an ``openmm.System`` into torch terms, or saying why it cannot be read.

Supported: HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce, NonbondedForce
(NoCutoff, CutoffNonPeriodic, CutoffPeriodic), GBSAOBCForce and CMAPTorsionForce by
hand-written or table-driven terms; CustomBondForce, CustomAngleForce,
CustomTorsionForce, CustomExternalForce, CustomCompoundBondForce, CustomNonbondedForce
and CustomGBForce from their expressions (:mod:`~boltzgen.energies.forcefield.language`;
openmm.app's OBC2 and GBn2 CustomGBForce forms keep their hand-written kernels).
CMMotionRemover is ignored (it changes velocities, not the energy). Constraints are
ignored: the energy of a configuration is defined whether or not it satisfies them.
Force groups are ignored: every force counts, as in ``Context.getState(getEnergy=True)``.

Anything else raises :class:`UnsupportedForceError`; :func:`unsupported_forces` lists
the problems without raising (each names the force and the feature), so that a caller
can fall back to OpenMM.
"""

from __future__ import annotations

from collections.abc import Callable

import openmm
from openmm import unit

from boltzgen.energies.forcefield import (
    bonded,
    cmap,
    custom,
    customgb,
    customnonbonded,
    gbsa,
    generalgb,
    nonbonded,
)
from boltzgen.energies.forcefield.geometry import Box, PairList
from boltzgen.energies.forcefield.language import ExpressionError
from boltzgen.energies.forcefield.terms import Term

IGNORED: tuple[type, ...] = (openmm.CMMotionRemover,)
"""Forces that do not contribute to the potential energy."""


def _reason(check: Callable[[openmm.Force], None]) -> Callable[[openmm.Force], str | None]:
    """A check that raises :class:`ExpressionError` as a reason (None if it passes)."""

    def reason(force: openmm.Force) -> str | None:
        try:
            check(force)
        except ExpressionError as error:
            return str(error)
        return None

    return reason


def _custom_gb_reason(force: openmm.CustomGBForce) -> str | None:
    if customgb.unsupported_reason(force) is None:
        return None
    return _reason(generalgb.check_general_gb)(force)


def _custom_nonbonded_reason(force: openmm.CustomNonbondedForce) -> str | None:
    if force.getNonbondedMethod() not in (0, 1, 2):
        return f"nonbonded method {force.getNonbondedMethod()} is not supported"
    return _reason(customnonbonded.check_custom_nonbonded)(force)


_REASONS: dict[type, Callable[[openmm.Force], str | None]] = {
    openmm.HarmonicBondForce: lambda force: None,
    openmm.HarmonicAngleForce: lambda force: None,
    openmm.PeriodicTorsionForce: lambda force: None,
    openmm.NonbondedForce: nonbonded.unsupported_reason,
    openmm.GBSAOBCForce: lambda force: None,
    openmm.CustomGBForce: _custom_gb_reason,
    openmm.CMAPTorsionForce: lambda force: None,
    openmm.CustomBondForce: _reason(custom.check_bonded),
    openmm.CustomAngleForce: _reason(custom.check_bonded),
    openmm.CustomTorsionForce: _reason(custom.check_bonded),
    openmm.CustomExternalForce: _reason(custom.check_external),
    openmm.CustomCompoundBondForce: _reason(custom.check_compound),
    openmm.CustomNonbondedForce: _custom_nonbonded_reason,
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
    if isinstance(force, openmm.CMAPTorsionForce):
        return cmap.cmap_torsions(force)
    if isinstance(
        force, (openmm.CustomBondForce, openmm.CustomAngleForce, openmm.CustomTorsionForce)
    ):
        return custom.bonded_expression(force)
    if isinstance(force, openmm.CustomExternalForce):
        return custom.external_expression(force)
    if isinstance(force, openmm.CustomCompoundBondForce):
        return custom.compound_expression(force)
    if isinstance(force, openmm.CustomNonbondedForce):
        return customnonbonded.custom_nonbonded(force, box)
    if isinstance(force, openmm.CustomGBForce) and customgb.unsupported_reason(force) is not None:
        return generalgb.general_gb(force)
    pairs = PairList.all_pairs(force.getNumParticles())
    if isinstance(force, openmm.GBSAOBCForce):
        return gbsa.gbsa_obc(force, pairs)
    return customgb.custom_gb(force, pairs)
