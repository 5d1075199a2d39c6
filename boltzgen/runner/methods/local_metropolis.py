"""The `local_metropolis` method: checkerboard local Metropolis sweeps of a lattice field."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.base import MethodContext
from boltzgen.runner.methods.budget import largest_within, too_small
from boltzgen.samplers.local_metropolis import LocalMetropolis, local_metropolis_evaluations
from boltzgen.systems import System


@dataclass(frozen=True)
class LocalMetropolisParams:
    """``n_chains`` chains from the system's starts; ``step_size`` the proposal half-width."""

    n_chains: int = 64
    n_warmup: int = 200
    n_steps: int = 2000
    step_size: float = 1.0


def run(
    system: System,
    params: LocalMetropolisParams,
    generator: torch.Generator,
    context: MethodContext,
) -> WeightedSamples:
    x0 = system.dispersed_starts(params.n_chains, generator)
    sampler = LocalMetropolis(system.energy, params.step_size)
    return sampler.sample(x0, params.n_steps, generator, params.n_warmup)


def fit_budget(params: LocalMetropolisParams, budget: int, system: System) -> LocalMetropolisParams:
    """Sweeps the budget covers, a tenth of them (at most ``n_warmup``) as warm-up."""
    n_sets = len(LocalMetropolis(system.energy).sets)

    def cost(n: int) -> int:
        return local_metropolis_evaluations(
            params.n_chains, min(params.n_warmup, n // 10), n, n_sets
        )

    n_steps = largest_within(cost, budget)
    if n_steps < 1:
        raise too_small("local_metropolis", budget, cost(1))
    return replace(params, n_warmup=min(params.n_warmup, n_steps // 10), n_steps=n_steps)
