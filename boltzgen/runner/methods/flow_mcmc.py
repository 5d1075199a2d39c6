"""The flow-MCMC method: independence Metropolis with proposals from the trained flow.

Albergo, Kanwar, Shanahan 2019, "Flow-based generative models for Markov chain Monte
Carlo in lattice field theory", arXiv 1904.12072. The generator is shared with the
system's other flow methods (:mod:`~boltzgen.runner.methods.boltzmann_generator`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.base import MethodContext, to_cpu
from boltzgen.runner.methods.boltzmann_generator import (
    BoltzmannGeneratorParams,
    planned_training_evals,
    shared_generator,
)
from boltzgen.runner.methods.budget import fit_chain_steps, largest_within
from boltzgen.samplers.flow_mcmc import FlowIndependenceMetropolis, independence_evaluations
from boltzgen.systems import System


@dataclass(frozen=True)
class FlowMCMCParams:
    """Independence Metropolis with flow proposals (Albergo et al. 2019)."""

    generator: BoltzmannGeneratorParams = field(default_factory=BoltzmannGeneratorParams)
    n_chains: int = 256
    n_warmup: int = 100
    n_steps: int = 1000
    thin: int = 1


def run(
    system: System, params: FlowMCMCParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """Train (or load) the shared generator, then run ``n_chains`` independence chains."""
    trained = shared_generator(system, params.generator, generator, context)
    sampler = FlowIndependenceMetropolis(trained.model, system.energy)
    samples = sampler.sample(
        params.n_chains,
        params.n_steps,
        trained.draws(),
        params.n_warmup,
        params.thin,
        progress=context.progress,
    )
    return to_cpu(trained.label(samples))


def fit_budget(params: FlowMCMCParams, budget: int, system: System) -> FlowMCMCParams:
    """Training as planned; warm-up and sampling steps spend the rest."""
    planned = planned_training_evals(params.generator, system)
    total = largest_within(lambda n: planned + independence_evaluations(params.n_chains, n), budget)
    return fit_chain_steps(params, total, "flow_mcmc", budget)
