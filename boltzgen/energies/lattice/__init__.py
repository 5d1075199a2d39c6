"""Lattice field theories on periodic L×L lattices: φ⁴, U(1) gauge links, relaxed Ising.

Each energy is a dimensionless :class:`LatticeAction` (u = S at temperature 1; its
couplings set the temperature) and registers its kind for the cards (``phi4``,
``u1_wilson``, ``ising_gaussian``); the exact solutions of the Ising model (enumeration, transfer
matrix, Kaufman) and of U(1) (character expansion) live beside them.
"""

from boltzgen.energies.lattice.action import LatticeAction
from boltzgen.energies.lattice.ising import IsingGaussian
from boltzgen.energies.lattice.ising_exact import (
    CRITICAL_COUPLING,
    IsingSolution,
    enumerate_ising,
    kaufman_ising,
    kaufman_log_z,
    transfer_matrix_ising,
)
from boltzgen.energies.lattice.phi4 import Phi4
from boltzgen.energies.lattice.u1 import U1Wilson, gauge_transform, plaquette_angles
from boltzgen.energies.lattice.u1_exact import U1Solution, u1_exact

__all__ = [
    "CRITICAL_COUPLING",
    "IsingGaussian",
    "IsingSolution",
    "LatticeAction",
    "Phi4",
    "U1Solution",
    "U1Wilson",
    "enumerate_ising",
    "gauge_transform",
    "kaufman_ising",
    "kaufman_log_z",
    "plaquette_angles",
    "transfer_matrix_ising",
    "u1_exact",
]
