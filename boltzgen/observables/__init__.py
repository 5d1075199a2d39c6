"""Observables of configurations and the named states cards build from them.

Importing this package registers every state kind (:mod:`boltzgen.observables.states`):
coordinate intervals here, φ intervals in :mod:`boltzgen.observables.peptides`.
Particle observables (g_αβ, F_s, overlap) are in :mod:`boltzgen.observables.particles`.
"""

from boltzgen.observables import particles, peptides, states

__all__ = ["particles", "peptides", "states"]
