"""OpenMMEnergy: agreement with OpenMM, reduced units, forces, autograd, failures, workers."""

import math
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from boltzgen.energies.openmm import OpenMMEnergy, _WorkerPool

TEMPERATURE = 300.0
N_ATOMS = 8
BONDS = [(i, i + 1) for i in range(N_ATOMS - 1)]
REPO = Path(__file__).resolve().parents[2]


def kT(temperature):
    """k_B·N_A·T in kJ/mol, computed independently of the module under test."""
    k = unit.BOLTZMANN_CONSTANT_kB * unit.AVOGADRO_CONSTANT_NA
    return (k * temperature * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)


def chain_system(periodic):
    """An 8-atom charged chain: bonds, angles, torsions, Coulomb + LJ with 1-2/1-3/1-4
    exceptions; in vacuum (no cutoff) or in a 2.5 nm periodic box with PME."""
    system = openmm.System()
    bonds, angles, torsions = (
        openmm.HarmonicBondForce(),
        openmm.HarmonicAngleForce(),
        openmm.PeriodicTorsionForce(),
    )
    nonbonded = openmm.NonbondedForce()
    for i in range(N_ATOMS):
        system.addParticle(12.0)
        nonbonded.addParticle(0.4 * (-1) ** i, 0.25 + 0.01 * i, 0.4)
    for i, j in BONDS:
        bonds.addBond(i, j, 0.155, 2.0e5)
    for i in range(N_ATOMS - 2):
        angles.addAngle(i, i + 1, i + 2, 1.9, 400.0)
    for i in range(N_ATOMS - 3):
        torsions.addTorsion(i, i + 1, i + 2, i + 3, 3, 0.3, 2.0)
    nonbonded.createExceptionsFromBonds(BONDS, 0.8333, 0.5)
    if periodic:
        nonbonded.setNonbondedMethod(openmm.NonbondedForce.PME)
        nonbonded.setCutoffDistance(1.0)
        system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) * 2.5 for v in np.eye(3).tolist()))
    for force in (bonds, angles, torsions, nonbonded):
        system.addForce(force)
    return system


def configurations(n, seed, noise=0.01):
    """``[n, N_ATOMS, 3]`` nm: a helix (bond length ≈ 0.158 nm) plus Gaussian noise."""
    i = torch.arange(N_ATOMS, dtype=torch.float64)
    angle = i * math.radians(100.0)
    helix = torch.stack([0.08 * angle.cos(), 0.08 * angle.sin(), 0.1 * i], dim=1) + 1.0
    g = torch.Generator().manual_seed(seed)
    return helix + noise * torch.randn(n, N_ATOMS, 3, dtype=torch.float64, generator=g)


def openmm_reference(system, x, platform):
    """Energies [B] (kJ/mol) and forces [B, N, 3] (kJ/mol/nm) from a fresh Context."""
    properties = {"Threads": "1", "DeterministicForces": "true"} if platform == "CPU" else {}
    context = openmm.Context(
        system,
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName(platform),
        properties,
    )
    energies, forces = [], []
    for row in x:
        context.setPositions(row.numpy() * unit.nanometer)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        forces.append(
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        )
    return torch.tensor(energies, dtype=torch.float64), torch.from_numpy(np.stack(forces))


def running(pid):
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


@pytest.fixture(scope="module")
def make_energy():
    """Builds OpenMMEnergy objects once per (system, platform, n_workers) in this module."""
    cache = {}

    def make(kind, platform, n_workers):
        key = (kind, platform, n_workers)
        if key not in cache:
            cache[key] = OpenMMEnergy(
                chain_system(kind == "periodic"), TEMPERATURE, n_workers, platform
            )
        return cache[key]

    yield make
    for energy in cache.values():
        energy.close()


POOLED = [("vacuum", "Reference", 2), ("periodic", "CPU", 2)]
CASES = [("vacuum", "Reference", 0), ("vacuum", "CPU", 0), ("periodic", "CPU", 0), *POOLED]


def case_id(case):
    return "-".join(map(str, case[:2])) + ("-pool2" if case[2] else "-in_process")


@pytest.mark.parametrize(("kind", "platform", "n_workers"), CASES, ids=map(case_id, CASES))
def test_energy_and_force_match_a_direct_openmm_context(make_energy, kind, platform, n_workers):
    energy = make_energy(kind, platform, n_workers)
    x = configurations(7, seed=1)
    expected_u, expected_f = openmm_reference(chain_system(kind == "periodic"), x, platform)
    u, f = energy.energy_and_force(x)
    assert u.dtype == f.dtype == torch.float64
    torch.testing.assert_close(u * kT(TEMPERATURE), expected_u, rtol=1e-10, atol=0.0)
    torch.testing.assert_close(energy.energy(x), u, rtol=0.0, atol=0.0)
    scale = expected_f.abs().max()
    torch.testing.assert_close(f * kT(TEMPERATURE), expected_f, rtol=0.0, atol=1e-10 * scale)


@pytest.mark.parametrize(("kind", "platform", "n_workers"), POOLED, ids=map(case_id, POOLED))
def test_pool_gives_the_same_numbers_as_one_process(make_energy, kind, platform, n_workers):
    x = configurations(9, seed=2)
    u0, f0 = make_energy(kind, platform, 0).energy_and_force(x)
    u2, f2 = make_energy(kind, platform, n_workers).energy_and_force(x)
    torch.testing.assert_close(u2, u0, rtol=0.0, atol=0.0)
    torch.testing.assert_close(f2, f0, rtol=0.0, atol=0.0)


def test_force_is_minus_gradient_of_reduced_energy_by_finite_differences(make_energy):
    energy = make_energy("vacuum", "Reference", 0)
    x = configurations(1, seed=3)
    h = 1e-5
    steps = h * torch.eye(3 * N_ATOMS, dtype=torch.float64).reshape(-1, N_ATOMS, 3)
    u_plus, u_minus = energy.energy(x + steps), energy.energy(x - steps)
    finite_difference = -((u_plus - u_minus) / (2 * h)).reshape(1, N_ATOMS, 3)
    force = energy.force(x)
    assert force.abs().max() > 10.0  # a configuration with real forces
    torch.testing.assert_close(finite_difference, force, rtol=1e-5, atol=1e-7 * force.abs().max())


@pytest.mark.parametrize("temperature", [300.0, 450.0])
def test_reduced_energy_times_kT_is_the_openmm_energy(temperature):
    system = chain_system(periodic=False)
    x = configurations(5, seed=4)
    expected_u, expected_f = openmm_reference(system, x, "Reference")
    with OpenMMEnergy(system, temperature, n_workers=0, platform="Reference") as energy:
        assert energy.temperature == temperature
        u, f = energy.energy_and_force(x)
    torch.testing.assert_close(u * kT(temperature), expected_u, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(f * kT(temperature), expected_f, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_workers", [0, 2], ids=["in_process", "pool2"])
def test_autograd_gradient_is_minus_force_and_counts_once(make_energy, n_workers):
    energy = make_energy("vacuum", "Reference", n_workers)
    x = configurations(5, seed=5).requires_grad_(True)
    weights = torch.arange(1.0, 6.0, dtype=torch.float64)
    before = energy.counter.snapshot()
    (weights * energy.energy(x)).sum().backward()
    counted = energy.counter.since(before)
    assert (counted.energy, counted.force) == (5, 0)
    expected = -weights[:, None, None] * energy.force(x.detach())
    torch.testing.assert_close(x.grad, expected, rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("n_workers", [0, 2], ids=["in_process", "pool2"])
def test_nan_and_overlapping_rows_give_inf_and_leave_other_rows_alone(make_energy, n_workers):
    energy = make_energy("vacuum", "Reference", n_workers)
    x = configurations(5, seed=6)
    x[1, 2, 0] = float("nan")
    x[3, 5] = x[3, 0]  # atoms 0 and 5 interact through Coulomb and LJ only
    openmm_u, _ = openmm_reference(chain_system(periodic=False), x[3:4], "Reference")
    assert not torch.isfinite(openmm_u).any()  # the overlap really is non-finite in OpenMM
    before = energy.counter.snapshot()
    u, f = energy.energy_and_force(x)
    assert energy.counter.since(before).nonfinite == 2
    assert torch.isinf(u[[1, 3]]).all() and (u[[1, 3]] > 0).all()
    assert (f[[1, 3]] == 0).all()
    good = [0, 2, 4]
    torch.testing.assert_close(u[good], energy.energy(x[good]), rtol=0.0, atol=0.0)
    torch.testing.assert_close(f[good], energy.force(x[good]), rtol=0.0, atol=0.0)
    assert torch.isinf(energy.energy(x)[[1, 3]]).all()


@pytest.mark.parametrize("n_workers", [0, 2], ids=["in_process", "pool2"])
def test_openmm_exception_gives_inf_for_that_row_only(make_energy, n_workers):
    energy = make_energy("periodic", "CPU", n_workers)
    x = configurations(3, seed=7)
    x[1, 0, 0] = float("nan")  # past the base class's masking, the CPU platform raises
    u, f = energy._force(x)
    assert math.isinf(u[1]) and u[1] > 0 and (f[1] == 0).all()
    torch.testing.assert_close(u[[0, 2]], energy.energy(x[[0, 2]]), rtol=0.0, atol=0.0)


def test_a_system_with_virtual_sites_is_refused():
    system = chain_system(periodic=False)
    site = system.addParticle(0.0)
    system.setVirtualSite(site, openmm.TwoParticleAverageSite(0, 1, 0.5, 0.5))
    with pytest.raises(ValueError, match="virtual sites"):
        OpenMMEnergy(system, TEMPERATURE, n_workers=0)


@pytest.mark.faults
def test_a_killed_worker_is_replaced_and_results_stay_correct():
    system = chain_system(periodic=False)
    x = configurations(6, seed=8)
    expected, _ = openmm_reference(system, x, "Reference")
    with OpenMMEnergy(system, TEMPERATURE, n_workers=2, platform="Reference") as energy:
        torch.testing.assert_close(energy.energy(x) * kT(TEMPERATURE), expected, rtol=1e-10, atol=0)
        victim, survivor = energy.worker_pids
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: not running(victim))
        torch.testing.assert_close(energy.energy(x) * kT(TEMPERATURE), expected, rtol=1e-10, atol=0)
        replacement, same = energy.worker_pids
        assert replacement != victim and same == survivor and running(replacement)


def _worker_that_dies_on_every_request(conn, *args):
    """A pool worker body that starts fine and exits abruptly on its first request."""
    conn.send(("ready", os.getpid()))
    conn.recv()
    os._exit(7)


@pytest.mark.faults
def test_a_worker_dying_twice_on_a_chunk_raises_a_clear_error():
    xml = openmm.XmlSerializer.serialize(chain_system(periodic=False))
    pool = _WorkerPool(xml, "Reference", 1, n_workers=1, target=_worker_that_dies_on_every_request)
    try:
        with pytest.raises(RuntimeError, match=r"rows 0\.\.3: .*died \(exit code 7\).*died too"):
            pool.evaluate(configurations(4, seed=9).numpy(), with_forces=False)
        pids = pool.pids
    finally:
        pool.close()
    assert not any(running(pid) for pid in pids)


def test_close_stops_and_joins_every_worker_and_is_idempotent():
    x = configurations(4, seed=10)
    with OpenMMEnergy(chain_system(periodic=False), n_workers=2, platform="Reference") as energy:
        pids = energy.worker_pids
        assert len(pids) == 2 and all(running(pid) for pid in pids)
        energy.energy(x)
    assert not any(running(pid) for pid in pids)
    assert not {p.pid for p in multiprocessing.active_children()} & set(pids)
    assert energy.worker_pids == []
    energy.close()
    with pytest.raises(RuntimeError, match="closed"):
        energy.energy(x)


EXIT_WITHOUT_CLOSE = textwrap.dedent(
    """
    import openmm, torch
    from boltzgen.energies.openmm import OpenMMEnergy

    system = openmm.System()
    system.addParticle(1.0)
    system.addParticle(1.0)
    bond = openmm.HarmonicBondForce()
    bond.addBond(0, 1, 0.1, 1000.0)
    system.addForce(bond)
    energy = OpenMMEnergy(system, temperature=300.0, n_workers=2, platform="Reference")
    x = torch.tensor([[[0.0, 0.0, 0.0], [0.2, 0.0, 0.0]]] * 3, dtype=torch.float64)
    print(" ".join(str(pid) for pid in energy.worker_pids))
    print(energy.energy(x)[0].item(), flush=True)
    """
)


def test_no_worker_survives_interpreter_exit_without_close():
    done = subprocess.run(
        [sys.executable, "-c", EXIT_WITHOUT_CLOSE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    pid_line, energy_line = done.stdout.split("\n")[:2]
    pids = [int(p) for p in pid_line.split()]
    assert len(pids) == 2
    assert float(energy_line) == pytest.approx(0.5 * 1000.0 * 0.1**2 / kT(300.0), rel=1e-12)
    assert wait_until(lambda: not any(running(pid) for pid in pids), timeout=5.0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"temperature": "hot"}, "temperature must be a number in kelvin"),
        ({"temperature": -1.0}, "temperature must be positive"),
        ({"n_workers": -1}, "n_workers must be an integer"),
        ({"threads_per_worker": 0}, "threads_per_worker must be an integer"),
        ({"platform": "Abacus"}, "platform must be one of"),
    ],
)
def test_bad_arguments_are_rejected_with_a_clear_message(arguments, message):
    with pytest.raises((TypeError, ValueError), match=message):
        OpenMMEnergy(chain_system(periodic=False), **{"n_workers": 0, **arguments})
