"""Parallel tempering of an ``openmm.System`` with openmmtools, stored in NetCDF, resumable.

The same algorithm as :mod:`boltzgen.samplers.parallel_tempering` (Swendsen & Wang, Phys.
Rev. Lett. 57, 2607, 1986; Geyer 1991; Earl & Deem, Phys. Chem. Chem. Phys. 7, 3910,
2005), run by openmmtools' ``ParallelTemperingSampler`` in its "mix, propagate, energy
matrix, store" loop: each iteration exchanges replicas between neighbouring temperatures
with probability min(1, exp((β_i − β_j)(U_i − U_j))), propagates every replica with
Langevin dynamics at its temperature (``LangevinSplittingDynamicsMove``, splitting
V R O R V, velocities redrawn from Maxwell–Boltzmann after each exchange), computes the
reduced potentials and writes everything to a ``MultiStateReporter`` NetCDF file. If the
file exists the run resumes from it (``ParallelTemperingSampler.from_storage``) and
continues to ``n_iterations`` in total.

Returned: the configurations held by T_min at iterations ``n_discard + 1 … n_iterations``
as one chain, with u = U / kT_min at the explicit T_min (kT from
:mod:`boltzgen.energies.units`, never the integrator's). The ``info`` holds the energies of
every temperature (``ladder_energies [T, K, 1]``, u at T_min) so that
:mod:`boltzgen.metrics.mbar` can pool all replicas, and the MBAR free energies across the
ladder.

Cost: every replica's MD steps are force evaluations (K · n_iterations · steps_per_iteration)
and the energy matrix is K energy evaluations per iteration (plus the initial one). Wall
time is accumulated across resumed runs in the storage file.

Randomness: ``seed`` seeds numpy's global generator, which openmmtools uses for the
exchanges, only while this function runs (the previous state is restored). OpenMM draws
its own integrator and velocity seeds, so OpenMM runs are not bit-for-bit reproducible.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import openmm
import torch
from openmm import unit
from openmmtools import cache, constants, mcmc, states
from openmmtools.multistate import MultiStateReporter, ParallelTemperingSampler
from torch import Tensor

from boltzgen.energies.units import kt_kj_per_mol
from boltzgen.metrics.mbar import (
    ladder_reduced_energies,
    mbar_free_energies,
    statistical_inefficiency,
)
from boltzgen.records import Cost, WeightedSamples
from boltzgen.samplers.parallel_tempering import RoundTrips, track_round_trips

Mixing = Literal["swap-neighbors", "swap-all"]
_WALL_KEY = "boltzgen_wall_s"


@contextmanager
def _numpy_seed(seed: int | list[int]) -> Iterator[None]:
    """Seed numpy's global generator (openmmtools' source of randomness) for a block only."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _context_cache(platform: str) -> cache.ContextCache:
    return cache.ContextCache(platform=openmm.Platform.getPlatformByName(platform))


@dataclass(frozen=True)
class _Run:
    """What one call did: the iteration it started from and the wall seconds of all calls."""

    resumed_from: int
    wall_s: float


def _create(
    openmm_system: openmm.System,
    positions: np.ndarray,
    temperatures: Sequence[float],
    reporter: MultiStateReporter,
    move: mcmc.MCMCMove,
    mixing: Mixing,
    n_iterations: int,
) -> ParallelTemperingSampler:
    sampler = ParallelTemperingSampler(
        mcmc_moves=move,
        number_of_iterations=n_iterations,
        online_analysis_interval=None,
        replica_mixing_scheme=mixing,
    )
    sampler._global_citation_silence = True  # openmmtools' switch for its citation block
    reference = states.ThermodynamicState(openmm_system, temperatures[0] * unit.kelvin)
    sampler.create(
        reference,
        states.SamplerState(positions * unit.nanometer),
        reporter,
        temperatures=[t * unit.kelvin for t in temperatures],
        n_temperatures=len(temperatures),
    )
    return sampler


def _check_stored_temperatures(path: Path, temperatures: Sequence[float]) -> None:
    reporter = MultiStateReporter(str(path), open_mode="r")
    try:
        stored, _ = reporter.read_thermodynamic_states()
    finally:
        reporter.close()
    kelvin = [s.temperature.value_in_unit(unit.kelvin) for s in stored]
    if len(kelvin) != len(temperatures) or not np.allclose(kelvin, temperatures, rtol=1e-9):
        raise ValueError(
            f"{path} holds a run at temperatures {kelvin} K, not {list(temperatures)} K: "
            "pass the same ladder to resume, or another storage_path to start afresh"
        )


def _stored_wall(reporter: MultiStateReporter) -> float:
    try:
        return float(reporter.read_dict(_WALL_KEY)["wall_s"])
    except (KeyError, ValueError):  # openmmtools raises ValueError for a missing path
        return 0.0


def _advance(
    path: Path,
    build: Callable[[MultiStateReporter], ParallelTemperingSampler],
    n_iterations: int,
    platform: str,
    seed: int,
) -> _Run:
    """Create or resume the run stored at ``path`` and run it to ``n_iterations`` in total.

    The exchanges draw from numpy seeded by (``seed``, iteration resumed from), so a resumed
    run does not replay the random numbers of its first part.
    """
    start = time.perf_counter()
    resume = path.exists()
    reporter = MultiStateReporter(str(path), checkpoint_interval=1)
    if resume:
        sampler = ParallelTemperingSampler.from_storage(reporter)
        before = _stored_wall(reporter)
    else:
        sampler, before = build(reporter), 0.0
    resumed_from = sampler.iteration
    sampler.energy_context_cache = _context_cache(platform)
    sampler.sampler_context_cache = _context_cache(platform)
    try:
        with _numpy_seed([seed, resumed_from]):
            if n_iterations > sampler.iteration:
                sampler.extend(n_iterations - sampler.iteration)
        wall = before + time.perf_counter() - start
        reporter.write_dict(_WALL_KEY, {"wall_s": wall})
    finally:
        reporter.close()
    return _Run(resumed_from, wall)


@dataclass(frozen=True)
class _Trajectory:
    """Read back from storage, iterations ``n_discard + 1 … last``.

    ``x [T, N, 3]`` nm at T_min (openmmtools stores positions in single precision);
    ``potential [T, K]`` kJ/mol of the configuration held by each temperature;
    ``slot_replica [T, K]`` which replica held it; ``members`` {name: bool [T, K]};
    ``accepted / proposed [K, K]`` exchange counts over the whole run.
    """

    x: np.ndarray
    potential: np.ndarray
    slot_replica: np.ndarray
    members: dict[str, np.ndarray]
    accepted: np.ndarray
    proposed: np.ndarray
    last_iteration: int


def _read(
    path: Path, temperatures: Sequence[float], n_discard: int, named: Mapping[str, Callable]
) -> _Trajectory:
    reporter = MultiStateReporter(str(path), open_mode="r")
    try:
        last = reporter.read_last_iteration(last_checkpoint=False)
        iterations = range(n_discard + 1, last + 1)
        replica_state = reporter.read_replica_thermodynamic_states()[n_discard + 1 : last + 1]
        reduced = reporter.read_energies()[0][n_discard + 1 : last + 1]
        accepted, proposed = reporter.read_mixing_statistics()
        frames = [_positions(reporter, i) for i in iterations]
    finally:
        reporter.close()
    slot_replica = np.argsort(replica_state, axis=1)
    held = np.take_along_axis(reduced[:, :, 0], slot_replica, axis=1)
    kt_openmmtools = (constants.kB * temperatures[0] * unit.kelvin).value_in_unit(
        unit.kilojoule_per_mole
    )
    x = np.stack([f[r[0]] for f, r in zip(frames, slot_replica, strict=True)])
    members = {
        name: np.stack([_members(fn, f[r]) for f, r in zip(frames, slot_replica, strict=True)])
        for name, fn in named.items()
    }
    return _Trajectory(
        x, held * kt_openmmtools, slot_replica, members, accepted.sum(0), proposed.sum(0), last
    )


def _positions(reporter: MultiStateReporter, iteration: int) -> np.ndarray:
    """``[R, N, 3]`` positions in nm of every replica at ``iteration``."""
    sampler_states = reporter.read_sampler_states(iteration)
    return np.stack([s.positions.value_in_unit(unit.nanometer) for s in sampler_states])


def _members(state: Callable[[Tensor], Tensor], x: np.ndarray) -> np.ndarray:
    return torch.as_tensor(state(torch.from_numpy(np.asarray(x, np.float64)))).numpy()


def _round_trips(slot_replica: np.ndarray) -> tuple[int, float]:
    """Completed round trips T_min → T_max → T_min and their mean length in iterations."""
    walker = torch.from_numpy(slot_replica[:, :, None])
    trips = RoundTrips(torch.full_like(walker[0], -1), torch.zeros_like(walker[0]))
    count, total = 0, 0
    for t in range(walker.shape[0]):
        trips, steps = track_round_trips(trips, walker[t], t)
        count += int((steps > 0).sum())
        total += int(steps.sum())
    return count, (total / count if count else math.nan)


def _ladder_analysis(ladder_energies: Tensor, temperatures: Sequence[float]) -> dict[str, Any]:
    """MBAR f_k across the ladder from samples subsampled by the largest statistical
    inefficiency of the temperatures' energy series."""
    if ladder_energies.shape[0] < 2:
        return {}
    g = max(statistical_inefficiency(ladder_energies[:, k]) for k in range(len(temperatures)))
    stride = math.ceil(g)
    u_kn, n_k = ladder_reduced_energies(ladder_energies[::stride], temperatures)
    f_k, df_k = mbar_free_energies(u_kn, n_k)
    return {
        "statistical_inefficiency": g,
        "mbar_stride": stride,
        "ladder_free_energies": f_k.tolist(),
        "ladder_free_energies_stderr": df_k.tolist(),
    }


def openmm_parallel_tempering(
    openmm_system: openmm.System,
    positions: Tensor | np.ndarray,
    temperatures: Sequence[float],
    n_iterations: int,
    steps_per_iteration: int,
    storage_path: str | Path,
    timestep_fs: float = 2.0,
    seed: int = 0,
    platform: str = "CPU",
    *,
    collision_rate_per_ps: float = 1.0,
    mixing: Mixing = "swap-neighbors",
    n_discard: int = 0,
    states: Mapping[str, Callable[[Tensor], Tensor]] | None = None,
) -> tuple[WeightedSamples, dict[str, Any]]:
    """Parallel tempering of ``openmm_system`` over ``temperatures`` (kelvin), resumable.

    Args:
        openmm_system: the system; its forces define U(x).
        positions: ``[N, 3]`` starting positions in nm (every replica starts there).
        temperatures: increasing ladder in kelvin, T_min first (e.g. ``geometric_ladder``).
        n_iterations: iterations in total, counting those already in ``storage_path``.
        steps_per_iteration: Langevin steps per replica between exchanges.
        storage_path: the NetCDF file (openmmtools also writes ``*_checkpoint.nc`` beside
            it); if it exists the run resumes from it.
        timestep_fs: integration time step in fs.
        seed: seeds the exchanges (see the module notes on reproducibility).
        platform: OpenMM platform name ("CPU", "Reference", "CUDA", ...).
        collision_rate_per_ps: Langevin friction in 1/ps.
        mixing: openmmtools' exchange scheme: neighbour pairs, or Gibbs sampling over all
            pairs ("swap-all", Chodera & Shirts, J. Chem. Phys. 135, 194110, 2011).
        n_discard: initial iterations left out of the samples and the MBAR analysis.
        states: named states ``x [n, N, 3] -> bool[n]`` evaluated on every replica
            (``info["ladder_states"]``, for ``boltzgen.metrics.mbar.ladder_state_free_energy``).

    Returns:
        ``(samples, info)``: T_min configurations ``[T, N, 3]`` as one chain with
        u = U / kT_min, zero log-weights and the cost; ``info`` (also ``samples.info``)
        holds the ladder, iteration counts, per neighbour-pair ``swap_acceptance``,
        ``round_trips`` and ``mean_round_trip_iterations``, ``ladder_energies [T, K, 1]``,
        and the MBAR ``ladder_free_energies`` f_k = −ln(Z_k / Z_0) with standard errors.
    """
    temps = [float(t) for t in temperatures]
    _check_arguments(temps, n_iterations, steps_per_iteration, n_discard)
    path = Path(storage_path)
    x0 = np.asarray(torch.as_tensor(positions).detach().cpu().numpy(), dtype=np.float64)
    if path.exists():
        _check_stored_temperatures(path, temps)
    move = mcmc.LangevinSplittingDynamicsMove(
        timestep=timestep_fs * unit.femtosecond,
        collision_rate=collision_rate_per_ps / unit.picosecond,
        n_steps=steps_per_iteration,
        reassign_velocities=True,
    )

    def build(reporter: MultiStateReporter) -> ParallelTemperingSampler:
        return _create(openmm_system, x0, temps, reporter, move, mixing, n_iterations)

    path.parent.mkdir(parents=True, exist_ok=True)
    run = _advance(path, build, n_iterations, platform, seed)
    trajectory = _read(path, temps, n_discard, states or {})
    return _result(trajectory, temps, run, path, steps_per_iteration, timestep_fs, n_discard)


def _check_arguments(
    temperatures: list[float], n_iterations: int, steps_per_iteration: int, n_discard: int
) -> None:
    if len(temperatures) < 2 or not all(0 < a < b for a, b in itertools.pairwise(temperatures)):
        raise ValueError(f"temperatures must be ≥ 2 increasing kelvin values, got {temperatures}")
    if n_iterations < 1 or steps_per_iteration < 1 or not 0 <= n_discard < n_iterations:
        raise ValueError(
            f"need n_iterations ≥ 1, steps_per_iteration ≥ 1 and 0 ≤ n_discard < n_iterations, "
            f"got {n_iterations}, {steps_per_iteration}, {n_discard}"
        )


def _result(
    trajectory: _Trajectory,
    temperatures: list[float],
    run: _Run,
    path: Path,
    steps_per_iteration: int,
    timestep_fs: float,
    n_discard: int,
) -> tuple[WeightedSamples, dict[str, Any]]:
    k = len(temperatures)
    ladder = torch.from_numpy(trajectory.potential / kt_kj_per_mol(temperatures[0]))[:, :, None]
    n_trips, mean_trip = _round_trips(trajectory.slot_replica)
    pair = np.arange(k - 1)
    proposed = trajectory.proposed[pair, pair + 1]
    info: dict[str, Any] = {
        "sampler": "openmm_parallel_tempering",
        "temperatures": temperatures,
        "n_iterations": trajectory.last_iteration,
        "resumed_from": run.resumed_from,
        "n_discard": n_discard,
        "steps_per_iteration": steps_per_iteration,
        "timestep_fs": timestep_fs,
        "storage_path": str(path),
        "swap_attempts": proposed.tolist(),
        "swap_acceptance": (trajectory.accepted[pair, pair + 1] / np.maximum(proposed, 1)).tolist(),
        "round_trips": n_trips,
        "mean_round_trip_iterations": mean_trip,
        "ladder_energies": ladder,
        "ladder_states": {
            n: torch.from_numpy(m)[:, :, None] for n, m in trajectory.members.items()
        },
        **_ladder_analysis(ladder, temperatures),
    }
    cost = Cost(
        energy_evals=k * (trajectory.last_iteration + 1),
        force_evals=k * trajectory.last_iteration * steps_per_iteration,
        wall_s=run.wall_s,
    )
    u = ladder[:, 0, 0].clone()
    x = torch.from_numpy(trajectory.x)
    return WeightedSamples(x, torch.zeros_like(u), u, cost, info, n_chains=1), info


def openmm_pt_evaluations(n_temperatures: int, n_iterations: int, steps_per_iteration: int) -> int:
    """Target evaluations of :func:`openmm_parallel_tempering`: K·(1 + iterations·(s + 1)).

    Each of the K replicas is evaluated once at the start, then takes s MD steps (one force
    each) and one energy for the exchange per iteration.
    """
    return n_temperatures * (1 + n_iterations * (steps_per_iteration + 1))
