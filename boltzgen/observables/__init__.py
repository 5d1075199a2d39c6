"""Observables of configurations and the named states cards build from them.

Importing this package registers every state kind (:mod:`boltzgen.observables.states`):
coordinate intervals here, φ intervals in :mod:`boltzgen.observables.peptides`.
Particle observables (g_αβ, F_s, overlap) are in :mod:`boltzgen.observables.particles`; lattice
observables (plaquette, Q², χ₂, |m|, energy density) in :mod:`boltzgen.observables.lattice`;
the kinds a card may name in :mod:`boltzgen.observables.kinds`.
"""

from boltzgen.observables import kinds, lattice, particles, peptides, states

__all__ = ["kinds", "lattice", "particles", "peptides", "states"]
