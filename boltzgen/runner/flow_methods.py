"""Experiment methods that sample with a trained flow: SMC, flow MCMC, flow HMC.

Each names a ``generator`` (the Boltzmann-generator settings: flow, training) and its
own sampler settings. Methods of one experiment with the same generator settings and
seed share one trained flow: it is trained once, in
``RUN_DIR/<system>/_generators/<key>-seed<k>/``, under a file lock, and every method
that uses it is charged its full training cost — the comparison stays fair.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from boltzgen.records import WeightedSamples
from boltzgen.runner.methods import (
    BoltzmannGeneratorParams,
    TrainedGenerator,
    fit_chain_steps,
    planned_training_evals,
    to_cpu,
    train_generator,
)
from boltzgen.samplers.flow_mcmc import FlowHMC, FlowIndependenceMetropolis
from boltzgen.samplers.smc import SMCSampler
from boltzgen.systems import System


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared_generator(
    system: System,
    params: BoltzmannGeneratorParams,
    generator: torch.Generator,
    checkpoint_dir: Path | None,
    progress: bool,
) -> TrainedGenerator:
    """Train (or load) the generator shared by every method with these settings and seed."""
    if checkpoint_dir is None:
        return train_generator(system, params, generator, None, progress)
    text = json.dumps(dataclasses.asdict(params), sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    task = checkpoint_dir.parent
    folder = task.parent.parent / "_generators" / f"{key}-{task.name}"
    with _locked(folder / "lock"):
        return train_generator(system, params, generator, folder, progress)


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


def run_smc(
    system: System,
    params: SMCParams,
    generator: torch.Generator,
    checkpoint_dir: Path | None,
    progress: bool,
) -> WeightedSamples:
    trained = shared_generator(system, params.generator, generator, checkpoint_dir, progress)
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
    return to_cpu(trained.label(sampler.sample(params.n_particles, trained.draws(), progress)))


def _smc_cost(params: SMCParams) -> int:
    leapfrog = params.n_leapfrog if params.kernel == "hmc" else 1
    return params.n_particles * (1 + params.n_steps * params.n_mcmc * leapfrog)


def fit_smc(params: SMCParams, budget: int, system: System) -> SMCParams:
    """Training as planned; the particles sized to spend the rest."""
    left = budget - planned_training_evals(params.generator, system)
    per_particle = _smc_cost(replace(params, n_particles=1))
    n = left // per_particle
    if n < 2:
        raise ValueError(f"smc: a budget of {budget} evaluations leaves {left} after training")
    return replace(params, n_particles=int(n))


@dataclass(frozen=True)
class FlowMCMCParams:
    """Independence Metropolis with flow proposals (Albergo et al. 2019)."""

    generator: BoltzmannGeneratorParams = field(default_factory=BoltzmannGeneratorParams)
    n_chains: int = 256
    n_warmup: int = 100
    n_steps: int = 1000
    thin: int = 1


def run_flow_mcmc(
    system: System,
    params: FlowMCMCParams,
    generator: torch.Generator,
    checkpoint_dir: Path | None,
    progress: bool,
) -> WeightedSamples:
    trained = shared_generator(system, params.generator, generator, checkpoint_dir, progress)
    sampler = FlowIndependenceMetropolis(trained.model, system.energy)
    samples = sampler.sample(
        params.n_chains,
        params.n_steps,
        trained.draws(),
        params.n_warmup,
        params.thin,
        progress=progress,
    )
    return to_cpu(trained.label(samples))


def fit_flow_mcmc(params: FlowMCMCParams, budget: int, system: System) -> FlowMCMCParams:
    """One evaluation per chain and step (plus the initial draw), after training."""
    left = budget - planned_training_evals(params.generator, system) - params.n_chains
    return fit_chain_steps(params, left // params.n_chains, "flow_mcmc", budget)


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


def run_flow_hmc(
    system: System,
    params: FlowHMCParams,
    generator: torch.Generator,
    checkpoint_dir: Path | None,
    progress: bool,
) -> WeightedSamples:
    trained = shared_generator(system, params.generator, generator, checkpoint_dir, progress)
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
        progress=progress,
    )
    return to_cpu(trained.label(samples))


def fit_flow_hmc(params: FlowHMCParams, budget: int, system: System) -> FlowHMCParams:
    """n_leapfrog evaluations per chain and step, after training."""
    left = budget - planned_training_evals(params.generator, system) - params.n_chains
    return fit_chain_steps(
        params, left // (params.n_chains * params.n_leapfrog), "flow_hmc", budget
    )
