"""Observables of configurations and the named states cards build from them.

Importing this package registers every state kind (:mod:`boltzgen.observables.states`):
coordinate intervals here, φ intervals in :mod:`boltzgen.observables.peptides`. Lattice
observables (plaquette, Q², χ₂, |m|, energy density) are in :mod:`boltzgen.observables.lattice`.
"""

from boltzgen.observables import lattice, peptides, states

__all__ = ["lattice", "peptides", "states"]
