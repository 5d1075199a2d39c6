"""Samplers: everything that draws configurations returns :class:`WeightedSamples`."""

from boltzgen.samplers.base import Cost, CostMeter, Sampler, WeightedSamples
from boltzgen.samplers.flow_mcmc import FlowHMC, FlowIndependenceMetropolis, PulledBackEnergy
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.mcmc import HMC
from boltzgen.samplers.md import MDConfig, MolecularDynamics
from boltzgen.samplers.parallel_tempering import ParallelTempering, geometric_ladder
from boltzgen.samplers.smc import SMCSampler

__all__ = [
    "HMC",
    "BoltzmannGenerator",
    "Cost",
    "CostMeter",
    "FlowHMC",
    "FlowIndependenceMetropolis",
    "MDConfig",
    "MolecularDynamics",
    "ParallelTempering",
    "PulledBackEnergy",
    "SMCSampler",
    "Sampler",
    "WeightedSamples",
    "geometric_ladder",
]
