"""How fast is OpenMMEnergy? A plain Context loop against the in-process bridge and the pool.

Evaluates the same batch of randomly perturbed configurations of one small molecule
with (a) a plain single-Context loop in this process (no torch), (b) OpenMMEnergy with
``n_workers=0`` and (c) OpenMMEnergy with a pool of 1 and 2 (or ``--workers``) worker
processes, and prints configurations per second for energies alone and for energies
with forces, with the ratio to (a): the best of ``--repeats`` calls, the modes taking
turns. Pool start-up time is excluded and printed apart.

    .venv/bin/python benchmarks/openmm_bridge.py --batch 256 1024 --repeats 5

``--system chain`` (the default) builds a 22-atom charged chain with OpenMM alone;
``alanine_implicit`` and ``alanine_vacuum`` use alanine dipeptide (22 atoms,
amber99sbildn, OBC implicit solvent or vacuum) from ``boltzgen.molecules``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import openmm
import torch
from openmm import unit

from boltzgen.energies.openmm import OpenMMEnergy


def chain_system(n_atoms: int = 22) -> tuple[openmm.System, np.ndarray]:
    """A charged chain (bonds, angles, torsions, Coulomb + LJ, no cutoff) and a helix
    of positions ``[n_atoms, 3]`` in nm."""
    system = openmm.System()
    forces = [openmm.HarmonicBondForce(), openmm.HarmonicAngleForce()]
    torsions, nonbonded = openmm.PeriodicTorsionForce(), openmm.NonbondedForce()
    for i in range(n_atoms):
        system.addParticle(12.0)
        nonbonded.addParticle(0.3 * (-1) ** i, 0.3, 0.4)
    for i in range(n_atoms - 1):
        forces[0].addBond(i, i + 1, 0.155, 2.0e5)
    for i in range(n_atoms - 2):
        forces[1].addAngle(i, i + 1, i + 2, 1.9, 400.0)
    for i in range(n_atoms - 3):
        torsions.addTorsion(i, i + 1, i + 2, i + 3, 3, 0.0, 2.0)
    nonbonded.createExceptionsFromBonds([(i, i + 1) for i in range(n_atoms - 1)], 0.8333, 0.5)
    for force in [*forces, torsions, nonbonded]:
        system.addForce(force)
    angle = np.radians(100.0) * np.arange(n_atoms)
    helix = np.stack([0.08 * np.cos(angle), 0.08 * np.sin(angle), 0.1 * np.arange(n_atoms)], 1)
    return system, helix


def molecule(name: str) -> tuple[openmm.System, np.ndarray]:
    """The System and a relaxed configuration ``[N, 3]`` (nm) of ``name``."""
    if name == "chain":
        return chain_system()
    from boltzgen.molecules import alanine_peptide

    _, positions, system = alanine_peptide(1, implicit=name == "alanine_implicit")
    return system, np.asarray(positions)


def perturbed(x0: np.ndarray, batch: int, noise: float, seed: int) -> torch.Tensor:
    """``[batch, N, 3]``: ``x0`` plus Gaussian noise of ``noise`` nm."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.as_tensor(x0, dtype=torch.float64)
    return x0 + noise * torch.randn(batch, *x0.shape, dtype=torch.float64, generator=g)


def plain_loop(system: openmm.System, platform: str, threads: int) -> Callable:
    """(a): one Context in this process, positions set row by row; no torch. Same
    platform properties as OpenMMEnergy, so that only the bridge's overhead differs."""
    properties = {}
    if platform == "CPU":
        properties = {"Threads": str(threads), "DeterministicForces": "true"}
    context = openmm.Context(
        system,
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName(platform),
        properties,
    )

    def evaluate(x: torch.Tensor, forces: bool) -> np.ndarray:
        energies = np.empty(x.shape[0])
        for i, row in enumerate(x.numpy()):
            context.setPositions(row)
            state = context.getState(getEnergy=True, getForces=forces)
            energies[i] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            if forces:
                state.getForces(asNumpy=True)
        return energies

    return evaluate


def bridge(energy: OpenMMEnergy) -> Callable:
    """(b), (c): OpenMMEnergy, energies converted back to kJ/mol for the cross-check."""

    def evaluate(x: torch.Tensor, forces: bool) -> np.ndarray:
        u = energy.energy_and_force(x)[0] if forces else energy.energy(x)
        return u.numpy() * energy.kT

    return evaluate


def best_rates(
    modes: dict[str, Callable], x: torch.Tensor, forces: bool, repeats: int
) -> dict[str, float]:
    """Configurations per second of each mode, the best of ``repeats`` timed calls.

    The modes take turns within every repeat, so that load from other processes on
    a shared machine falls on all of them alike; the best call is the least disturbed.
    """
    seconds: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(repeats):
        for name, evaluate in modes.items():
            start = time.perf_counter()
            evaluate(x, forces)
            seconds[name].append(time.perf_counter() - start)
    return {name: x.shape[0] / min(times) for name, times in seconds.items()}


def table(modes: dict[str, Callable], x: torch.Tensor, repeats: int) -> None:
    """Print configurations/s and ratios to (a) for every mode, energies and energy+forces."""
    reference = next(iter(modes.values()))(x, False)
    for name, evaluate in modes.items():  # also the warm-up call of every mode
        deviation = np.max(np.abs(evaluate(x, False) - reference) / np.abs(reference))
        assert deviation < 1e-6, f"{name}: energies differ from (a) by {deviation:.1e} relative"
    rates = {forces: best_rates(modes, x, forces, repeats) for forces in (False, True)}
    base = {forces: next(iter(r.values())) for forces, r in rates.items()}
    print(f"\nB = {x.shape[0]}")
    print(f"{'mode':38s} {'energy/s':>10s} {'ratio':>6s} {'energy+force/s':>15s} {'ratio':>6s}")
    for name in modes:
        e, ef = rates[False][name], rates[True][name]
        print(f"{name:38s} {e:10.0f} {e / base[False]:6.2f} {ef:15.0f} {ef / base[True]:6.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--system", choices=["alanine_implicit", "alanine_vacuum", "chain"], default="chain"
    )
    parser.add_argument("--platform", choices=["CPU", "Reference"], default="CPU")
    parser.add_argument("--threads", type=int, default=1, help="threads per Context")
    parser.add_argument("--noise", type=float, default=0.01, help="perturbation, nm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads in this process (default: torch's own choice); "
        "torch's OpenMP threads spin after each parallel op and can steal cores from OpenMM",
    )
    args = parser.parse_args(argv)
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)

    system, x0 = molecule(args.system)
    print(
        f"system {args.system}: {system.getNumParticles()} atoms, platform {args.platform}, "
        f"{args.threads} thread(s) per Context, {torch.get_num_threads()} torch thread(s), "
        f"{os.cpu_count()} CPUs, best of {args.repeats} repeats"
    )
    energies = {0: OpenMMEnergy(system, 300.0, 0, args.platform, args.threads)}
    for n in args.workers:
        start = time.perf_counter()
        energies[n] = OpenMMEnergy(system, 300.0, n, args.platform, args.threads)
        print(f"pool of {n} worker(s) started in {time.perf_counter() - start:.2f} s")
    modes = {"(a) plain Context loop": plain_loop(system, args.platform, args.threads)}
    modes["(b) OpenMMEnergy in-process"] = bridge(energies[0])
    modes.update(
        {f"(c) OpenMMEnergy pool, {n} worker(s)": bridge(energies[n]) for n in args.workers}
    )
    try:
        for batch in args.batch:
            x = perturbed(x0, batch, args.noise, args.seed)
            table(modes, x, args.repeats)
    finally:
        for energy in energies.values():
            energy.close()


if __name__ == "__main__":
    main()
