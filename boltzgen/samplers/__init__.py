"""Samplers: everything that draws configurations returns :class:`WeightedSamples`."""

from boltzgen.samplers.base import Cost, CostMeter, Sampler, WeightedSamples
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.mcmc import HMC
from boltzgen.samplers.md import MDConfig, MolecularDynamics

__all__ = [
    "HMC",
    "BoltzmannGenerator",
    "Cost",
    "CostMeter",
    "MDConfig",
    "MolecularDynamics",
    "Sampler",
    "WeightedSamples",
]
