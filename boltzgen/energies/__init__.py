"""Energies: the reduced-potential contract, toy systems, particles in a box, lattice fields,
the OpenMM bridge."""

from boltzgen.energies.base import Energy, EvaluationCounter, TemperedEnergy
from boltzgen.energies.exact import ExactLogZ, ExactObservables, ExactReference
from boltzgen.energies.forcefield import TorchForceField, UnsupportedForceError, unsupported_forces
from boltzgen.energies.lattice import IsingGaussian, Phi4, U1Wilson
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
    "ExactLogZ",
    "ExactObservables",
    "ExactReference",
    "GaussianMixture",
    "IsingGaussian",
    "ManyWell",
    "OpenMMEnergy",
    "ParticleEnergy",
    "Phi4",
    "TemperedEnergy",
    "TorchForceField",
    "U1Wilson",
    "UnsupportedForceError",
    "register_energy_kind",
    "unsupported_forces",
]
