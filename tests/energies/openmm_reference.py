"""Energies and forces of configurations on OpenMM's Reference platform (kJ/mol, kJ/mol/nm)."""

from __future__ import annotations

import numpy as np
import openmm
from openmm import unit

KJ = unit.kilojoule_per_mole


def reference(system: openmm.System, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energies ``[B]`` and forces ``[B, N, 3]`` of positions ``x: [B, N, 3]`` in nm."""
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    energies, forces = [], []
    for row in x:
        context.setPositions(row)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(KJ))
        forces.append(state.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer))
    return np.array(energies), np.array(forces)
