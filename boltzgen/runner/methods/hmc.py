"""The HMC method: batched Hamiltonian Monte Carlo from the system's dispersed starts.

Duane, Kennedy, Pendleton, Roweth 1987; Neal, "MCMC using Hamiltonian dynamics",
arXiv 1206.1901. Warm-up tunes the step size by dual averaging (Hoffman & Gelman,
"The No-U-Turn Sampler", arXiv 1111.4246).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.base import MethodContext
from boltzgen.runner.methods.budget import fit_chain_steps, largest_within
from boltzgen.samplers.mcmc import HMC, hmc_evaluations
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


def run(
    system: System, params: HMCParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """``n_warmup`` adaptation steps, then ``n_steps`` kept every ``thin``-th."""
    x0 = system.dispersed_starts(params.n_chains, generator)
    hmc = HMC(system.energy, params.step_size, params.n_leapfrog, params.target_acceptance)
    return hmc.sample(x0, params.n_steps, generator, params.n_warmup, params.thin, context.progress)


def fit_budget(params: HMCParams, budget: int, system: System) -> HMCParams:
    """Warm-up and sampling steps that the budget covers; warm-up kept ≤ a third."""
    total = largest_within(lambda n: hmc_evaluations(params.n_chains, n, params.n_leapfrog), budget)
    return fit_chain_steps(params, total, "hmc", budget)
