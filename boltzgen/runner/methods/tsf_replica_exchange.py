"""The TSF replica-exchange method: a temperature-steerable flow proposes at every rung.

The flow (volume-preserving couplings; Dibak, Klein, Köhler, Noé, "Temperature
steerable flows and Boltzmann generators", arXiv 2108.01590) is trained by reverse KL
summed over the ladder, then proposes jumps inside each replica between local moves.
See :mod:`~boltzgen.runner.methods.ladder` for what the ladder adds to the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from boltzgen.flows import Flatten, make_steerable_flow
from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.base import MethodContext
from boltzgen.runner.methods.budget import fit_chain_steps, largest_within
from boltzgen.runner.methods.ladder import with_ladder
from boltzgen.samplers.parallel_tempering import geometric_ladder
from boltzgen.samplers.tsf_exchange import TSFReplicaExchange, tsf_exchange_evaluations
from boltzgen.systems import System
from boltzgen.training import train_tsf
from boltzgen.training.tsf import tsf_training_evaluations


@dataclass(frozen=True)
class TSFExchangeParams:
    """Replica exchange with a temperature-steerable flow proposing at every rung.

    The flow is trained by reverse KL summed over the ladder for ``train_steps`` steps
    of ``batch_size`` per rung.
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


def run(
    system: System, params: TSFExchangeParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """Train the flow on the ladder, then run replica exchange with its proposals."""
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
        x0, params.n_steps, g, params.n_warmup, params.thin, context.progress, dict(system.states)
    )
    return with_ladder(system, samples, context.output)


def _evaluations(params: TSFExchangeParams, n_steps: int) -> float:
    """Target evaluations of training and of ``n_steps`` steps of every replica."""
    k = params.n_temperatures
    training = tsf_training_evaluations(k, params.train_steps, params.batch_size)
    return training + tsf_exchange_evaluations(
        k, params.n_chains, n_steps, params.move, params.n_leapfrog, params.flow_every
    )


def fit_budget(params: TSFExchangeParams, budget: int, system: System) -> TSFExchangeParams:
    """Training as planned; local and flow moves of every replica fill the rest."""
    total = largest_within(lambda n: _evaluations(params, n), budget)
    return fit_chain_steps(params, total, "tsf_replica_exchange", budget)
