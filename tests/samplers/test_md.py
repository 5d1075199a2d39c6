"""The MD baseline: equipartition on a harmonic system, resume, mass repartitioning."""

import math

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from boltzgen.energies.units import kt_kj_per_mol
from boltzgen.metrics import integrated_time
from boltzgen.samplers.md import MDConfig, MolecularDynamics, repartition_hydrogen_mass


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
