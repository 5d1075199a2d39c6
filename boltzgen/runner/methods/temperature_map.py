"""The temperature-map method: swap MC at T_hot, a flow trained to map it to T, weighted samples.

Jung, Biroli & Berthier, arXiv 2404.09914. Hot equilibrium samples come from swap Monte
Carlo at ``t_hot_factor``·T (charged as training cost, like the flow's training), a
particle flow is trained by reverse KL towards the system's energy, and the hot samples
are mapped and importance-weighted; ``info.log_z_ratio`` is ln Z(T) − ln Z(T_hot).

By default (``fresh_hot_samples``) training never sees the recorded hot samples: the hot
chains continue, one sweep per step, and each step trains on their current
configurations (a fixed set of a few hundred is fitted rather than learned from), with
the Stein control variate (``control_variate``, one force evaluation per configuration)
and the probe flow (``architecture: probe``; ``axis`` is the per-axis flow). Starting those
chains (one evaluation each) is charged to training with the hot run and the steps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from boltzgen.energies.particles import ParticleEnergy
from boltzgen.flows.base import Flow
from boltzgen.flows.particles import periodic_particle_flow, probe_particle_flow
from boltzgen.records import Cost, CostMeter, WeightedSamples
from boltzgen.runner.methods.base import MethodContext
from boltzgen.runner.methods.budget import largest_within, too_small
from boltzgen.samplers.swap_mc import (
    SwapMCConfig,
    SwapMonteCarlo,
    keeps_table,
    swap_mc_evaluations,
    sweep_evaluations,
)
from boltzgen.samplers.temperature_map import (
    HotChains,
    TemperatureMap,
    temperature_map_evaluations,
)
from boltzgen.systems import System
from boltzgen.training.temperature_map import DEFAULT_WEIGHT_DECAY, train_temperature_map


@dataclass(frozen=True)
class TemperatureMapParams:
    """Hot swap-MC chains, the flow, its training, and how many hot samples are mapped.

    ``weight_decay`` is Adam's L2 penalty of the training (its default,
    :data:`~boltzgen.training.temperature_map.DEFAULT_WEIGHT_DECAY`, is the training's).
    """

    t_hot_factor: float = 2.0
    n_hot_chains: int = 16
    hot_warmup: int = 20
    hot_sweeps: int = 20
    step_size: float = 0.1
    swap_probability: float = 0.2
    max_diameter_difference: float = float("inf")
    n_layers: int = 4
    hidden: int = 32
    n_bins: int = 16
    train_steps: int = 200
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    architecture: str = "probe"
    fresh_hot_samples: bool = True
    control_variate: bool = True


def _hot_sampler(system: System, params: TemperatureMapParams) -> SwapMonteCarlo:
    if not isinstance(system.energy, ParticleEnergy):
        raise ValueError(f"method temperature_map needs a particle system; {system.name} is not")
    hot = system.energy.at_temperature(params.t_hot_factor * system.temperature)
    config = SwapMCConfig(params.step_size, params.swap_probability, params.max_diameter_difference)
    return SwapMonteCarlo(hot, config)


def run(
    system: System, params: TemperatureMapParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """Hot samples, training (resumed from the task's checkpoint, the hot stream with it),
    then the weighted map of every hot sample."""
    sampler = _hot_sampler(system, params)
    x0 = system.dispersed_starts(params.n_hot_chains, generator)
    hot = sampler.sample(x0, params.hot_sweeps, generator, params.hot_warmup, context.progress)
    z = hot.x - system.energy.box * torch.floor(hot.x / system.energy.box)
    energy = system.energy
    flow = _flow(energy, params)
    data, start = _hot_stream(sampler, hot.x, params) if params.fresh_hot_samples else (z, Cost())
    t_hot = sampler.energy.temperature if params.control_variate else None
    history = train_temperature_map(
        flow,
        energy,
        data,
        generator,
        params.train_steps,
        params.batch_size,
        params.lr,
        weight_decay=params.weight_decay,
        t_hot=t_hot,
        checkpoint_dir=context.checkpoint,
        progress=context.progress,
    )
    samples = TemperatureMap(flow, energy).sample(z, hot.energies)
    training = hot.cost + start + history.cost
    info = {**samples.info, "hot": hot.info, "final_loss": history.losses[-1]}
    return replace(samples, cost=samples.cost.with_training(training), info=info)


def _hot_stream(
    sampler: SwapMonteCarlo, hot_x: Tensor, params: TemperatureMapParams
) -> tuple[HotChains, Cost]:
    """The stream of fresh hot configurations and what starting it cost.

    Its C chains continue the hot run's last configurations; starting them evaluates each
    once (its energy, or its pair table), which training pays like the hot sweeps.
    """
    meter = CostMeter(sampler.energy)
    with meter.measure():
        stream = HotChains(sampler, hot_x[-params.n_hot_chains :])
    return stream, meter.cost


def _flow(energy: ParticleEnergy, params: TemperatureMapParams) -> Flow:
    args = (energy.box, energy.species, params.n_layers, params.n_bins, params.hidden)
    if params.architecture == "probe":
        return probe_particle_flow(*args).double()
    if params.architecture == "axis":
        return periodic_particle_flow(*args).double()
    raise ValueError(f"architecture must be 'probe' or 'axis', got {params.architecture!r}")


def _step_evaluations(params: TemperatureMapParams, system: System) -> float:
    """One training step: the batch's u_cold, its forces (control variate), a hot sweep."""
    if not params.fresh_hot_samples:
        return params.batch_size * (2 if params.control_variate else 1)
    sampler = _hot_sampler(system, params)
    table = keeps_table(sampler.config, params.n_hot_chains, sampler.energy.n_particles)
    sweep = sweep_evaluations(params.swap_probability, sampler.eligible_fraction, table)
    per_chain = 1 + sweep + (1 if params.control_variate else 0)
    return params.n_hot_chains * per_chain


def _fixed(params: TemperatureMapParams, system: System) -> float:
    """Hot sampling, the stream's start and the mapping: what the training steps do not change."""
    sampler = _hot_sampler(system, params)
    q = sampler.eligible_fraction
    table = keeps_table(sampler.config, params.n_hot_chains, sampler.energy.n_particles)
    sweeps = params.hot_warmup + params.hot_sweeps
    hot = swap_mc_evaluations(params.n_hot_chains, sweeps, params.swap_probability, q, table)
    stream = params.n_hot_chains if params.fresh_hot_samples else 0
    return hot + stream + temperature_map_evaluations(params.n_hot_chains * params.hot_sweeps)


def fit_budget(params: TemperatureMapParams, budget: int, system: System) -> TemperatureMapParams:
    """Training steps that fill 95 % of the budget after the hot sampling and the mapping."""
    fixed = _fixed(params, system)
    step = _step_evaluations(params, system)
    steps = largest_within(lambda n: fixed + n * step, int(0.95 * budget))
    if steps < 1:
        raise too_small("temperature_map", budget, fixed + step)
    return replace(params, train_steps=steps)
