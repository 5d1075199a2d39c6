"""The swap Monte Carlo method: displacements and diameter swaps on a particle system.

Ninarello, Berthier & Coslovich, PRX 7, 021039 (2017), arXiv 1704.08864. With
``swap_probability: 0`` it is local Metropolis Monte Carlo. Local moves are charged 1/N
of an evaluation per particle whose interactions are computed (docs/particles.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from boltzgen.energies.particles import ParticleEnergy
from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.base import MethodContext
from boltzgen.runner.methods.budget import largest_within, too_small
from boltzgen.samplers.swap_mc import (
    SwapMCConfig,
    SwapMonteCarlo,
    keeps_table,
    swap_mc_evaluations,
)
from boltzgen.systems import System

EXPECTED_SHARE = 0.95
"""The move types are random, so the charge fluctuates: the expected cost fills this share."""


@dataclass(frozen=True)
class SwapMCParams(SwapMCConfig):
    """The sampler's settings (:class:`~boltzgen.samplers.swap_mc.SwapMCConfig`) and run length."""

    n_chains: int = 8
    n_warmup: int = 20
    n_sweeps: int = 200


def _sampler(system: System, params: SwapMCParams) -> SwapMonteCarlo:
    if not isinstance(system.energy, ParticleEnergy):
        raise ValueError(f"method swap_mc needs a particle system; {system.name} is not one")
    config = SwapMCConfig(
        params.step_size,
        params.swap_probability,
        params.max_diameter_difference,
        params.record_every,
        params.pair_table,
    )
    return SwapMonteCarlo(system.energy, config)


def run(
    system: System, params: SwapMCParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """``n_warmup`` discarded sweeps, then ``n_sweeps`` recorded, from the system's starts."""
    x0 = system.dispersed_starts(params.n_chains, generator)
    return _sampler(system, params).sample(
        x0, params.n_sweeps, generator, params.n_warmup, context.progress
    )


def fit_budget(params: SwapMCParams, budget: int, system: System) -> SwapMCParams:
    """Sweeps (a tenth of them warm-up at most) whose expected cost fills 95 % of the budget."""
    sampler = _sampler(system, params)
    q = sampler.eligible_fraction
    table = keeps_table(sampler.config, params.n_chains, sampler.energy.n_particles)

    def cost(n: int) -> float:
        return swap_mc_evaluations(params.n_chains, n, params.swap_probability, q, table)

    total = largest_within(cost, int(EXPECTED_SHARE * budget))
    if total < 2:
        raise too_small("swap_mc", budget, cost(2))
    warmup = min(params.n_warmup, total // 10)
    return replace(params, n_warmup=warmup, n_sweeps=total - warmup)
