"""openmmtools' test systems as a peer suite for TorchForceField.

Every system (``openmmtools.testsystems``), and a few periodic ones rebuilt with a
reaction-field cutoff instead of PME, either

* compiles and agrees with OpenMM's Reference platform in float64 on perturbed
  configurations (energy within 1e-6 relative, forces within 1e-5 of the largest), or
* is refused, with every problem naming its force and a feature outside the supported
  set: lattice sums (PME, Ewald), virtual sites, and AMOEBA's polarisable forces.

Systems that take more than a few seconds (thousands of atoms: all pairs are evaluated)
are marked slow. docs/forcefield.md tables the results.
"""

import warnings

import numpy as np
import pytest
import torch
from openmm import app, unit
from openmm_reference import reference

from boltzgen.energies.forcefield import TorchForceField, unsupported_forces

testsystems = pytest.importorskip("openmmtools.testsystems")

KJ = unit.kilojoule_per_mole
ENERGY_RTOL = 1e-6
FORCE_RTOL = 1e-5
REFUSABLE = (
    "nonbonded method PME",
    "nonbonded method Ewald",
    "nonbonded method LJPME",
    "virtual sites",
    "AmoebaVdwForce",
    "AmoebaMultipoleForce",
    "AmoebaTorsionTorsionForce",
)
"""The only features a test system may be refused for."""

SLOW = {
    "AMOEBAProteinBox",
    "DHFRExplicit",
    "DNADodecamerExplicit",
    "GiantFlexibleDischargedWaterBox",
    "GiantFlexibleWaterBox",
    "HostGuestExplicit",
    "LysozymeImplicit",
    "SrcExplicit",
    "SrcImplicit",
    "SrcExplicitReactionField",
    "AlanineDipeptideExplicit-rf",
    "HostGuestExplicit-rf",
}
TOO_BIG = {"SrcExplicitReactionField": "56,627 atoms: 1.6e9 pairs, beyond an all-pairs kernel"}
"""Systems that compile but cannot be evaluated with all pairs on one machine."""

REACTION_FIELD = {
    "WaterBox-rf": ("WaterBox", {"nonbondedMethod": app.CutoffPeriodic}),
    "FlexibleWaterBox-rf": ("FlexibleWaterBox", {"nonbondedMethod": app.CutoffPeriodic}),
    "AlanineDipeptideExplicit-rf": (
        "AlanineDipeptideExplicit",
        {"nonbondedMethod": app.CutoffPeriodic},
    ),
    "HostGuestExplicit-rf": ("HostGuestExplicit", {"nonbondedMethod": app.CutoffPeriodic}),
}


def _names():
    classes = [
        name
        for name in dir(testsystems)
        if isinstance(getattr(testsystems, name), type)
        and issubclass(getattr(testsystems, name), testsystems.TestSystem)
        and getattr(testsystems, name) is not testsystems.TestSystem
    ]
    return sorted(classes) + sorted(REACTION_FIELD)


def _params():
    marks = {name: [pytest.mark.slow] for name in SLOW}
    return [pytest.param(name, marks=marks.get(name, [])) for name in _names()]


def build(name):
    base, options = REACTION_FIELD.get(name, (name, {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test_system = getattr(testsystems, base)(**options)
    return test_system.system, np.asarray(test_system.positions.value_in_unit(unit.nanometer))


@pytest.mark.parametrize("name", _params())
def test_test_system_compiles_exactly_or_is_refused_for_a_named_feature(name):
    system, x0 = build(name)
    problems = unsupported_forces(system)
    if problems:
        subjects = {type(force).__name__ for force in system.getForces()} | {"virtual sites"}
        for problem in problems:
            assert any(feature in problem for feature in REFUSABLE), f"refused: {problem}"
            assert problem.split(" (")[0] in subjects, f"names no force: {problem}"
        return
    if name in TOO_BIG:
        pytest.skip(f"compiles; {TOO_BIG[name]}")
    rng = np.random.default_rng(0)
    x = x0 + rng.normal(scale=0.003, size=(2, *x0.shape))
    energies, forces = reference(system, x)
    potential, force = TorchForceField.from_openmm(system, 300.0).potential_energy_and_forces(
        torch.as_tensor(x)
    )
    energy_error = np.max(np.abs(potential.numpy() - energies) / np.maximum(np.abs(energies), 1.0))
    force_error = np.abs(force.numpy() - forces).max() / max(np.abs(forces).max(), 1.0)
    assert energy_error <= ENERGY_RTOL, f"energy differs by {energy_error:.1e} relative"
    assert force_error <= FORCE_RTOL, f"forces differ by {force_error:.1e} of the largest"
