"""The population-annealing method: cool a population from ``t_max_factor``·T to T.

Hukushima & Iba 2003 (arXiv cond-mat/0304013); Machta 2010 (arXiv 1006.2812). The
initial population is drawn exactly at the hottest temperature where the system can,
otherwise equilibrated there by the move from the system's start. Particle systems move
by swap (or local) Monte Carlo sweeps, others by random-walk Metropolis steps. The log
Z ratio between the two ends, with its standard error from independent groups, is in
``info``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from boltzgen.energies.exact import ExactReference
from boltzgen.energies.particles import ParticleEnergy
from boltzgen.records import Cost, CostMeter, WeightedSamples
from boltzgen.runner.methods.base import MethodContext
from boltzgen.runner.methods.budget import largest_within, too_small
from boltzgen.runner.methods.swap_mc import EXPECTED_SHARE
from boltzgen.samplers.parallel_tempering import geometric_ladder
from boltzgen.samplers.population_annealing import (
    Move,
    PopulationAnnealing,
    metropolis_move,
    population_annealing_evaluations,
    swap_mc_move,
)
from boltzgen.samplers.swap_mc import SwapMCConfig, SwapMonteCarlo, sweep_evaluations
from boltzgen.systems import System


@dataclass(frozen=True)
class PAParams:
    """A geometric ladder of ``n_temperatures`` from ``t_max_factor``·T down to T.

    ``sweeps_per_temperature`` counts swap-MC sweeps (particles) or Metropolis steps.
    """

    n_replicas: int = 200
    n_groups: int = 10
    n_temperatures: int = 10
    t_max_factor: float = 2.0
    sweeps_per_temperature: int = 2
    n_equilibration: int = 50
    step_size: float = 0.1
    swap_probability: float = 0.2
    max_diameter_difference: float = float("inf")


def _swap_config(params: PAParams) -> SwapMCConfig:
    return SwapMCConfig(params.step_size, params.swap_probability, params.max_diameter_difference)


def _move(system: System, params: PAParams, sweeps: int) -> Move:
    if isinstance(system.energy, ParticleEnergy):
        return swap_mc_move(_swap_config(params), sweeps)
    return metropolis_move(params.step_size, sweeps)


def _ladder(system: System, params: PAParams) -> list[float]:
    t0 = system.temperature
    return geometric_ladder(t0, params.t_max_factor * t0, params.n_temperatures)[::-1]


def _start(
    system: System, params: PAParams, hottest: float, generator: torch.Generator
) -> tuple[Tensor, Cost]:
    """The population at the hottest temperature (exact draws, or equilibrated by moves from
    the uncharged dispersed starts) and what drawing or equilibrating it cost."""
    hot = system.energy.at_temperature(hottest)
    meter = CostMeter(hot)
    if isinstance(hot, ExactReference):
        with meter.measure():
            x = hot.sample_exact(params.n_replicas, generator)
        return x.to(system.initial_positions), meter.cost
    x = system.dispersed_starts(params.n_replicas, generator)
    with meter.measure():
        x, _ = _move(system, params, params.n_equilibration)(hot, x, hot.energy(x), generator)
    return x, meter.cost


def run(
    system: System, params: PAParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """Anneal ``n_replicas`` in ``n_groups`` independent groups down the ladder; the cost
    includes the evaluations and wall seconds of the starting population. Where the hottest
    temperature's ln Z is known exactly, ``info["run_log_z"]`` holds each group's ln Z at T
    (ln Z_hot + its log ratio), which the scores use; elsewhere only the ratio is known and
    the run reports no ln Z."""
    temperatures = _ladder(system, params)
    move = _move(system, params, params.sweeps_per_temperature)
    sampler = PopulationAnnealing(system.energy, temperatures, move, params.n_groups)
    x0, setup = _start(system, params, temperatures[0], generator)
    samples = sampler.sample(x0, generator, context.progress)
    hot = system.energy.at_temperature(temperatures[0])
    info = dict(samples.info)
    if isinstance(hot, ExactReference):
        info["run_log_z"] = [hot.log_z + r for r in info["run_log_z_ratio"]]
    return replace(samples, cost=samples.cost + setup, info=info)


def _per_move(system: System, params: PAParams) -> float:
    """Evaluations per replica of one sweep (particles) or one Metropolis step."""
    if not isinstance(system.energy, ParticleEnergy):
        return 1.0
    q = SwapMonteCarlo(system.energy, _swap_config(params)).eligible_fraction
    return sweep_evaluations(params.swap_probability, q)


def fit_budget(params: PAParams, budget: int, system: System) -> PAParams:
    """The largest population (a multiple of ``n_groups``) that the budget covers."""
    per = _per_move(system, params)
    exact = isinstance(system.energy.at_temperature(_ladder(system, params)[0]), ExactReference)
    setup = 0.0 if exact else 1 + params.n_equilibration * per

    def cost(groups_of: int) -> float:
        n = groups_of * params.n_groups
        sweeps = params.sweeps_per_temperature * per
        return population_annealing_evaluations(n, params.n_temperatures, sweeps) + n * setup

    share = EXPECTED_SHARE if isinstance(system.energy, ParticleEnergy) else 1.0
    size = largest_within(cost, int(share * budget))
    if size < 2:
        raise too_small("population_annealing", budget, cost(2))
    return replace(params, n_replicas=size * params.n_groups)
