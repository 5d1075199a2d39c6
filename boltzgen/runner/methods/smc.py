"""The SMC method: sequential Monte Carlo from the trained flow to the target.

Tan et al. 2025, "Scalable equilibrium sampling with sequential Boltzmann generators",
arXiv 2502.18462: particles drawn from the flow are annealed along
u_β = (1 − β)(−log q) + βu by reweighting, resampling and MCMC moves. The generator is
shared with the system's other flow methods (:mod:`~boltzgen.runner.methods.boltzmann_generator`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.base import MethodContext, to_cpu
from boltzgen.runner.methods.boltzmann_generator import (
    BoltzmannGeneratorParams,
    planned_training_evals,
    shared_generator,
)
from boltzgen.runner.methods.budget import largest_within
from boltzgen.samplers.smc import SMCSampler, smc_evaluations
from boltzgen.systems import System


@dataclass(frozen=True)
class SMCParams:
    """SMC from the trained flow to the target (Tan et al. 2025).

    ``n_runs`` independent runs share the particles; their spread gives the error bars.
    """

    generator: BoltzmannGeneratorParams = field(default_factory=BoltzmannGeneratorParams)
    n_particles: int = 10_000
    n_steps: int = 20
    schedule: Literal["linear", "geometric"] = "linear"
    kernel: Literal["ula", "mala", "hmc"] = "mala"
    step_size: float = 0.05
    n_mcmc: int = 1
    n_leapfrog: int = 5
    resample_threshold: float = 0.5
    target_acceptance: float | None = 0.6
    clip_fraction: float | None = None
    n_runs: int = 8


def run(
    system: System, params: SMCParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """Train (or load) the shared generator, then anneal ``n_particles`` particles."""
    trained = shared_generator(system, params.generator, generator, context)
    sampler = SMCSampler(
        trained.model,
        system.energy,
        n_steps=params.n_steps,
        schedule=params.schedule,
        kernel=params.kernel,
        step_size=params.step_size,
        resample_threshold=params.resample_threshold,
        n_mcmc=params.n_mcmc,
        clip_fraction=params.clip_fraction,
        target_acceptance=params.target_acceptance,
        n_leapfrog=params.n_leapfrog,
        n_runs=params.n_runs,
    )
    samples = sampler.sample(params.n_particles, trained.draws(), context.progress)
    return to_cpu(trained.label(samples))


def fit_budget(params: SMCParams, budget: int, system: System) -> SMCParams:
    """Training as planned; the particles sized to spend the rest."""
    left = budget - planned_training_evals(params.generator, system)
    n = largest_within(
        lambda n: smc_evaluations(
            n, params.n_steps, params.n_mcmc, params.kernel, params.n_leapfrog
        ),
        left,
    )
    if n < 2:
        raise ValueError(f"smc: a budget of {budget} evaluations leaves {left} after training")
    return replace(params, n_particles=n)
