"""The `ising_spins` method: heat-bath or Metropolis spin sweeps of the relaxed Ising model."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from boltzgen.energies.lattice import IsingGaussian
from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.base import MethodContext
from boltzgen.runner.methods.budget import largest_within, too_small
from boltzgen.samplers.ising_spins import IsingSpinSampler, ising_spin_evaluations, random_spins
from boltzgen.systems import System


@dataclass(frozen=True)
class IsingSpinParams:
    """``n_chains`` chains from random spins; ``rule`` is heat_bath or metropolis."""

    n_chains: int = 64
    n_warmup: int = 200
    n_steps: int = 2000
    rule: str = "heat_bath"


def _energy(system: System) -> IsingGaussian:
    if not isinstance(system.energy, IsingGaussian):
        raise ValueError(f"ising_spins samples Ising systems only, not {system.name}")
    return system.energy


def run(
    system: System, params: IsingSpinParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    energy = _energy(system)
    spins = random_spins(params.n_chains, energy.length, generator)
    return IsingSpinSampler(energy, params.rule).sample(
        spins, params.n_steps, generator, params.n_warmup
    )


def fit_budget(params: IsingSpinParams, budget: int, system: System) -> IsingSpinParams:
    """Sweeps the budget covers, a tenth of them (at most ``n_warmup``) as warm-up."""
    _energy(system)

    def cost(n: int) -> int:
        return ising_spin_evaluations(params.n_chains, min(params.n_warmup, n // 10), n)

    n_steps = largest_within(cost, budget)
    if n_steps < 1:
        raise too_small("ising_spins", budget, cost(1))
    return replace(params, n_warmup=min(params.n_warmup, n_steps // 10), n_steps=n_steps)
