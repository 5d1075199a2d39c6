"""Custom forces and CMAP compiled from their definitions, against OpenMM's Reference platform.

Each case builds a System holding one force with random parameters and compares
energies (1e-9 relative) and forces (1e-8 of the largest) on random configurations,
periodic cases reaching outside the box so that minimum images matter.
"""

import zlib

import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit
from openmm_reference import reference

from boltzgen.energies.forcefield import TorchForceField, unsupported_forces
from boltzgen.energies.forcefield.cmap import map_coefficients
from boltzgen.molecules import build_peptide

KJ = unit.kilojoule_per_mole
N = 14
BOX = ((2.1, 0.0, 0.0), (0.0, 2.3, 0.0), (0.0, 0.0, 2.5))
TRICLINIC = ((2.4, 0.0, 0.0), (0.4, 2.3, 0.0), (-0.5, 0.6, 2.2))


def assert_agrees(system, x, energy_rtol=1e-9, force_rtol=1e-8):
    assert unsupported_forces(system) == []
    energies, forces = reference(system, x)
    ff = TorchForceField.from_openmm(system, 300.0)
    u, f = ff.potential_energy_and_forces(torch.as_tensor(x))
    energy_error = np.max(np.abs(u.numpy() - energies) / np.maximum(np.abs(energies), 1.0))
    force_error = np.abs(f.numpy() - forces).max() / max(np.abs(forces).max(), 1.0)
    assert energy_error <= energy_rtol, f"energy differs by {energy_error:.1e} relative"
    assert force_error <= force_rtol, f"forces differ by {force_error:.1e} of the largest"


def system_of(force, n=N, box=None):
    system = openmm.System()
    for _ in range(n):
        system.addParticle(12.0)
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in box))
    system.addForce(force)
    return system


def scattered(rng, n=N, low=0.0, high=1.4, min_distance=0.2, frames=3):
    out = []
    for _ in range(frames):
        points = []
        while len(points) < n:
            p = rng.uniform(low, high, 3)
            if all(np.linalg.norm(p - q) >= min_distance for q in points):
                points.append(p)
        out.append(points)
    return np.array(out)


def custom_bonds(rng, periodic=False):
    force = openmm.CustomBondForce("k*(r-r0)^2 + c*exp(-r/w); w=0.3")
    for name in ("k", "r0"):
        force.addPerBondParameter(name)
    force.addGlobalParameter("c", 2.5)
    for _ in range(10):
        i, j = (int(a) for a in rng.choice(N, 2, replace=False))
        force.addBond(i, j, [rng.uniform(100, 1000), rng.uniform(0.1, 0.4)])
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


def custom_angles(rng):
    force = openmm.CustomAngleForce("0.5*k*(theta-theta0)^2 + u*cos(theta)^3")
    for name in ("k", "theta0"):
        force.addPerAngleParameter(name)
    force.addGlobalParameter("u", -1.5)
    for _ in range(10):
        i, j, k = (int(a) for a in rng.choice(N, 3, replace=False))
        force.addAngle(i, j, k, [rng.uniform(50, 500), rng.uniform(1.0, 2.5)])
    return force


def custom_torsions(rng, periodic=False):
    force = openmm.CustomTorsionForce("k*(1-cos(theta-t0)) + h*sin(2*theta)^2")
    for name in ("k", "t0", "h"):
        force.addPerTorsionParameter(name)
    for _ in range(12):
        i, j, k, m = (int(a) for a in rng.choice(N, 4, replace=False))
        force.addTorsion(i, j, k, m, [rng.uniform(1, 10), rng.uniform(-3, 3), rng.uniform(-2, 2)])
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


def custom_external(rng, periodic=False):
    if periodic:
        force = openmm.CustomExternalForce("k*periodicdistance(x, y, z, x0, y0, z0)^2")
    else:
        force = openmm.CustomExternalForce("k*((x-x0)^2+(y-y0)^2+(z-z0)^2) + 0.1*x*y*z")
    for name in ("k", "x0", "y0", "z0"):
        force.addPerParticleParameter(name)
    for i in range(N):
        force.addParticle(i, [rng.uniform(10, 100), *rng.uniform(0.0, 1.4, 3)])
    return force


def custom_compound(rng, periodic=False):
    force = openmm.CustomCompoundBondForce(
        4,
        "k1*(distance(p1,p2)-d0)^2 + k2*(angle(p1,p2,p3)-a0)^2 + k3*cos(dihedral(p1,p2,p3,p4))"
        " + 0.1*(x1-x4)^2 + f(y2) + 0.01*pointdistance(x1,y1,z1,x3,y3,z3)",
    )
    for name in ("k1", "d0", "k2", "a0", "k3"):
        force.addPerBondParameter(name)
    force.addTabulatedFunction("f", openmm.Continuous1DFunction([0.0, 1.0, 0.5, 2.0], 0.0, 1.5))
    for _ in range(8):
        atoms = [int(a) for a in rng.choice(N, 4, replace=False)]
        force.addBond(atoms, [100.0, 0.3, 20.0, 1.9, rng.uniform(-3, 3)])
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


def _lj_particles(force, rng):
    force.addPerParticleParameter("sigma")
    force.addPerParticleParameter("epsilon")
    for _ in range(N):
        force.addParticle([rng.uniform(0.15, 0.3), rng.uniform(0.2, 1.0)])


LJ = (
    "4*epsilon*((sigma/r)^12-(sigma/r)^6); "
    "sigma=0.5*(sigma1+sigma2); epsilon=sqrt(epsilon1*epsilon2)"
)


def custom_nonbonded(rng, method, switch=None, correction=False, groups=False, table=False):
    expression = LJ + (" + 0.3*g(r)" if table else "")
    force = openmm.CustomNonbondedForce(expression)
    _lj_particles(force, rng)
    if table:
        values = list(rng.normal(size=10) * np.exp(-np.arange(10)))
        force.addTabulatedFunction("g", openmm.Continuous1DFunction(values, 0.1, 1.0))
    for _ in range(6):
        i, j = (int(a) for a in rng.choice(N, 2, replace=False))
        if (min(i, j), max(i, j)) not in {
            tuple(sorted(force.getExclusionParticles(k))) for k in range(force.getNumExclusions())
        }:
            force.addExclusion(i, j)
    force.setNonbondedMethod(method)
    force.setCutoffDistance(0.9)
    if switch is not None:
        force.setUseSwitchingFunction(True)
        force.setSwitchingDistance(switch)
    force.setUseLongRangeCorrection(correction)
    if groups:
        force.addInteractionGroup(range(0, 8), range(5, N))
        force.addInteractionGroup([0, 1], [2, 3, 12])
    return force


def computed_value_nonbonded(rng):
    force = openmm.CustomNonbondedForce("eps*exp(-r/l); eps=sqrt(e1*e2); l=0.2")
    force.addPerParticleParameter("q")
    force.addComputedValue("e", "q^2+offset")
    force.addGlobalParameter("offset", 0.3)
    for _ in range(N):
        force.addParticle([rng.uniform(-1, 1)])
    return force


CNB = openmm.CustomNonbondedForce
CASES = {
    "bond": (custom_bonds, None),
    "bond-periodic": (lambda rng: custom_bonds(rng, True), BOX),
    "angle": (custom_angles, None),
    "torsion": (custom_torsions, None),
    "torsion-periodic": (lambda rng: custom_torsions(rng, True), TRICLINIC),
    "external": (custom_external, None),
    "external-periodic": (lambda rng: custom_external(rng, True), BOX),
    "compound": (custom_compound, None),
    "compound-periodic": (lambda rng: custom_compound(rng, True), TRICLINIC),
    "nonbonded-nocutoff": (lambda rng: custom_nonbonded(rng, CNB.NoCutoff), None),
    "nonbonded-cutoff": (lambda rng: custom_nonbonded(rng, CNB.CutoffNonPeriodic, 0.7), None),
    "nonbonded-periodic": (lambda rng: custom_nonbonded(rng, CNB.CutoffPeriodic), BOX),
    "nonbonded-periodic-correction": (
        lambda rng: custom_nonbonded(rng, CNB.CutoffPeriodic, correction=True),
        BOX,
    ),
    "nonbonded-triclinic-switch-correction": (
        lambda rng: custom_nonbonded(rng, CNB.CutoffPeriodic, 0.6, correction=True),
        TRICLINIC,
    ),
    "nonbonded-groups-correction": (
        lambda rng: custom_nonbonded(rng, CNB.CutoffPeriodic, correction=True, groups=True),
        BOX,
    ),
    "nonbonded-groups-nocutoff": (
        lambda rng: custom_nonbonded(rng, CNB.NoCutoff, groups=True),
        None,
    ),
    "nonbonded-tabulated": (
        lambda rng: custom_nonbonded(rng, CNB.CutoffNonPeriodic, table=True),
        None,
    ),
    "nonbonded-computed-value": (computed_value_nonbonded, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_custom_force_agrees_with_openmm(case):
    make_force, box = CASES[case]
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    system = system_of(make_force(rng), box=box)
    x = scattered(rng, low=-0.8, high=2.6, min_distance=0.25) if box else scattered(rng)
    # OpenMM integrates the long-range correction in single precision
    assert_agrees(system, x, energy_rtol=1e-7 if "correction" in case else 1e-9)


def test_long_range_correction_is_openmm_constant():
    """Two configurations differ by the pair energies only: the constant is OpenMM's."""
    rng = np.random.default_rng(5)
    force = custom_nonbonded(rng, CNB.CutoffPeriodic, 0.6, correction=True)
    system = system_of(force, box=BOX)
    x = scattered(rng, low=0.0, high=2.0, min_distance=0.3, frames=1)
    with_correction, _ = reference(system, x)
    force.setUseLongRangeCorrection(False)
    without, _ = reference(system, x)
    constant = (
        TorchForceField.from_openmm(
            system_of(
                custom_nonbonded(
                    np.random.default_rng(5), CNB.CutoffPeriodic, 0.6, correction=True
                ),
                box=BOX,
            ),
            300.0,
        )
        .terms[0]
        .constant
    )
    assert constant != 0.0
    assert constant == pytest.approx(with_correction[0] - without[0], rel=1e-6)


# --- CustomGBForce in general ---------------------------------------------------------


def _gb_system(implicit, **options):
    peptide = build_peptide("A")
    files = ["amber99sbildn.xml", f"implicit/{implicit}.xml"]
    return app.ForceField(*files).createSystem(peptide.topology, **options), peptide.positions


@pytest.mark.parametrize("implicit", ["hct", "obc1", "gbn"])
def test_openmm_app_gb_models_agree_with_openmm(implicit):
    system, positions = _gb_system(implicit, implicitSolventKappa=0.5 / unit.nanometer)
    rng = np.random.default_rng(1)
    x0 = np.asarray(positions)
    assert_agrees(system, x0 + rng.normal(scale=0.01, size=(3, *x0.shape)))


def toy_gb(rng, method, kind):
    """A CustomGBForce with globals, exclusions, an asymmetric pair value of type
    ``kind``, both pair energy types and a tabulated function."""
    force = openmm.CustomGBForce()
    force.addPerParticleParameter("q")
    force.addPerParticleParameter("s")
    force.addGlobalParameter("scale", 0.8)
    force.addTabulatedFunction("w", openmm.Discrete1DFunction([0.5, 1.5, 2.0]))
    force.addComputedValue("I", "exp(-r^2/(s1+2*s2+0.5))*w(s2*2)*(1+q2)", kind)
    force.addComputedValue("B", "1/(1+scale*I)+0.01*x^2", openmm.CustomGBForce.SingleParticle)
    force.addEnergyTerm("q*B^2 + 0.1*I", openmm.CustomGBForce.SingleParticle)
    force.addEnergyTerm("q1*q2/(r+B1*B2)", openmm.CustomGBForce.ParticlePair)
    force.addEnergyTerm("0.05*B1*B2*(I2+I1)/r", openmm.CustomGBForce.ParticlePairNoExclusions)
    for _ in range(N):
        force.addParticle([rng.uniform(-1, 1), float(rng.integers(0, 2))])
    excluded = {tuple(sorted(int(a) for a in rng.choice(N, 2, replace=False))) for _ in range(5)}
    for i, j in sorted(excluded):
        force.addExclusion(i, j)
    force.setNonbondedMethod(method)
    force.setCutoffDistance(0.9)
    return force


@pytest.mark.parametrize(
    "kind",
    [openmm.CustomGBForce.ParticlePair, openmm.CustomGBForce.ParticlePairNoExclusions],
    ids=["pair", "pair-no-exclusions"],
)
@pytest.mark.parametrize(
    ("method", "box"),
    [
        (openmm.CustomGBForce.NoCutoff, None),
        (openmm.CustomGBForce.CutoffNonPeriodic, None),
        (openmm.CustomGBForce.CutoffPeriodic, BOX),
    ],
    ids=["nocutoff", "cutoff", "periodic"],
)
def test_general_custom_gb_agrees_with_openmm(method, box, kind):
    rng = np.random.default_rng(11)
    system = system_of(toy_gb(rng, method, kind), box=box)
    x = scattered(rng, low=-0.8, high=2.6, min_distance=0.25) if box else scattered(rng)
    assert_agrees(system, x)


def test_a_pair_variable_in_a_single_particle_term_is_refused():
    force = openmm.CustomGBForce()
    force.addPerParticleParameter("q")
    force.addEnergyTerm("q1*r", openmm.CustomGBForce.SingleParticle)
    force.addParticle([1.0])
    (problem,) = unsupported_forces(system_of(force, n=1))
    assert problem.startswith("CustomGBForce") and "q1, r" in problem


# --- CMAP -----------------------------------------------------------------------------


def test_cmap_patches_interpolate_the_map_and_its_spline_derivatives():
    """The bicubic patch of each grid cell reproduces the map at its four corners."""
    size = 8
    rng = np.random.default_rng(4)
    energy = rng.normal(size=size * size)
    c = map_coefficients(size, energy).reshape(size, size, 4, 4)  # [t, s, k, l]
    for s in range(size):
        for t in range(size):
            patch = c[t, s]
            corners = {
                (0, 0): (s, t),
                (1, 0): (s + 1, t),
                (0, 1): (s, t + 1),
                (1, 1): (s + 1, t + 1),
            }
            for (u, v), (i, j) in corners.items():
                value = sum(patch[k, m] * u**k * v**m for k in range(4) for m in range(4))
                assert value == pytest.approx(energy[i % size + size * (j % size)], abs=1e-12)


def cmap(rng, periodic=False):
    force = openmm.CMAPTorsionForce()
    for size in (6, 9):
        force.addMap(size, list(rng.normal(scale=5.0, size=size * size)))
    for k in range(6):
        atoms = [int(a) for a in rng.choice(N, 5, replace=False)]
        first, second = atoms[:4], atoms[1:]
        force.addTorsion(k % 2, *first, *second)
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


@pytest.mark.parametrize("periodic", [False, True], ids=["plain", "periodic"])
def test_cmap_torsions_agree_with_openmm(periodic):
    rng = np.random.default_rng(21)
    system = system_of(cmap(rng, periodic), box=TRICLINIC if periodic else None)
    x = (
        scattered(rng, low=-0.8, high=2.6, min_distance=0.25, frames=6)
        if periodic
        else scattered(rng, frames=6)
    )
    assert_agrees(system, x)


@pytest.mark.parametrize(
    ("files", "sequence"),
    [
        (["amber19-all.xml"], "A"),
        (["amber19-all.xml"], "AAAAAA"),
        pytest.param(["charmm36_2024.xml"], "A", marks=pytest.mark.slow),  # reading it: ~100 s
    ],
    ids=["ff19SB-dipeptide", "ff19SB-hexapeptide", "charmm36-dipeptide"],
)
def test_cmap_force_fields_agree_with_openmm(files, sequence):
    peptide = build_peptide(sequence)
    system = app.ForceField(*files).createSystem(peptide.topology)
    assert any(isinstance(f, openmm.CMAPTorsionForce) for f in system.getForces())
    rng = np.random.default_rng(len(sequence))
    x0 = np.asarray(peptide.positions)
    # large perturbations so that the torsions visit many patches
    assert_agrees(system, x0 + rng.normal(scale=0.03, size=(4, *x0.shape)))


@pytest.mark.parametrize(
    "expression", ["2.5", "t(2)", "k*t(1)"], ids=["number", "table", "parameter-table"]
)
def test_energies_that_do_not_depend_on_positions_count_every_bond(expression):
    force = openmm.CustomCompoundBondForce(2, expression)
    force.addPerBondParameter("k")
    force.addTabulatedFunction("t", openmm.Discrete1DFunction([0.5, 1.5, 4.0]))
    for i in range(5):
        force.addBond([i, i + 1], [1.0 + i])
    rng = np.random.default_rng(2)
    assert_agrees(system_of(force, n=6), scattered(rng, n=6))
