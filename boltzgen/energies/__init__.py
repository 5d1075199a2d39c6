"""Energies: the reduced-potential contract, toy systems, particles in a box, the OpenMM bridge."""

from boltzgen.energies.base import Energy, EvaluationCounter, TemperedEnergy
from boltzgen.energies.exact import ExactReference
from boltzgen.energies.forcefield import TorchForceField, UnsupportedForceError, unsupported_forces
from boltzgen.energies.openmm import OpenMMEnergy
from boltzgen.energies.particles import ParticleEnergy
from boltzgen.energies.registry import ENERGY_KINDS, register_energy_kind
from boltzgen.energies.toy import (
    CorrelatedGaussian,
    DoubleWell,
    DoubleWell2D,
    GaussianMixture,
    ManyWell,
)

__all__ = [
    "ENERGY_KINDS",
    "CorrelatedGaussian",
    "DoubleWell",
    "DoubleWell2D",
    "Energy",
    "EvaluationCounter",
    "ExactReference",
    "GaussianMixture",
    "ManyWell",
    "OpenMMEnergy",
    "ParticleEnergy",
    "TemperedEnergy",
    "TorchForceField",
    "UnsupportedForceError",
    "register_energy_kind",
    "unsupported_forces",
]
