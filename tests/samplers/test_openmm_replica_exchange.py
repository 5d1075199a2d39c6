"""OpenMM parallel tempering through openmmtools: NetCDF storage, resume, cost, and the
harmonic oscillator's exact ⟨U⟩ and free energies across the ladder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import openmm
import pytest
import torch

pytest.importorskip("openmmtools")

from boltzgen.metrics import integrated_time
from boltzgen.samplers.openmm_replica_exchange import openmm_parallel_tempering

LADDER = [300.0, 400.0, 500.0, 600.0]
N_PARTICLES = 3
STIFFNESS = 1000.0  # kJ/mol/nm²; with 1 amu, ω = 31.6 /ps: a quarter period is 25 steps of 2 fs
STEPS = 25  # fresh velocities every iteration + a quarter period: nearly independent U


def harmonic_system() -> tuple[openmm.System, np.ndarray]:
    """Independent particles tethered to their start: U = ½k Σ|x_i − x_i⁰|², d = 3N."""
    system = openmm.System()
    force = openmm.CustomExternalForce("0.5*k*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
    force.addGlobalParameter("k", STIFFNESS)
    for name in ("x0", "y0", "z0"):
        force.addPerParticleParameter(name)
    positions = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for i, anchor in enumerate(positions):
        system.addParticle(1.0)
        force.addParticle(i, list(anchor))
    system.addForce(force)
    return system, positions


def _run(path: Path, n_iterations: int, temperatures: list[float] = LADDER, **kwargs):  # type: ignore[no-untyped-def]
    system, positions = harmonic_system()
    return openmm_parallel_tempering(
        system, positions, temperatures, n_iterations, STEPS, path, platform="Reference", **kwargs
    )


def test_writes_netcdf_and_resumes_to_the_requested_total(tmp_path: Path) -> None:
    path = tmp_path / "pt.nc"
    first, info = _run(path, 10, seed=1)
    assert path.exists() and info["n_iterations"] == 10 and info["resumed_from"] == 0
    assert first.x.shape == (10, N_PARTICLES, 3) and first.n_chains == 1
    resumed, info = _run(path, 25, seed=1)
    assert info["resumed_from"] == 10 and info["n_iterations"] == 25
    assert len(resumed) == 25
    torch.testing.assert_close(resumed.x[:10], first.x)  # the stored part is read back
    k = len(LADDER)
    assert resumed.cost.force_evals == k * 25 * STEPS
    assert resumed.cost.energy_evals == k * 26
    assert resumed.cost.wall_s >= first.cost.wall_s > 0
    assert info["ladder_energies"].shape == (25, k, 1)
    torch.testing.assert_close(resumed.energies, info["ladder_energies"][:, 0, 0])
    again, info = _run(path, 25, seed=1)  # already complete: nothing more is run
    assert info["resumed_from"] == 25 and torch.equal(again.x, resumed.x)


def test_resume_with_another_ladder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pt.nc"
    _run(path, 2)
    with pytest.raises(ValueError, match="temperatures"):
        _run(path, 4, temperatures=[300.0, 450.0, 600.0])


def test_records_states_of_every_replica(tmp_path: Path) -> None:
    samples, info = _run(
        tmp_path / "pt.nc", 6, n_discard=2, states={"left": lambda x: x[:, 0, 0] < 0}
    )
    assert len(samples) == 4
    member = info["ladder_states"]["left"]
    assert member.shape == (4, len(LADDER), 1) and member.dtype == torch.bool
    torch.testing.assert_close(member[:, 0, 0], samples.x[:, 0, 0] < 0)


def test_harmonic_energy_and_ladder_free_energies_match_equipartition(tmp_path: Path) -> None:
    """⟨U⟩ = (d/2) kT and MBAR f_k − f_0 = −(d/2) ln(T_k/T_0), each within 4 standard errors."""
    samples, info = _run(tmp_path / "pt.nc", 300, seed=3, n_discard=10)
    dim = 3 * N_PARTICLES
    u = samples.energies
    stderr = float(u.std()) * math.sqrt(integrated_time(u) / len(u))
    assert abs(float(u.mean()) - dim / 2) < 4 * stderr  # ⟨U⟩ = (d/2) kT
    # configurational Z_k ∝ T_k^{d/2}: f_k − f_0 = −(d/2) ln(T_k / T_0)
    exact = -0.5 * dim * np.log(np.array(LADDER) / LADDER[0])
    f_k, df_k = (
        np.array(info["ladder_free_energies"]),
        np.array(info["ladder_free_energies_stderr"]),
    )
    assert np.all(np.abs(f_k - exact)[1:] < 4 * df_k[1:]), (f_k, exact, df_k)
    acceptance = np.array(info["swap_acceptance"])
    assert acceptance.shape == (len(LADDER) - 1,) and np.all((acceptance > 0) & (acceptance < 1))
    assert info["round_trips"] > 0


def test_alanine_dipeptide_vacuum_runs_and_records_its_basins(tmp_path: Path) -> None:
    from boltzgen.systems import load_system

    system = load_system("alanine_dipeptide_vacuum")
    ladder = [300.0, 400.0, 533.0, 710.0]
    samples, info = openmm_parallel_tempering(
        system.openmm_system,
        system.initial_positions,
        ladder,
        n_iterations=20,
        steps_per_iteration=100,
        storage_path=tmp_path / "ala2.nc",
        timestep_fs=1.0,
        platform="Reference",
        states=dict(system.states),
    )
    assert samples.x.shape == (20, 22, 3) and torch.isfinite(samples.energies).all()
    assert info["ladder_states"]["phi_neg"].shape == (20, len(ladder), 1)
    assert all(0.0 <= a <= 1.0 for a in info["swap_acceptance"])
