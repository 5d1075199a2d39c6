"""The HMC method: batched Hamiltonian Monte Carlo from the system's dispersed starts.

Duane, Kennedy, Pendleton, Roweth 1987; Neal, "MCMC using Hamiltonian dynamics",
arXiv 1206.1901. Warm-up tunes the step size by dual averaging (Hoffman & Gelman,
"The No-U-Turn Sampler", arXiv 1111.4246). On particle systems (stiff pair potentials,
where ε = 0.1 σ is far beyond the leapfrog's stability and a short warm-up accepts
nothing) the step first goes through :func:`initial_step_size` (``search_step_size``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from boltzgen.energies.particles import ParticleEnergy
from boltzgen.records import CostMeter, WeightedSamples
from boltzgen.runner.methods.base import MethodContext
from boltzgen.runner.methods.budget import fit_chain_steps, largest_within
from boltzgen.samplers.mcmc import (
    HMC,
    hmc_evaluations,
    initial_step_size,
    step_search_evaluations,
)
from boltzgen.systems import System


@dataclass(frozen=True)
class HMCParams:
    """Batched HMC: ``n_chains`` chains from the system's dispersed starts."""

    n_chains: int = 256
    n_warmup: int = 500
    n_steps: int = 1000
    n_leapfrog: int = 10
    step_size: float = 0.1
    target_acceptance: float = 0.8
    thin: int = 1
    search_step_size: bool = True


def _searches(params: HMCParams, system: System) -> bool:
    return params.search_step_size and isinstance(system.energy, ParticleEnergy)


def run(
    system: System, params: HMCParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """``n_warmup`` adaptation steps, then ``n_steps`` kept every ``thin``-th."""
    x0 = system.dispersed_starts(params.n_chains, generator)
    step, search = params.step_size, None
    if _searches(params, system):
        meter = CostMeter(system.energy)
        with meter.measure():
            step = initial_step_size(system.energy, x0, params.step_size, generator)
        search = meter.cost
    hmc = HMC(system.energy, step, params.n_leapfrog, params.target_acceptance)
    samples = hmc.sample(
        x0, params.n_steps, generator, params.n_warmup, params.thin, context.progress
    )
    if search is None:
        return samples
    info = {**samples.info, "initial_step_size": step}
    return replace(samples, cost=samples.cost + search, info=info)


def fit_budget(params: HMCParams, budget: int, system: System) -> HMCParams:
    """Warm-up and sampling steps that the budget covers; warm-up kept ≤ a third."""
    search = step_search_evaluations(params.n_chains) if _searches(params, system) else 0
    total = largest_within(
        lambda n: search + hmc_evaluations(params.n_chains, n, params.n_leapfrog), budget
    )
    return fit_chain_steps(params, total, "hmc", budget)
