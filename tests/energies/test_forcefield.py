"""TorchForceField: agreement with OpenMM's Reference platform, forces, dtypes, failures.

Energies must agree within 1e-6 relative (relative to max(|U|, 1 kJ/mol)) and forces
within 1e-4 of the largest reference force component, in float64, on MD-like frames of
every peptide card and on small random systems holding one force each.
"""

import math
import zlib

import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

import boltzgen as bg
from boltzgen.energies.forcefield import (
    TorchForceField,
    UnsupportedForceError,
    unsupported_forces,
)
from boltzgen.energies.openmm import OpenMMEnergy
from boltzgen.molecules import build_peptide, make_system

TEMPERATURE = 300.0
ENERGY_RTOL = 1e-6
FORCE_RTOL = 1e-4
PEPTIDE_CARDS = [
    "alanine_dipeptide_vacuum",
    "alanine_dipeptide_implicit",
    "alanine_tripeptide_implicit",
    "alanine_tetrapeptide_implicit",
    "alanine_hexapeptide_implicit",
]
KJ = unit.kilojoule_per_mole


def reference(system, x):
    """Energies [B] (kJ/mol) and forces [B, N, 3] (kJ/mol/nm) from OpenMM's Reference platform."""
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    if system.usesPeriodicBoundaryConditions():
        context.setPeriodicBoxVectors(*system.getDefaultPeriodicBoxVectors())
    energies, forces = [], []
    for row in np.asarray(x, dtype=np.float64):
        context.setPositions(row)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(KJ))
        forces.append(state.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer))
    return np.array(energies), np.array(forces)


def assert_agrees(system, x, energy_rtol=ENERGY_RTOL, force_rtol=FORCE_RTOL):
    """Compare TorchForceField (float64, CPU) with OpenMM Reference on frames ``x``; also
    check the analytic forces against autograd through the energy."""
    ff = TorchForceField.from_openmm(system, TEMPERATURE)
    x = torch.as_tensor(x, dtype=torch.float64)
    energies, forces = reference(system, x)
    potential, force = ff.potential_energy_and_forces(x)
    scale = np.maximum(np.abs(energies), 1.0)
    energy_error = np.max(np.abs(potential.numpy() - energies) / scale)
    force_error = np.max(np.abs(force.numpy() - forces)) / np.max(np.abs(forces))
    assert energy_error <= energy_rtol, f"energy differs by {energy_error:.2e} relative"
    assert force_error <= force_rtol, f"forces differ by {force_error:.2e} of the largest"
    grad_x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(ff.potential_energy(grad_x).sum(), grad_x)
    autograd_error = (-grad - force).abs().max() / force.abs().max()
    assert autograd_error <= 1e-10, f"analytic forces differ from autograd by {autograd_error:.1e}"


def langevin_frames(system, x0, n_frames, steps, seed):
    """``[n_frames, N, 3]``: snapshots of a short Langevin run (300 K, 1 fs) from ``x0``."""
    integrator = openmm.LangevinMiddleIntegrator(TEMPERATURE, 5.0, 0.001)
    integrator.setRandomNumberSeed(seed)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(np.asarray(x0))
    context.setVelocitiesToTemperature(TEMPERATURE, seed)
    frames = []
    for _ in range(n_frames):
        integrator.step(steps)
        state = context.getState(getPositions=True)
        frames.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    return np.array(frames)


def md_like_frames(system, x0, seed=0):
    """Three Gaussian perturbations (0.01 nm) of ``x0`` and three Langevin snapshots."""
    x0 = np.asarray(x0, dtype=np.float64)
    noise = np.random.default_rng(seed).normal(scale=0.01, size=(3, *x0.shape))
    return np.concatenate([x0 + noise, langevin_frames(system, x0, 3, 100, seed + 1)])


@pytest.mark.parametrize("card", PEPTIDE_CARDS)
def test_peptide_cards_agree_with_openmm(card):
    system = bg.load_system(card)
    assert_agrees(
        system.openmm_system, md_like_frames(system.openmm_system, system.initial_positions)
    )


def _dipeptide_system(implicit, **options):
    peptide = build_peptide("A")
    if not options:
        return make_system(peptide.topology, implicit=implicit), peptide.positions
    files = ["amber99sbildn.xml", f"implicit/{implicit}.xml"]
    return app.ForceField(*files).createSystem(peptide.topology, **options), peptide.positions


@pytest.mark.parametrize(
    ("implicit", "options"),
    [
        ("obc2", {}),
        ("gbn2", {}),
        ("obc2", {"implicitSolventKappa": 0.8 / unit.nanometer, "soluteDielectric": 2.0}),
        ("gbn2", {"implicitSolventKappa": 0.8 / unit.nanometer, "sasaMethod": None}),
        (
            "obc2",
            {"nonbondedMethod": app.CutoffNonPeriodic, "nonbondedCutoff": 0.6 * unit.nanometer},
        ),
        (
            "gbn2",
            {"nonbondedMethod": app.CutoffNonPeriodic, "nonbondedCutoff": 0.6 * unit.nanometer},
        ),
    ],
    ids=["obc2", "gbn2", "obc2-salt", "gbn2-salt-noSA", "obc2-cutoff", "gbn2-cutoff"],
)
def test_openmm_app_gb_forms_agree_with_openmm(implicit, options):
    system, positions = _dipeptide_system(implicit, **options)
    assert any(isinstance(f, openmm.CustomGBForce) for f in system.getForces())
    assert_agrees(system, md_like_frames(system, positions, seed=3))


# --- every supported force alone, random parameters -------------------------------------

N_RANDOM = 14
BOX = ((2.1, 0.0, 0.0), (0.0, 2.3, 0.0), (0.0, 0.0, 2.5))
TRICLINIC = ((2.4, 0.0, 0.0), (0.4, 2.3, 0.0), (-0.5, 0.6, 2.2))


def scattered(rng, n, low, high, min_distance):
    """``[n, 3]`` uniform points in [low, high]³, no two closer than ``min_distance`` (nm)."""
    points = []
    while len(points) < n:
        p = rng.uniform(low, high, 3)
        if all(np.linalg.norm(p - q) >= min_distance for q in points):
            points.append(p)
    return np.array(points)


def frames_of(rng, n_frames=3, low=0.0, high=1.4, min_distance=0.18):
    return np.stack([scattered(rng, N_RANDOM, low, high, min_distance) for _ in range(n_frames)])


def one_force_system(force, box=None):
    system = openmm.System()
    for _ in range(N_RANDOM):
        system.addParticle(12.0)
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in box))
    system.addForce(force)
    return system


def bonds(rng, periodic=False):
    force = openmm.HarmonicBondForce()
    for i, j in rng.choice(N_RANDOM, size=(10, 2), replace=True):
        if i != j:
            force.addBond(int(i), int(j), rng.uniform(0.1, 0.4), rng.uniform(100, 5e4))
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


def angles(rng):
    force = openmm.HarmonicAngleForce()
    for _ in range(10):
        i, j, k = (int(a) for a in rng.choice(N_RANDOM, 3, replace=False))
        force.addAngle(i, j, k, rng.uniform(1.0, 2.5), rng.uniform(50, 500))
    return force


def torsions(rng, periodic=False):
    force = openmm.PeriodicTorsionForce()
    for _ in range(12):
        i, j, k, m = (int(a) for a in rng.choice(N_RANDOM, 4, replace=False))
        force.addTorsion(
            i, j, k, m, int(rng.integers(1, 7)), rng.uniform(-np.pi, np.pi), rng.uniform(-5, 10)
        )
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


def nonbonded(rng, method, cutoff=0.9, switch=None, dispersion=True, exceptions_pbc=False):
    force = openmm.NonbondedForce()
    for _ in range(N_RANDOM):
        force.addParticle(rng.uniform(-0.8, 0.8), rng.uniform(0.15, 0.35), rng.uniform(0.1, 1.5))
    pairs = {
        tuple(sorted(int(a) for a in rng.choice(N_RANDOM, 2, replace=False))) for _ in range(12)
    }
    for n, (i, j) in enumerate(sorted(pairs)):
        if n % 3 == 0:
            force.addException(i, j, 0.0, 0.3, 0.0)  # an exclusion
        else:
            force.addException(
                i, j, rng.uniform(-0.4, 0.4), rng.uniform(0.15, 0.35), rng.uniform(0, 1)
            )
    force.setNonbondedMethod(method)
    force.setCutoffDistance(cutoff)
    force.setReactionFieldDielectric(rng.uniform(20, 80))
    force.setUseDispersionCorrection(dispersion)
    force.setExceptionsUsePeriodicBoundaryConditions(exceptions_pbc)
    if switch is not None:
        force.setUseSwitchingFunction(True)
        force.setSwitchingDistance(switch)
    return force


def gbsa(rng, method, cutoff=1.0):
    force = openmm.GBSAOBCForce()
    for _ in range(N_RANDOM):
        force.addParticle(rng.uniform(-0.8, 0.8), rng.uniform(0.11, 0.2), rng.uniform(0.6, 1.8))
    force.setSoluteDielectric(rng.uniform(1.0, 2.0))
    force.setSolventDielectric(rng.uniform(40.0, 80.0))
    force.setSurfaceAreaEnergy(rng.uniform(1.0, 3.0))
    force.setNonbondedMethod(method)
    force.setCutoffDistance(cutoff)
    return force


def custom_gb(rng, model, method=openmm.CustomGBForce.NoCutoff, cutoff=None):
    """openmm.app's OBC2 or GBn2 CustomGBForce with random parameters; large scale factors
    put atoms inside their neighbours' descreening spheres."""
    from openmm.app.internal.customgbforces import GBSAGBn2Force, GBSAOBC2Force

    kind = GBSAOBC2Force if model == "obc2" else GBSAGBn2Force
    force = kind(solventDielectric=rng.uniform(40, 80), SA="ACE", cutoff=cutoff, kappa=0.5)
    for _ in range(N_RANDOM):
        extra = [rng.uniform(0.3, 1.0), rng.uniform(0.2, 0.9), rng.uniform(0.1, 0.5)]
        params = [rng.uniform(-0.8, 0.8), rng.uniform(0.11, 0.19), rng.uniform(0.6, 2.2)]
        force.addParticle(params + (extra if model == "gbn2" else []))
    force.finalize()
    force.setNonbondedMethod(method)
    if cutoff is not None:
        force.setCutoffDistance(cutoff)
    return force


NB = openmm.NonbondedForce
GB = openmm.GBSAOBCForce
CGB = openmm.CustomGBForce
RANDOM_CASES = {
    "bonds": (lambda rng: bonds(rng), None),
    "bonds-periodic": (lambda rng: bonds(rng, periodic=True), BOX),
    "angles": (angles, None),
    "torsions": (lambda rng: torsions(rng), None),
    "torsions-periodic": (lambda rng: torsions(rng, periodic=True), TRICLINIC),
    "nonbonded-nocutoff": (lambda rng: nonbonded(rng, NB.NoCutoff), None),
    "nonbonded-cutoff-nonperiodic": (lambda rng: nonbonded(rng, NB.CutoffNonPeriodic), None),
    "nonbonded-cutoff-periodic": (lambda rng: nonbonded(rng, NB.CutoffPeriodic), BOX),
    "nonbonded-periodic-switch": (lambda rng: nonbonded(rng, NB.CutoffPeriodic, switch=0.7), BOX),
    "nonbonded-periodic-nodispersion": (
        lambda rng: nonbonded(rng, NB.CutoffPeriodic, dispersion=False),
        BOX,
    ),
    "nonbonded-nonperiodic-switch": (
        lambda rng: nonbonded(rng, NB.CutoffNonPeriodic, switch=0.6),
        None,
    ),
    "nonbonded-triclinic-exceptions-pbc": (
        lambda rng: nonbonded(rng, NB.CutoffPeriodic, switch=0.8, exceptions_pbc=True),
        TRICLINIC,
    ),
    "gbsa-nocutoff": (lambda rng: gbsa(rng, GB.NoCutoff), None),
    "gbsa-cutoff-nonperiodic": (lambda rng: gbsa(rng, GB.CutoffNonPeriodic, cutoff=0.8), None),
    "gbsa-cutoff-periodic": (lambda rng: gbsa(rng, GB.CutoffPeriodic), BOX),
    "customgb-obc2": (lambda rng: custom_gb(rng, "obc2"), None),
    "customgb-gbn2": (lambda rng: custom_gb(rng, "gbn2"), None),
    "customgb-obc2-periodic": (
        lambda rng: custom_gb(rng, "obc2", CGB.CutoffPeriodic, cutoff=1.0),
        BOX,
    ),
    "customgb-gbn2-nonperiodic": (
        lambda rng: custom_gb(rng, "gbn2", CGB.CutoffNonPeriodic, cutoff=0.8),
        None,
    ),
}


@pytest.mark.parametrize("case", list(RANDOM_CASES))
def test_single_force_with_random_parameters_agrees_with_openmm(case):
    make_force, box = RANDOM_CASES[case]
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    system = one_force_system(make_force(rng), box)
    # periodic cases reach outside the box so that minimum images matter
    x = (
        frames_of(rng, low=-0.8, high=2.6, min_distance=0.25)
        if box
        else frames_of(rng, min_distance=0.12)
    )
    assert_agrees(system, x)


def _inside_sphere_force(model):
    """A GB force whose small atoms (R = 0.11 nm) sit inside the descreening spheres of
    large ones (R = 0.19 nm, scale 2), and its offset and scaled radii ``[N]`` (nm)."""
    charges = np.random.default_rng(7).uniform(-0.8, 0.8, N_RANDOM)
    radius = np.where(np.arange(N_RANDOM) % 2 == 1, 0.11, 0.19)
    if model == "gbsa":
        force = openmm.GBSAOBCForce()
        for q, r in zip(charges, radius, strict=True):
            force.addParticle(q, r, 2.0)
        return force, radius - 0.009, 2.0 * (radius - 0.009)
    from openmm.app.internal.customgbforces import GBSAGBn2Force, GBSAOBC2Force

    force = GBSAOBC2Force(SA="ACE") if model == "obc2" else GBSAGBn2Force(SA="ACE")
    for q, r in zip(charges, radius, strict=True):
        force.addParticle([q, r, 2.0] + ([0.9, 0.5, 0.3] if model == "gbn2" else []))
    force.finalize()
    rows = np.array([force.getParticleParameters(i) for i in range(N_RANDOM)])
    return force, rows[:, 1], rows[:, 2]


@pytest.mark.parametrize("model", ["gbsa", "obc2", "gbn2"])
def test_gb_with_atoms_inside_descreening_spheres_agrees_with_openmm(model):
    force, rho, scaled = _inside_sphere_force(model)
    x = frames_of(np.random.default_rng(8), high=0.9, min_distance=0.12)
    d = np.linalg.norm(x[:, :, None] - x[:, None, :], axis=-1)
    inside = (rho[:, None] < scaled[None, :] - d) & (d > 0)
    assert inside.any(axis=(1, 2)).all(), "a frame has no atom inside another's sphere"
    assert_agrees(one_force_system(force), x)


# --- the Energy contract ------------------------------------------------------------------


@pytest.fixture(scope="module")
def implicit_dipeptide():
    return bg.load_system("alanine_dipeptide_implicit")


def test_reduced_units_and_contract_match_openmm_energy(implicit_dipeptide):
    system = implicit_dipeptide
    x = torch.as_tensor(md_like_frames(system.openmm_system, system.initial_positions)[:3])
    ff = TorchForceField.from_openmm(system.openmm_system, temperature=350.0)
    exact = OpenMMEnergy(system.openmm_system, temperature=350.0, n_workers=0, platform="Reference")
    u, f = ff.energy_and_force(x)
    u_ref, f_ref = exact.energy_and_force(x)
    k = unit.BOLTZMANN_CONSTANT_kB * unit.AVOGADRO_CONSTANT_NA * 350.0 * unit.kelvin
    assert ff.kT == pytest.approx(k.value_in_unit(KJ), rel=1e-12)
    assert torch.allclose(u, u_ref, rtol=1e-10, atol=0)
    assert torch.allclose(f, f_ref, rtol=0, atol=1e-10 * f_ref.abs().max().item())
    assert ff.energy(x).shape == (3,) and ff.force(x).shape == (3, 22, 3)
    assert ff.counter.energy == 3 and ff.counter.force == 6
    assert ff.at_temperature(700.0).energy(x) == pytest.approx(0.5 * u.numpy(), rel=1e-12)


def test_nonfinite_rows_and_overlaps_give_inf_and_zero_force(implicit_dipeptide):
    ff = TorchForceField.from_openmm(implicit_dipeptide.openmm_system, TEMPERATURE)
    x = implicit_dipeptide.initial_positions.repeat(4, 1, 1)
    x[1, 3, 0] = float("nan")
    x[2, 5] = x[2, 6]  # two atoms on top of each other
    u, f = ff.energy_and_force(x)
    assert (
        torch.isfinite(u[[0, 3]]).all() and torch.isinf(u[[1, 2]]).all() and (u[[1, 2]] > 0).all()
    )
    assert (f[[1, 2]] == 0).all() and torch.isfinite(f).all()
    assert ff.counter.nonfinite == 2
    assert torch.isinf(ff.energy(x[1:3])).all()


def test_chunks_and_batch_shapes_do_not_change_results(implicit_dipeptide):
    system = implicit_dipeptide.openmm_system
    x = torch.as_tensor(md_like_frames(system, implicit_dipeptide.initial_positions))
    whole = TorchForceField.from_openmm(system, TEMPERATURE, chunk_size=1000)
    chunked = TorchForceField.from_openmm(system, TEMPERATURE, chunk_size=4)
    u, f = whole.energy_and_force(x)
    u_chunked, f_chunked = chunked.energy_and_force(x)
    assert torch.allclose(u, u_chunked, rtol=1e-13, atol=0)
    assert torch.allclose(f, f_chunked, rtol=0, atol=1e-12 * f.abs().max().item())
    assert torch.allclose(whole.energy(x[2:3]), u[2:3], rtol=1e-13, atol=0)


def test_float32_agrees_with_float64_within_stated_bound(implicit_dipeptide):
    """float32: |Δu| ≤ 2e-5 max(|u|, 1) and |ΔF| ≤ 1e-4 of the largest force (reduced units)."""
    system = implicit_dipeptide.openmm_system
    x = torch.as_tensor(md_like_frames(system, implicit_dipeptide.initial_positions))
    u64, f64 = TorchForceField.from_openmm(system, TEMPERATURE).energy_and_force(x)
    single = TorchForceField.from_openmm(system, TEMPERATURE, dtype=torch.float32)
    u32, f32 = single.energy_and_force(x.float())
    assert u32.dtype == torch.float32 and f32.dtype == torch.float32
    assert ((u32.double() - u64).abs() <= 2e-5 * u64.abs().clamp(min=1.0)).all()
    assert (f32.double() - f64).abs().max() <= 1e-4 * f64.abs().max()


def test_energy_is_differentiable_to_second_order(implicit_dipeptide):
    ff = TorchForceField.from_openmm(implicit_dipeptide.openmm_system, TEMPERATURE)
    x = implicit_dipeptide.initial_positions[None].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(ff.energy(x).sum(), x, create_graph=True)
    direction = torch.randn_like(x, generator=torch.Generator().manual_seed(0))
    (hvp,) = torch.autograd.grad((grad * direction).sum(), x)
    step = 1e-6
    with torch.no_grad():
        plus = -ff.force(x + step * direction)
        minus = -ff.force(x - step * direction)
    assert torch.allclose(hvp, (plus - minus) / (2 * step), rtol=1e-4, atol=1e-4 * hvp.abs().max())


# --- what cannot be compiled --------------------------------------------------------------


def test_unsupported_forces_are_named_and_raise_a_value_error():
    system = bg.load_system("alanine_dipeptide_vacuum").openmm_system
    system.addForce(openmm.CustomCentroidBondForce(2, "distance(g1, g2)^2"))
    system.addForce(openmm.MonteCarloBarostat(1.0, 300.0))
    problems = unsupported_forces(system)
    assert [p.split(" ")[0] for p in problems] == ["CustomCentroidBondForce", "MonteCarloBarostat"]
    with pytest.raises(
        UnsupportedForceError, match=r"CustomCentroidBondForce.*\n.*MonteCarloBarostat"
    ):
        TorchForceField.from_openmm(system, TEMPERATURE)
    assert issubclass(UnsupportedForceError, ValueError)


def test_a_custom_force_using_an_undefined_name_is_refused_with_the_name():
    system = bg.load_system("alanine_dipeptide_vacuum").openmm_system
    system.addForce(openmm.CustomExternalForce("k*x^2"))
    (problem,) = unsupported_forces(system)
    assert problem.startswith("CustomExternalForce") and "undefined variable(s) k" in problem


@pytest.mark.parametrize("method", [NB.PME, NB.Ewald, NB.LJPME])
def test_lattice_sum_electrostatics_are_refused(method):
    rng = np.random.default_rng(0)
    system = one_force_system(nonbonded(rng, method), BOX)
    (problem,) = unsupported_forces(system)
    assert problem.startswith("NonbondedForce") and "nonbonded method" in problem


@pytest.mark.parametrize("implicit", ["hct", "gbn"])
def test_other_custom_gb_models_compile_from_their_expressions(implicit):
    system, positions = _dipeptide_system(implicit)
    assert unsupported_forces(system) == []
    assert_agrees(system, md_like_frames(system, positions, seed=5))


def test_supported_systems_have_no_problems_and_constraints_are_ignored():
    peptide = build_peptide("A")
    system = make_system(peptide.topology, implicit="obc2", constraints=app.HBonds)
    assert system.getNumConstraints() > 0 and unsupported_forces(system) == []
    assert_agrees(system, peptide.positions[None])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_float64_agrees_with_cpu(implicit_dipeptide):
    system = implicit_dipeptide.openmm_system
    x = torch.as_tensor(md_like_frames(system, implicit_dipeptide.initial_positions))
    u, f = TorchForceField.from_openmm(system, TEMPERATURE).energy_and_force(x)
    gpu = TorchForceField.from_openmm(system, TEMPERATURE, device="cuda")
    u_gpu, f_gpu = gpu.energy_and_force(x.cuda())
    assert torch.allclose(u_gpu.cpu(), u, rtol=1e-12, atol=0)
    assert math.isclose(
        (f_gpu.cpu() - f).abs().max().item(), 0.0, abs_tol=1e-9 * f.abs().max().item()
    )


# --- compiled kernels ---------------------------------------------------------------------


def _assert_compiled_matches_eager(system, x, dtype=torch.float64):
    eager = TorchForceField.from_openmm(system, TEMPERATURE, dtype=dtype)
    fused = TorchForceField.from_openmm(system, TEMPERATURE, dtype=dtype, compile=True)
    x = torch.as_tensor(x, dtype=dtype)
    u, f = eager.energy_and_force(x)
    u_fused, f_fused = fused.energy_and_force(x)
    assert torch.allclose(u_fused, u, rtol=1e-12, atol=0)
    assert (f_fused - f).abs().max() <= 1e-12 * f.abs().max()
    assert torch.allclose(fused.energy(x), u, rtol=1e-12, atol=0)


def test_compiled_kernels_match_eager_on_a_peptide(implicit_dipeptide):
    system = implicit_dipeptide.openmm_system
    _assert_compiled_matches_eager(
        system, md_like_frames(system, implicit_dipeptide.initial_positions)
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["nonbonded-triclinic-exceptions-pbc", "customgb-gbn2", "gbsa-cutoff-periodic"]
)
def test_compiled_kernels_match_eager_on_periodic_and_gbn2_forms(case):
    make_force, box = RANDOM_CASES[case]
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    system = one_force_system(make_force(rng), box)
    _assert_compiled_matches_eager(system, frames_of(rng, low=-0.8, high=2.6, min_distance=0.25))


# --- defaults: compiled where a compiler exists, float64 accumulation ---------------------


def test_default_compiles_only_large_calls(implicit_dipeptide, monkeypatch):
    from boltzgen.energies.forcefield import energy as energy_module

    monkeypatch.setattr(energy_module, "COMPILE_MIN_BATCH", 4)
    ff = TorchForceField.from_openmm(implicit_dipeptide.openmm_system, TEMPERATURE)
    assert ff.compile is None and ff.kernels.compile  # g++ is on this machine
    x = implicit_dipeptide.initial_positions.repeat(3, 1, 1)
    ff.energy_and_force(x)
    assert ff.kernels._compiled == {}, "a small call was compiled"
    assert ff._kernels(4) is ff.kernels


def test_a_failing_compiler_falls_back_to_eager_with_a_note(implicit_dipeptide, monkeypatch):
    def broken(kernel, **options):
        def fail(*args):
            raise RuntimeError("no compiler")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    system = implicit_dipeptide.openmm_system
    x = implicit_dipeptide.initial_positions[None]
    u_eager, f_eager = TorchForceField.from_openmm(
        system, TEMPERATURE, compile=False
    ).energy_and_force(x)
    ff = TorchForceField.from_openmm(system, TEMPERATURE, compile=True)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        u, f = ff.energy_and_force(x)
    assert not ff.kernels.compile
    assert torch.equal(u, u_eager) and torch.equal(f, f_eager)


def test_float32_with_float64_accumulation(implicit_dipeptide):
    system = implicit_dipeptide.openmm_system
    x = torch.as_tensor(md_like_frames(system, implicit_dipeptide.initial_positions))
    u64, f64 = TorchForceField.from_openmm(system, TEMPERATURE).energy_and_force(x)
    mixed = TorchForceField.from_openmm(
        system, TEMPERATURE, dtype=torch.float32, accumulate=torch.float64
    )
    u, f = mixed.energy_and_force(x.float())
    assert u.dtype == torch.float64 and f.dtype == torch.float32
    assert ((u - u64).abs() <= 2e-5 * u64.abs().clamp(min=1.0)).all()
    assert (f.double() - f64).abs().max() <= 1e-4 * f64.abs().max()
    with pytest.raises(ValueError, match="accumulate"):
        TorchForceField.from_openmm(system, TEMPERATURE, accumulate=torch.float16)
