"""The particle models as ``openmm.System`` s, for OpenMM Langevin dynamics.

One ``CustomNonbondedForce`` with a periodic cutoff at the largest pair cutoff, the pair
potential written out with its smoothing coefficients and a step function at x_c = r/σ_ij,
and σ_ij, ε_ij tabulated by species. Reduced units map onto OpenMM's so that a reduced
temperature T* runs as T* kelvin: σ_AA = 1 nm, ε_AA = R·(1 K) = 0.0083145 kJ/mol, and
masses of R amu make the LJ time τ = σ√(m/ε) one picosecond (a step of 0.005 τ is 5 fs).
Then U_OpenMM / (R·T* K) = U*/T* = u.

OpenMM works in three dimensions. A 2-D model lies in the plane z = 0 of a box whose third
side is three cutoffs (more than the two OpenMM asks for): with every z equal, every pair
vector lies in the plane, the energy is the 2-D one and no force has a z component, so an
integrator that gives no particle a z velocity
(:func:`boltzgen.samplers.md.planar_langevin_integrator`) keeps the dynamics in the plane.
"""

from __future__ import annotations

import openmm
import torch

from boltzgen.energies.particles.energy import ParticleEnergy
from boltzgen.energies.units import MOLAR_GAS_CONSTANT


def pair_expression(energy: ParticleEnergy) -> str:
    """The pair energy in OpenMM's expression language, σ and ε from species tables."""
    c0, c2, c4 = energy.potential.coefficients
    powers = " + ".join(f"({a})*x^(-{p})" for a, p in energy.potential.terms)
    return (
        f"scale*eps*step({energy.potential.x_cut} - x)*({powers} + ({c0}) + ({c2})*x^2"
        f" + ({c4})*x^4); x = r/sig; sig = sigmas(s1, s2); eps = epsilons(s1, s2)"
    )


def species_tables(energy: ParticleEnergy) -> tuple[torch.Tensor, torch.Tensor]:
    """σ and ε ``[S, S]`` between species, read from one representative of each."""
    first = torch.stack([torch.nonzero(energy.species == s)[0, 0] for s in energy.species.unique()])
    return energy.sigma2.sqrt()[first][:, first], energy.epsilon[first][:, first]


def to_openmm(energy: ParticleEnergy, energy_unit: float = MOLAR_GAS_CONSTANT) -> openmm.System:
    """``energy`` as an OpenMM system; ``energy_unit`` is ε_AA in kJ/mol (R·1 K by default).

    A 2-D model is laid in the plane z = 0 of a box 3·r_max deep (see the module docstring).
    """
    if energy.box.numel() not in (2, 3):
        raise ValueError(f"OpenMM takes 2-D or 3-D boxes, this box has {energy.box.numel()} sides")
    sigma, epsilon = species_tables(energy)
    s = sigma.shape[0]
    force = openmm.CustomNonbondedForce(pair_expression(energy))
    force.addGlobalParameter("scale", energy_unit)
    force.addPerParticleParameter("s")
    force.addTabulatedFunction("sigmas", openmm.Discrete2DFunction(s, s, sigma.T.ravel().tolist()))
    force.addTabulatedFunction(
        "epsilons", openmm.Discrete2DFunction(s, s, epsilon.T.ravel().tolist())
    )
    force.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
    force.setCutoffDistance(energy.r_max)
    system = openmm.System()
    for species in energy.species.tolist():
        system.addParticle(energy_unit)
        force.addParticle([float(species)])
    system.addForce(force)
    a, b, c = [*energy.box.tolist(), 3.0 * energy.r_max][:3]
    system.setDefaultPeriodicBoxVectors(
        openmm.Vec3(a, 0, 0), openmm.Vec3(0, b, 0), openmm.Vec3(0, 0, c)
    )
    return system
