"""The parallel-tempering method of experiments (torch replicas or openmmtools).

Samples returned are those of the lowest (the system's) temperature. The whole
ladder's energies and state indicators are saved next to the result in
``ladder.npz``, and ΔF by MBAR over every temperature goes into ``info``
(``mbar_free_energies``), beside the estimate from the T₀ samples alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from boltzgen.records import WeightedSamples
from boltzgen.runner.methods import fit_chain_steps
from boltzgen.samplers.parallel_tempering import ParallelTempering, geometric_ladder
from boltzgen.systems import System
from boltzgen.training import train_tsf

LADDER_KEYS = ("ladder_energies", "ladder_states")


@dataclass(frozen=True)
class PTParams:
    """A geometric ladder from the system's temperature to ``t_max_factor`` times it."""

    n_temperatures: int = 8
    t_max_factor: float = 4.0
    n_chains: int = 16
    n_warmup: int = 500
    n_steps: int = 2000
    thin: int = 1
    backend: Literal["torch", "openmm"] = "torch"
    move: Literal["hmc", "langevin"] = "hmc"
    step_size: float = 0.1
    n_leapfrog: int = 10
    steps_per_iteration: int = 500
    timestep_fs: float = 2.0
    platform: str = "CPU"

    def __post_init__(self) -> None:
        if self.n_temperatures < 2 or not self.t_max_factor > 1.0:
            raise ValueError("parallel tempering needs n_temperatures ≥ 2 and t_max_factor > 1")


def _ladder(system: System, params: PTParams) -> list[float]:
    t0 = system.temperature
    return geometric_ladder(t0, params.t_max_factor * t0, params.n_temperatures)


def _torch_pt(system: System, params: PTParams, generator: torch.Generator, progress: bool):
    sampler = ParallelTempering(
        system.energy, _ladder(system, params), params.move, params.step_size, params.n_leapfrog
    )
    x0 = system.dispersed_starts(params.n_chains, generator)
    return sampler.sample(
        x0, params.n_steps, generator, params.n_warmup, params.thin, progress, dict(system.states)
    )


def _openmm_pt(system: System, params: PTParams, generator: torch.Generator, folder: Path):
    from boltzgen.samplers.openmm_replica_exchange import openmm_parallel_tempering

    if system.openmm_system is None:
        raise ValueError(f"backend openmm needs an OpenMM system; {system.name} has none")
    samples, info = openmm_parallel_tempering(
        system.openmm_system,
        system.initial_positions,
        _ladder(system, params),
        params.n_warmup + params.n_steps,
        params.steps_per_iteration,
        folder / "pt.nc",
        params.timestep_fs,
        int(torch.randint(0, 2**31 - 1, (1,), generator=generator)),
        params.platform,
        n_discard=params.n_warmup,
        states=dict(system.states),
    )
    samples.info.update(info)
    return samples


def _mbar(system: System, samples: WeightedSamples) -> dict[str, Any]:
    from boltzgen.metrics.mbar import ladder_state_free_energy

    out = {}
    for a, b in system.free_energy_pairs:
        estimate = ladder_state_free_energy(samples, a, b)
        value = estimate.value if math.isfinite(estimate.value) else None
        out[f"{b}_vs_{a}"] = {"value": value, "stderr": estimate.stderr}
    return out


def run_pt(
    system: System,
    params: PTParams,
    generator: torch.Generator,
    checkpoint_dir: Path | None,
    progress: bool,
) -> WeightedSamples:
    folder = checkpoint_dir if checkpoint_dir is not None else Path.cwd() / "pt_checkpoint"
    folder.mkdir(parents=True, exist_ok=True)
    if params.backend == "openmm":
        samples = _openmm_pt(system, params, generator, folder)
    else:
        samples = _torch_pt(system, params, generator, progress)
    return _with_ladder(system, samples, folder)


def _with_ladder(system: System, samples: WeightedSamples, folder: Path) -> WeightedSamples:
    """Add MBAR free energies to ``info``; move the ladder arrays to ``ladder.npz``."""
    samples.info["mbar_free_energies"] = _mbar(system, samples)
    ladder = {k: samples.info.pop(k) for k in LADDER_KEYS if k in samples.info}
    states = ladder.get("ladder_states", {})
    np.savez_compressed(
        folder.parent / "ladder.npz",
        energies=np.asarray(torch.as_tensor(ladder.get("ladder_energies", [])).cpu()),
        **{f"state_{k}": np.asarray(torch.as_tensor(v).cpu()) for k, v in states.items()},
    )
    return samples


def fit_pt(params: PTParams, budget: int, system: System) -> PTParams:
    """Every replica pays: K·C·(1 + L·steps) (torch; L = 1 for Langevin/MALA moves, as the
    sampler uses) or K·iterations·MD steps (openmm)."""
    k = params.n_temperatures
    if params.backend == "openmm":
        per_iteration = k * (params.steps_per_iteration + 1)
        total = (budget - k) // per_iteration
    else:
        leapfrog = params.n_leapfrog if params.move == "hmc" else 1
        per_step = k * params.n_chains * leapfrog
        total = (budget - k * params.n_chains) // per_step
    return fit_chain_steps(params, total, "parallel_tempering", budget)


@dataclass(frozen=True)
class TSFExchangeParams:
    """Replica exchange with a temperature-steerable flow proposing at every rung.

    The flow (volume-preserving couplings, Dibak et al. 2022) is trained by reverse KL
    summed over the ladder for ``train_steps`` steps of ``batch_size`` per rung.
    """

    n_temperatures: int = 4
    t_max_factor: float = 5.0
    n_chains: int = 16
    n_warmup: int = 200
    n_steps: int = 1000
    thin: int = 1
    move: Literal["hmc", "langevin"] = "hmc"
    step_size: float = 0.1
    n_leapfrog: int = 10
    flow_every: int = 1
    n_layers: int = 4
    hidden: int = 64
    train_steps: int = 200
    batch_size: int = 128
    lr: float = 1e-3


def run_tsf_exchange(
    system: System,
    params: TSFExchangeParams,
    generator: torch.Generator,
    checkpoint_dir: Path | None,
    progress: bool,
) -> WeightedSamples:
    from boltzgen.flows import Flatten, make_steerable_flow
    from boltzgen.samplers.tsf_exchange import TSFReplicaExchange

    t0, energy = system.temperature, system.energy
    ladder = geometric_ladder(t0, params.t_max_factor * t0, params.n_temperatures)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    tsf = make_steerable_flow(energy.dim, t0, params.n_layers, params.hidden, seed=seed)
    if len(energy.event_shape) > 1:
        tsf.flow.layers.append(Flatten(energy.event_shape))
    g = torch.Generator().manual_seed(seed + 1)
    cost = train_tsf(tsf, energy, ladder, params.train_steps, params.batch_size, params.lr, g)
    sampler = TSFReplicaExchange(
        energy,
        tsf,
        ladder,
        params.move,
        params.step_size,
        params.n_leapfrog,
        params.flow_every,
        training_cost=cost,
    )
    x0 = system.dispersed_starts(params.n_chains, g)
    samples = sampler.sample(
        x0, params.n_steps, g, params.n_warmup, params.thin, progress, dict(system.states)
    )
    folder = checkpoint_dir if checkpoint_dir is not None else Path.cwd() / "tsf_checkpoint"
    folder.mkdir(parents=True, exist_ok=True)
    return _with_ladder(system, samples, folder)


def fit_tsf_exchange(params: TSFExchangeParams, budget: int, system: System) -> TSFExchangeParams:
    """Training as planned; local and flow moves of every replica fill the rest."""
    k, c = params.n_temperatures, params.n_chains
    left = budget - params.train_steps * k * params.batch_size - k * c
    leapfrog = params.n_leapfrog if params.move == "hmc" else 1
    per_step = k * c * (leapfrog + 1.0 / params.flow_every)
    return fit_chain_steps(params, int(left // per_step), "tsf_replica_exchange", budget)
