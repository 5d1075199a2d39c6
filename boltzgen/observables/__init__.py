"""Observables of configurations and the named states cards build from them.

Importing this package registers every state kind (:mod:`boltzgen.observables.states`):
coordinate intervals here, φ intervals in :mod:`boltzgen.observables.peptides`.
"""

from boltzgen.observables import peptides, states

__all__ = ["peptides", "states"]
