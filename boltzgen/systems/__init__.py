"""The system catalog: one YAML card per system in ``systems/``.

A card names how to build the energy, its temperature, a valid starting
configuration, named states and the free-energy differences between them, and
where its reference comes from (exact answers come from the energy itself, see
:class:`~boltzgen.energies.exact.ExactReference`). Each entry of ``states`` is built by
its registered kind (:mod:`boltzgen.observables.states`). The cards and their structure
files are installed as the package ``boltzgen.catalog``. For example
``systems/double_well_2d.yaml``::

    name: double_well_2d
    description: The Boltzmann-generators double well (Noé et al. 2019).
    energy: {kind: double_well, params: {n_copies: 1, q4: 0.25, q2: -3.0, q1: 1.0, k: 1.0}}
    temperature: 1.0
    initial_positions: [-2.53, 0.0]
    states:
      left: {coordinate: 0, max: 0.0}
      right: {coordinate: 0, min: 0.0}
    free_energies: [{a: left, b: right}]      # reported as right_vs_left = −ln(P_right/P_left)
    reference: {kind: exact}

``load_system(name_or_path)`` returns a :class:`System`. The package has three modules:
:mod:`~boltzgen.systems.cards` (cards → systems), :mod:`~boltzgen.systems.system` (the
:class:`System`) and :mod:`~boltzgen.systems.references` (its exact or stored reference
answers).
"""

from boltzgen.observables.states import State
from boltzgen.systems.cards import (
    CATALOG,
    build_system,
    list_systems,
    load_system,
    with_overrides,
)
from boltzgen.systems.references import (
    MIN_TRANSITIONS,
    ReferenceValue,
    StoredReference,
    SystemReferences,
    count_transitions,
    md_reference_value,
)
from boltzgen.systems.system import System

__all__ = [
    "CATALOG",
    "MIN_TRANSITIONS",
    "ReferenceValue",
    "State",
    "StoredReference",
    "System",
    "SystemReferences",
    "build_system",
    "count_transitions",
    "list_systems",
    "load_system",
    "md_reference_value",
    "with_overrides",
]
