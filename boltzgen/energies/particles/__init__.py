"""Particles in a periodic box: Kob–Andersen mixtures and polydisperse soft spheres.

Modules: :mod:`box` (wrapping, minimum image, lattice starts), :mod:`neighbours`
(all pairs or a cell list), :mod:`potentials` (cut inverse powers, shifted or smoothed),
:mod:`energy` (:class:`ParticleEnergy`) and :mod:`models` (the registered glass formers).
"""

from boltzgen.energies.particles.energy import ParticleEnergy
from boltzgen.energies.particles.models import (
    kob_andersen,
    kob_andersen_ternary,
    polydisperse_soft_spheres,
)
from boltzgen.energies.particles.potentials import CutInversePowers

__all__ = [
    "CutInversePowers",
    "ParticleEnergy",
    "kob_andersen",
    "kob_andersen_ternary",
    "polydisperse_soft_spheres",
]
