"""The flow-HMC method: HMC in the trained flow's latent space.

Foreman et al. 2021, "HMC with normalizing flows", arXiv 2112.01586: HMC on the
pulled-back potential u(f(z)) − log|det ∂f/∂z|. The generator is shared with the
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
from boltzgen.samplers.flow_mcmc import FlowHMC, flow_hmc_evaluations
from boltzgen.systems import System


@dataclass(frozen=True)
class FlowHMCParams:
    """HMC in the flow's latent space on u(f(z)) − log|det ∂f/∂z| (Foreman et al. 2021)."""

    generator: BoltzmannGeneratorParams = field(default_factory=BoltzmannGeneratorParams)
    n_chains: int = 256
    n_warmup: int = 200
    n_steps: int = 500
    n_leapfrog: int = 10
    step_size: float = 0.05
    target_acceptance: float = 0.8
    thin: int = 1

    def __post_init__(self) -> None:
        if self.generator.symmetrize != "none":
            raise ValueError(
                "flow_hmc moves in the flow's latent space, which a symmetrised generator "
                "(a mixture of two maps) does not have: leave generator.symmetrize at none"
            )


def run(
    system: System, params: FlowHMCParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """Train (or load) the shared generator, then run ``n_chains`` latent HMC chains."""
    trained = shared_generator(system, params.generator, generator, context)
    sampler = FlowHMC(
        trained.model,
        system.energy,
        params.step_size,
        params.n_leapfrog,
        params.target_acceptance,
    )
    samples = sampler.sample(
        params.n_chains,
        params.n_steps,
        trained.draws(),
        params.n_warmup,
        params.thin,
        progress=context.progress,
    )
    return to_cpu(trained.label(samples))


def fit_budget(params: FlowHMCParams, budget: int, system: System) -> FlowHMCParams:
    """Training as planned; warm-up and sampling steps spend the rest."""
    planned = planned_training_evals(params.generator, system)
    total = largest_within(
        lambda n: planned + flow_hmc_evaluations(params.n_chains, n, params.n_leapfrog), budget
    )
    return fit_chain_steps(params, total, "flow_hmc", budget)
