"""The MD baseline: equipartition on a harmonic system (in space and in the plane), resume,
mass repartitioning."""

import math

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from boltzgen.energies.units import kt_kj_per_mol
from boltzgen.metrics import integrated_time
from boltzgen.samplers.md import (
    MDConfig,
    MolecularDynamics,
    planar_langevin_integrator,
    repartition_hydrogen_mass,
)


def harmonic_system(n: int, k: float = 500.0, mass: float = 12.0) -> openmm.System:
    """n independent 3-D harmonic oscillators U = ½k|r|² (kJ/mol, nm)."""
    system = openmm.System()
    force = openmm.CustomExternalForce("0.5*k*(x^2+y^2+z^2)")
    force.addGlobalParameter("k", k)
    for i in range(n):
        system.addParticle(mass)
        force.addParticle(i, [])
    system.addForce(force)
    return system


@pytest.mark.parametrize("temperature", [150.0, 300.0])
def test_md_on_harmonic_oscillators_obeys_equipartition(temperature):
    """⟨u⟩ = 3n/2 within 4 standard errors (τ_int-corrected)."""
    n = 8
    md = MolecularDynamics(
        harmonic_system(n),
        temperature,
        MDConfig(timestep_fs=2.0, friction_per_ps=5.0, frame_interval=50, platform="Reference"),
    )
    x0 = torch.zeros(n, 3, dtype=torch.float64)
    samples = md.sample(x0, 3000, torch.Generator().manual_seed(1), n_equilibration=2000)
    u = samples.energies
    tau = integrated_time(u)
    se = u.std().item() * math.sqrt(tau / len(u))
    expected = 3 * n / 2
    assert abs(u.mean().item() - expected) < 4 * se, (u.mean().item(), expected, se)
    assert samples.cost.force_evals == 2000 + 3000 * 50
    assert samples.n_chains == 1 and samples.x.shape == (3000, n, 3)


def test_reduced_energy_uses_the_explicit_temperature():
    system = harmonic_system(1, k=2.0)
    md = MolecularDynamics(system, 250.0, MDConfig(frame_interval=1, platform="Reference"))
    samples = md.sample(
        torch.tensor([[0.3, 0.0, 0.0]], dtype=torch.float64), 1, torch.Generator().manual_seed(0)
    )
    r2 = (samples.x[0] ** 2).sum().item()
    assert samples.energies[0].item() == pytest.approx(
        0.5 * 2.0 * r2 / kt_kj_per_mol(250.0), rel=1e-10
    )


def test_interrupted_run_resumes_to_the_same_trajectory(tmp_path):
    config = MDConfig(frame_interval=10, platform="Reference", checkpoint_every=5)
    x0 = torch.full((3, 3), 0.1, dtype=torch.float64)
    whole = MolecularDynamics(harmonic_system(3), 300.0, config).sample(
        x0, 20, torch.Generator().manual_seed(4), checkpoint=tmp_path / "a.npz"
    )
    MolecularDynamics(harmonic_system(3), 300.0, config).sample(
        x0, 10, torch.Generator().manual_seed(4), checkpoint=tmp_path / "b.npz"
    )
    resumed = MolecularDynamics(harmonic_system(3), 300.0, config).sample(
        x0, 20, torch.Generator().manual_seed(4), checkpoint=tmp_path / "b.npz"
    )
    assert torch.equal(whole.x, resumed.x)
    assert resumed.cost.force_evals == whole.cost.force_evals


def test_hydrogen_mass_repartitioning_keeps_total_mass():
    system = openmm.System()
    for m in (12.0, 1.008, 1.008, 16.0, 1.008):
        system.addParticle(m)
    bonds = openmm.HarmonicBondForce()
    for i, j in [(0, 1), (0, 2), (0, 3), (3, 4)]:
        bonds.addBond(i, j, 0.1, 1000.0)
    system.addForce(bonds)
    heavy = repartition_hydrogen_mass(system, 3.0)
    masses = np.array([heavy.getParticleMass(i).value_in_unit(unit.dalton) for i in range(5)])
    np.testing.assert_allclose(masses, [12.0 - 2 * 1.992, 3.0, 3.0, 16.0 - 1.992, 3.0])
    assert masses.sum() == pytest.approx(12.0 + 16.0 + 3 * 1.008)
    assert system.getParticleMass(1).value_in_unit(unit.dalton) == pytest.approx(1.008)


@pytest.mark.parametrize("temperature", [150.0, 300.0])
def test_planar_md_obeys_equipartition_in_the_plane(temperature):
    """Oscillators U = ½k(x² + y² + z²) started in the plane stay there: ⟨u⟩ = 2n/2 = n (two
    degrees of freedom each) within 4 standard errors, frames ``[n, N, 2]``."""
    n = 8
    md = MolecularDynamics(
        harmonic_system(n),
        temperature,
        MDConfig(timestep_fs=2.0, friction_per_ps=5.0, frame_interval=50, platform="Reference"),
        dimensions=2,
    )
    x0 = torch.full((n, 2), 0.05, dtype=torch.float64)
    samples = md.sample(x0, 3000, torch.Generator().manual_seed(2), n_equilibration=2000)
    u = samples.energies
    se = u.std().item() * math.sqrt(integrated_time(u) / len(u))
    assert abs(u.mean().item() - n) < 4 * se, (u.mean().item(), n, se)
    assert samples.x.shape == (3000, n, 2)
    r2 = samples.x.square().sum(dim=(1, 2))
    torch.testing.assert_close(u, 0.5 * 500.0 * r2 / kt_kj_per_mol(temperature))


def test_planar_integrator_without_friction_is_the_leapfrog_and_keeps_z_at_zero():
    """γ = 0: the same positions as OpenMM's VerletIntegrator, step for step; z stays 0."""
    system = harmonic_system(4)
    rng = np.random.default_rng(0)
    x0 = np.concatenate([rng.normal(0, 0.05, (4, 2)), np.zeros((4, 1))], axis=1)
    v0 = np.concatenate([rng.normal(0, 0.5, (4, 2)), np.zeros((4, 1))], axis=1)
    positions = []
    for integrator in (openmm.VerletIntegrator(0.002), planar_langevin_integrator(300, 0, 2, 4)):
        context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(x0)
        context.setVelocities(v0)
        integrator.step(50)
        positions.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
    np.testing.assert_allclose(positions[1], positions[0], rtol=0, atol=1e-12)
    assert np.all(positions[1][:, 2] == 0.0)


def test_an_interrupted_planar_run_resumes_to_the_same_trajectory(tmp_path):
    config = MDConfig(frame_interval=10, platform="Reference", checkpoint_every=5)
    x0 = torch.full((3, 2), 0.1, dtype=torch.float64)

    def run(n_frames: int, name: str):
        md = MolecularDynamics(harmonic_system(3), 300.0, config, dimensions=2)
        return md.sample(x0, n_frames, torch.Generator().manual_seed(4), checkpoint=tmp_path / name)

    whole = run(20, "a.npz")
    run(10, "b.npz")
    resumed = run(20, "b.npz")
    assert torch.equal(whole.x, resumed.x) and whole.x.shape == (20, 3, 2)


def test_first_exit_stops_at_the_first_check_of_the_same_trajectory():
    """With one seed, ``first_exit`` follows the trajectory ``sample`` saves at the same
    interval, and stops at the first saved frame whose particle 0 has x > 0.05 nm."""
    config = MDConfig(frame_interval=20, platform="Reference")
    x0 = torch.zeros(2, 3, dtype=torch.float64)
    md = MolecularDynamics(harmonic_system(2, k=50.0), 300.0, config)
    frames = md.sample(x0, 200, torch.Generator().manual_seed(5)).x
    beyond = (frames[:, 0, 0] > 0.05).nonzero()
    assert len(beyond) > 0, "the test needs a crossing within the saved frames"
    seen = []

    def left(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape)
        return x[:, 0, 0] > 0.05

    steps, exited = md.first_exit(x0, left, 4000, 20, torch.Generator().manual_seed(5))
    assert exited and steps == 20 * (int(beyond[0]) + 1)
    assert set(seen) == {(1, 2, 3)}


def test_first_exit_is_cut_at_its_limit_and_checks_its_arguments():
    md = MolecularDynamics(harmonic_system(1), 300.0, MDConfig(platform="Reference"))
    x0 = torch.zeros(1, 3, dtype=torch.float64)

    def never(x):
        return torch.zeros(len(x), dtype=torch.bool)

    assert md.first_exit(x0, never, 95, 10, torch.Generator().manual_seed(0)) == (100, False)
    with pytest.raises(ValueError, match="check_every"):
        md.first_exit(x0, never, 10, 0, torch.Generator().manual_seed(0))
