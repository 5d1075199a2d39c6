"""The parallel-tempering method: torch replicas or openmmtools replica exchange.

Swendsen & Wang 1986; Earl & Deem, "Parallel tempering: theory, applications, and new
perspectives", arXiv physics/0508111. A geometric ladder runs from the system's
temperature to ``t_max_factor`` times it; see :mod:`~boltzgen.runner.methods.ladder` for
what the ladder adds to the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.base import MethodContext
from boltzgen.runner.methods.budget import fit_chain_steps, largest_within
from boltzgen.runner.methods.ladder import with_ladder
from boltzgen.samplers.parallel_tempering import (
    ParallelTempering,
    geometric_ladder,
    pt_evaluations,
)
from boltzgen.systems import System


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


def _torch_pt(
    system: System, params: PTParams, generator: torch.Generator, progress: bool
) -> WeightedSamples:
    """Torch replicas from the system's dispersed starts, HMC or MALA moves."""
    sampler = ParallelTempering(
        system.energy, _ladder(system, params), params.move, params.step_size, params.n_leapfrog
    )
    x0 = system.dispersed_starts(params.n_chains, generator)
    return sampler.sample(
        x0, params.n_steps, generator, params.n_warmup, params.thin, progress, dict(system.states)
    )


def _openmm_pt(
    system: System, params: PTParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """openmmtools replica exchange, stored in ``checkpoint/pt.nc`` (resumed from it).

    openmmtools, a slow import, is loaded only for this backend.
    """
    from boltzgen.samplers.openmm_replica_exchange import openmm_parallel_tempering

    if system.openmm_system is None:
        raise ValueError(f"backend openmm needs an OpenMM system; {system.name} has none")
    if context.checkpoint is None:
        raise ValueError("backend openmm stores its replicas on disk: give a checkpoint folder")
    context.checkpoint.mkdir(parents=True, exist_ok=True)
    samples, info = openmm_parallel_tempering(
        system.openmm_system,
        system.initial_positions,
        _ladder(system, params),
        params.n_warmup + params.n_steps,
        params.steps_per_iteration,
        context.checkpoint / "pt.nc",
        params.timestep_fs,
        int(torch.randint(0, 2**31 - 1, (1,), generator=generator)),
        params.platform,
        n_discard=params.n_warmup,
        states=dict(system.states),
    )
    samples.info.update(info)
    return samples


def run(
    system: System, params: PTParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """Sample the ladder; the T₀ samples come back, the ladder goes to ``ladder.npz``."""
    if params.backend == "openmm":
        samples = _openmm_pt(system, params, generator, context)
    else:
        samples = _torch_pt(system, params, generator, context.progress)
    return with_ladder(system, samples, context.output)


def _evaluations(params: PTParams, n_steps: int) -> int:
    """Target evaluations of ``n_steps`` steps (openmm: iterations) of every replica."""
    if params.backend == "openmm":
        from boltzgen.samplers.openmm_replica_exchange import openmm_pt_evaluations

        return openmm_pt_evaluations(params.n_temperatures, n_steps, params.steps_per_iteration)
    return pt_evaluations(
        params.n_temperatures, params.n_chains, n_steps, params.move, params.n_leapfrog
    )


def fit_budget(params: PTParams, budget: int, system: System) -> PTParams:
    """Warm-up and sampling steps (openmm: iterations) that the budget covers."""
    total = largest_within(lambda n: _evaluations(params, n), budget)
    return fit_chain_steps(params, total, "parallel_tempering", budget)
