"""Molecular dynamics baseline: OpenMM Langevin dynamics at the card's temperature.

Uses OpenMM's ``LangevinMiddleIntegrator`` (Zhang, Liu, Zhang, Chipot, Lu, Yang,
"Unified efficient thermostat scheme for the canonical ensemble with holonomic or
isothermal–isobaric constraints", J. Chem. Phys. 2019), whose configurational
distribution approaches exp(−U/kT) as the time step shrinks. Masses may be
repartitioned onto hydrogens (they do not change the configurational distribution,
only the dynamics), which allows longer steps.

Two-dimensional models (particles in the plane z = 0 of a 3-D OpenMM box, see
:mod:`boltzgen.energies.particles.openmm_system`) run the same scheme written as an
``openmm.CustomIntegrator`` whose kicks and noise act on x and y only
(:func:`planar_langevin_integrator`); frames then come back as ``[n, N, 2]``.

Cost: one force evaluation per MD step and one energy evaluation per saved frame.
Frames are returned as MCMC-like samples (one chain, zero log-weights), with
reduced energies u = U/kT at the explicit temperature.
"""

from __future__ import annotations

import copy
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mdtraj
import numpy as np
import openmm
import torch
from openmm import unit
from torch import Tensor
from tqdm import tqdm

from boltzgen.energies.units import kt_kj_per_mol
from boltzgen.records import Cost, WeightedSamples
from boltzgen.records.files import DamagedFile, notice, read_verified, write_atomic

HYDROGEN_MASS_LIMIT = 1.5  # amu: atoms lighter than this are hydrogens


@dataclass(frozen=True)
class MDConfig:
    """Integrator and output settings.

    Attributes:
        timestep_fs: time step in femtoseconds.
        friction_per_ps: Langevin collision rate in 1/ps.
        frame_interval: MD steps between saved frames.
        hydrogen_mass: if set, hydrogen masses in amu after repartitioning mass
            from their bonded heavy atoms (total mass unchanged).
        platform: OpenMM platform name ("CPU", "Reference", "CUDA", ...).
        threads: CPU platform threads (``None``: OpenMM's default).
        checkpoint_every: frames between checkpoints when a checkpoint file is given.
    """

    timestep_fs: float = 1.0
    friction_per_ps: float = 1.0
    frame_interval: int = 250
    hydrogen_mass: float | None = None
    platform: str = "CPU"
    threads: int | None = None
    checkpoint_every: int = 1000


def repartition_hydrogen_mass(system: openmm.System, hydrogen_mass: float) -> openmm.System:
    """A copy of ``system`` whose hydrogens weigh ``hydrogen_mass`` amu.

    Each hydrogen's added mass is taken from the heavy atom it is bonded to (bonds
    from the HarmonicBondForce and constraints), so the total mass is unchanged.
    """
    system = copy.deepcopy(system)
    mass = [
        system.getParticleMass(i).value_in_unit(unit.dalton)
        for i in range(system.getNumParticles())
    ]
    for i, j in _bonded_pairs(system):
        for h, heavy in ((i, j), (j, i)):
            if mass[h] < HYDROGEN_MASS_LIMIT <= mass[heavy]:
                delta = hydrogen_mass - mass[h]
                if mass[heavy] - delta <= HYDROGEN_MASS_LIMIT:
                    raise ValueError(f"repartitioning leaves atom {heavy} too light")
                mass[h] += delta
                mass[heavy] -= delta
    for i, m in enumerate(mass):
        system.setParticleMass(i, m * unit.dalton)
    return system


def _bonded_pairs(system: openmm.System) -> list[tuple[int, int]]:
    pairs = [
        tuple(system.getConstraintParameters(k)[:2]) for k in range(system.getNumConstraints())
    ]
    for force in system.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            pairs += [tuple(force.getBondParameters(k)[:2]) for k in range(force.getNumBonds())]
    return list(dict.fromkeys(pairs))


def planar_langevin_integrator(
    temperature: float, friction_per_ps: float, timestep_fs: float, n_particles: int
) -> openmm.CustomIntegrator:
    """OpenMM's Langevin "middle" scheme (LFMiddle, Zhang et al. 2019) acting on x and y only.

    Per step, with a = e^{−γΔt} and the mask e = (1, 1, 0) on every particle:

        v ← v + Δt·e·f/m;  x ← x + ½Δt·v;  v ← a·v + √(1 − a²)·√(kT/m)·e·ξ;  x ← x + ½Δt·v,

    ξ standard normal per degree of freedom: the scheme of ``LangevinMiddleIntegrator``
    (which it equals in the plane), so a particle with no z velocity never gets one. The
    caller zeroes the z velocities it starts with. With γ = 0 it is the leapfrog of
    ``VerletIntegrator``.
    """
    dt = timestep_fs * 1e-3  # ps
    a = math.exp(-friction_per_ps * dt)
    integrator = openmm.CustomIntegrator(dt)
    integrator.addGlobalVariable("a", a)
    integrator.addGlobalVariable("b", math.sqrt(1.0 - a * a))
    integrator.addGlobalVariable("kT", kt_kj_per_mol(temperature))
    integrator.addPerDofVariable("plane", 0.0)
    integrator.addUpdateContextState()
    integrator.addComputePerDof("v", "v + dt*plane*f/m")
    integrator.addComputePerDof("x", "x + 0.5*dt*v")
    integrator.addComputePerDof("v", "a*v + b*sqrt(kT/m)*plane*gaussian")
    integrator.addComputePerDof("x", "x + 0.5*dt*v")
    integrator.setPerDofVariableByName("plane", [openmm.Vec3(1.0, 1.0, 0.0)] * n_particles)
    return integrator


class MolecularDynamics:
    """Langevin dynamics of an ``openmm.System`` at an explicit temperature (kelvin).

    ``dimensions=2``: the system's particles move in the plane z = 0 (a 2-D particle model,
    :func:`planar_langevin_integrator`); positions in and frames out are ``[N, 2]``.

    Example:
        >>> md = MolecularDynamics(system.openmm_system, 300.0, MDConfig(frame_interval=500))
        >>> frames = md.sample(system.initial_positions, 1000, torch.Generator().manual_seed(0))
    """

    def __init__(
        self,
        openmm_system: openmm.System,
        temperature: float,
        config: MDConfig = MDConfig(),
        dimensions: int = 3,
    ):
        if dimensions not in (2, 3):
            raise ValueError(f"dimensions must be 2 or 3, got {dimensions}")
        self.temperature = float(temperature)
        self.kt = kt_kj_per_mol(self.temperature)
        self.config = config
        self.dimensions = dimensions
        self.system = openmm_system
        if config.hydrogen_mass is not None:
            self.system = repartition_hydrogen_mass(openmm_system, config.hydrogen_mass)

    def _context(self, seed: int) -> openmm.Context:
        c = self.config
        if self.dimensions == 2:
            integrator = planar_langevin_integrator(
                self.temperature, c.friction_per_ps, c.timestep_fs, self.system.getNumParticles()
            )
        else:
            integrator = openmm.LangevinMiddleIntegrator(
                self.temperature * unit.kelvin,
                c.friction_per_ps / unit.picosecond,
                c.timestep_fs * unit.femtosecond,
            )
        integrator.setRandomNumberSeed(seed)
        platform = openmm.Platform.getPlatformByName(c.platform)
        properties = {"Threads": str(c.threads)} if c.threads and c.platform == "CPU" else {}
        return openmm.Context(self.system, integrator, platform, properties)

    def _frame(self, context: openmm.Context) -> tuple[np.ndarray, float]:
        state = context.getState(getPositions=True, getEnergy=True)
        x = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        u = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / self.kt
        return np.asarray(x, dtype=np.float64)[:, : self.dimensions], u

    def _start(self, context: openmm.Context, x0: Tensor, seed: int) -> None:
        """Positions ``x0`` (padded with z = 0 in the plane) and Maxwell–Boltzmann velocities
        (their z parts zeroed in the plane)."""
        x = x0.detach().cpu().to(torch.float64).numpy()
        if self.dimensions == 2:
            x = np.concatenate([x, np.zeros_like(x[:, :1])], axis=1)
        context.setPositions(x * unit.nanometer)
        context.setVelocitiesToTemperature(self.temperature * unit.kelvin, seed)
        if self.dimensions == 2:
            v = context.getState(getVelocities=True).getVelocities(asNumpy=True)
            v = v.value_in_unit(unit.nanometer / unit.picosecond)
            v[:, 2] = 0.0
            context.setVelocities(v * (unit.nanometer / unit.picosecond))

    def sample(
        self,
        x0: Tensor,
        n_frames: int,
        generator: torch.Generator,
        n_equilibration: int = 0,
        progress: bool = False,
        checkpoint: Path | None = None,
    ) -> WeightedSamples:
        """Equilibrate ``n_equilibration`` steps, then save ``n_frames`` frames.

        Args:
            x0: ``[N, 3]`` starting positions in nm (``[N, 2]`` in the plane).
            n_frames: frames to keep, ``frame_interval`` steps apart.
            generator: seeds the integrator and the initial velocities.
            n_equilibration: discarded steps before the first frame.
            progress: show a tqdm bar over frames.
            checkpoint: a file to save the run to every ``checkpoint_every`` frames;
                if it exists, the run resumes from it.

        Returns:
            ``[n_frames, N, dimensions]`` frames as one chain, reduced energies, and the cost.
        """
        seed = int(torch.randint(1, 2**30, (1,), generator=generator))
        context = self._context(seed)
        xs, us, steps, wall = self._resume(context, checkpoint)
        if not xs:
            self._start(context, x0, seed)
            steps = self._advance(context, n_equilibration)
        start = time.perf_counter() - wall
        interval = self.config.frame_interval
        for _ in tqdm(
            range(len(xs), n_frames),
            desc="MD",
            disable=not progress,
            initial=len(xs),
            total=n_frames,
        ):
            steps += self._advance(context, interval)
            x, u = self._frame(context)
            xs.append(x)
            us.append(u)
            if checkpoint is not None and len(xs) % self.config.checkpoint_every == 0:
                self._save(context, checkpoint, xs, us, steps, time.perf_counter() - start)
        wall = time.perf_counter() - start
        if checkpoint is not None:
            self._save(context, checkpoint, xs, us, steps, wall)
        return self._samples(xs, us, steps, wall)

    def first_exit(
        self,
        x0: Tensor,
        left: Callable[[Tensor], Tensor],
        max_steps: int,
        check_every: int,
        generator: torch.Generator,
    ) -> tuple[int, bool]:
        """Run from ``x0`` (velocities drawn at the temperature) until ``left`` holds.

        The residence-time measurement of :mod:`boltzgen.metrics.kinetics`: started inside a
        state, the run stops at the first check where the configuration has left it for good.

        Args:
            x0: ``[N, 3]`` starting positions in nm (``[N, 2]`` in the plane).
            left: ``[1, N, d] -> bool[1]``, true once the run counts as gone (the core of the
                other state, not just outside this one, so that recrossings do not count).
            max_steps: steps after which the run is cut without an exit.
            check_every: steps between checks (the time resolution).
            generator: seeds the integrator and the initial velocities.

        Returns:
            the steps run (a multiple of ``check_every``, at most ``max_steps`` rounded up),
            and whether the run ended by leaving.
        """
        if max_steps < 1 or check_every < 1:
            raise ValueError(f"need max_steps, check_every ≥ 1, got {max_steps}, {check_every}")
        seed = int(torch.randint(1, 2**30, (1,), generator=generator))
        context = self._context(seed)
        self._start(context, x0, seed)
        steps = 0
        while steps < max_steps:
            steps += self._advance(context, check_every)
            x, _ = self._frame(context)
            if bool(left(torch.from_numpy(x)[None])[0]):
                return steps, True
        return steps, False

    def _advance(self, context: openmm.Context, n_steps: int) -> int:
        if n_steps > 0:
            context.getIntegrator().step(n_steps)
        return n_steps

    def _samples(
        self, xs: list[np.ndarray], us: list[float], steps: int, wall: float
    ) -> WeightedSamples:
        x = (
            torch.from_numpy(np.stack(xs))
            if xs
            else torch.empty(0, self.system.getNumParticles(), self.dimensions, dtype=torch.float64)
        )
        u = torch.tensor(us, dtype=torch.float64)
        cost = Cost(energy_evals=len(us), force_evals=steps, wall_s=wall)
        c = self.config
        info = {
            "sampler": "md",
            "timestep_fs": c.timestep_fs,
            "friction_per_ps": c.friction_per_ps,
            "frame_interval": c.frame_interval,
            "hydrogen_mass": c.hydrogen_mass,
            "md_steps": steps,
            "simulated_ns": steps * c.timestep_fs * 1e-6,
            "temperature": self.temperature,
        }
        return WeightedSamples(x, torch.zeros_like(u), u, cost, info, n_chains=1)

    def _save(
        self,
        context: openmm.Context,
        path: Path,
        xs: list[np.ndarray],
        us: list[float],
        steps: int,
        wall: float,
    ) -> None:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            x=np.stack(xs),
            u=np.asarray(us),
            steps=steps,
            wall=wall,
            state=np.frombuffer(context.createCheckpoint(), dtype=np.uint8),
        )
        write_atomic(path, buffer.getvalue(), checksum=True)

    def _resume(
        self, context: openmm.Context, path: Path | None
    ) -> tuple[list[np.ndarray], list[float], int, float]:
        if path is None or not path.exists():
            return [], [], 0, 0.0
        try:
            data_bytes = read_verified(path)
        except DamagedFile as error:
            notice(f"{error}: the MD run starts over")
            return [], [], 0, 0.0
        with np.load(io.BytesIO(data_bytes)) as data:
            context.loadCheckpoint(data["state"].tobytes())
            return list(data["x"]), list(data["u"]), int(data["steps"]), float(data["wall"])


def write_trajectory(
    samples: WeightedSamples, topology: mdtraj.Topology, directory: Path, name: str = "trajectory"
) -> tuple[Path, Path]:
    """Write ``samples.x`` as ``NAME.dcd`` plus its first frame as ``NAME.pdb`` (topology)."""
    directory.mkdir(parents=True, exist_ok=True)
    traj = mdtraj.Trajectory(samples.x.detach().cpu().numpy(), topology)
    dcd, pdb = directory / f"{name}.dcd", directory / f"{name}.pdb"
    traj.save_dcd(str(dcd))
    traj[0].save_pdb(str(pdb))
    return dcd, pdb


def md_evaluations(n_frames: int, frame_interval: int, n_equilibration: int) -> int:
    """Target evaluations of :meth:`MolecularDynamics.sample`: n_eq + n·(interval + 1).

    One force per MD step and one energy per saved frame.
    """
    return n_equilibration + n_frames * (frame_interval + 1)
