"""Samplers: everything that draws configurations returns :class:`WeightedSamples`."""

from boltzgen.records import Cost, CostMeter, WeightedSamples
from boltzgen.samplers.base import Sampler
from boltzgen.samplers.flow_mcmc import FlowHMC, FlowIndependenceMetropolis, PulledBackEnergy
from boltzgen.samplers.flow_perturbation import FlowPerturbation
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.mcmc import HMC
from boltzgen.samplers.md import MDConfig, MolecularDynamics
from boltzgen.samplers.parallel_tempering import ParallelTempering, geometric_ladder
from boltzgen.samplers.smc import SMCSampler
from boltzgen.samplers.snf import (
    LangevinBlock,
    MALABlock,
    MetropolisBlock,
    StochasticNormalizingFlow,
)
from boltzgen.samplers.symmetrized import SymmetrizedGenerator
from boltzgen.samplers.tsf_exchange import TSFReplicaExchange

__all__ = [
    "HMC",
    "BoltzmannGenerator",
    "Cost",
    "CostMeter",
    "FlowHMC",
    "FlowIndependenceMetropolis",
    "FlowPerturbation",
    "LangevinBlock",
    "MALABlock",
    "MDConfig",
    "MetropolisBlock",
    "MolecularDynamics",
    "ParallelTempering",
    "PulledBackEnergy",
    "SMCSampler",
    "Sampler",
    "StochasticNormalizingFlow",
    "SymmetrizedGenerator",
    "TSFReplicaExchange",
    "WeightedSamples",
    "geometric_ladder",
]
