"""The temperature-map method: swap MC at T_hot, a flow trained to map it to T, weighted samples.

Jung, Biroli & Berthier, arXiv 2404.09914. Hot equilibrium samples come from swap Monte
Carlo at ``t_hot_factor``·T (charged as training cost, like the flow's training), the
periodic particle flow is trained on them by reverse KL towards the system's energy, and
the hot samples are mapped and importance-weighted; ``info.log_z_ratio`` is
ln Z(T) − ln Z(T_hot).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from boltzgen.energies.particles import ParticleEnergy
from boltzgen.flows.particles import periodic_particle_flow
from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.base import MethodContext
from boltzgen.runner.methods.budget import largest_within, too_small
from boltzgen.samplers.swap_mc import (
    SwapMCConfig,
    SwapMonteCarlo,
    keeps_table,
    swap_mc_evaluations,
)
from boltzgen.samplers.temperature_map import TemperatureMap, temperature_map_evaluations
from boltzgen.systems import System
from boltzgen.training.temperature_map import train_temperature_map


@dataclass(frozen=True)
class TemperatureMapParams:
    """Hot swap-MC chains, the flow, its training, and how many hot samples are mapped."""

    t_hot_factor: float = 2.0
    n_hot_chains: int = 16
    hot_warmup: int = 20
    hot_sweeps: int = 20
    step_size: float = 0.1
    swap_probability: float = 0.2
    max_diameter_difference: float = float("inf")
    n_layers: int = 4
    hidden: int = 32
    n_bins: int = 8
    train_steps: int = 200
    batch_size: int = 32
    lr: float = 1e-3


def _hot_sampler(system: System, params: TemperatureMapParams) -> SwapMonteCarlo:
    if not isinstance(system.energy, ParticleEnergy):
        raise ValueError(f"method temperature_map needs a particle system; {system.name} is not")
    hot = system.energy.at_temperature(params.t_hot_factor * system.temperature)
    config = SwapMCConfig(params.step_size, params.swap_probability, params.max_diameter_difference)
    return SwapMonteCarlo(hot, config)


def run(
    system: System, params: TemperatureMapParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """Hot samples, training, then the weighted map of every hot sample."""
    sampler = _hot_sampler(system, params)
    x0 = system.dispersed_starts(params.n_hot_chains, generator)
    hot = sampler.sample(x0, params.hot_sweeps, generator, params.hot_warmup, context.progress)
    z = hot.x - system.energy.box * torch.floor(hot.x / system.energy.box)
    energy = system.energy
    flow = periodic_particle_flow(
        energy.box, energy.species, params.n_layers, params.n_bins, params.hidden
    ).double()
    history = train_temperature_map(
        flow, energy, z, generator, params.train_steps, params.batch_size, params.lr
    )
    samples = TemperatureMap(flow, energy).sample(z, hot.energies)
    training = hot.cost + history.cost
    info = {**samples.info, "hot": hot.info, "final_loss": history.losses[-1]}
    return replace(samples, cost=samples.cost.with_training(training), info=info)


def _fixed(params: TemperatureMapParams, system: System) -> float:
    """Hot sampling plus mapping: what does not depend on the training steps."""
    sampler = _hot_sampler(system, params)
    q = sampler.eligible_fraction
    table = keeps_table(sampler.config, params.n_hot_chains, sampler.energy.n_particles)
    sweeps = params.hot_warmup + params.hot_sweeps
    hot = swap_mc_evaluations(params.n_hot_chains, sweeps, params.swap_probability, q, table)
    return hot + temperature_map_evaluations(params.n_hot_chains * params.hot_sweeps)


def fit_budget(params: TemperatureMapParams, budget: int, system: System) -> TemperatureMapParams:
    """Training steps that fill 95 % of the budget after the hot sampling and the mapping."""
    fixed = _fixed(params, system)
    steps = largest_within(lambda n: fixed + n * params.batch_size, int(0.95 * budget))
    if steps < 1:
        raise too_small("temperature_map", budget, fixed + params.batch_size)
    return replace(params, train_steps=steps)
