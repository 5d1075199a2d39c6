"""What the lattice energies share: a dimensionless action whose couplings set the temperature.

A lattice field theory's weight is e^{−S} with S in lattice units, so its reduced energy
is the action itself, u = S, at temperature 1. There is no separate temperature: a
"temperature" T would weight e^{−S/T}, which is the same theory at rescaled couplings
(U(1): β → β/T; the Ising spin model: K → K/T; φ⁴, after φ = √T ψ: λ → λT). A card of a
lattice energy therefore takes its temperature through its couplings, never through
``temperature`` (see :func:`boltzgen.systems.build_system`); each action states the
rescaled couplings in :meth:`LatticeAction.coupling_at_temperature`. Samplers that
temper internally (parallel tempering, population annealing) still use
:meth:`~boltzgen.energies.base.Energy.at_temperature`.
"""

from __future__ import annotations

import abc

from boltzgen.energies.base import Energy


class LatticeAction(Energy):
    """A dimensionless lattice action u = S at temperature 1 (lattice units)."""

    def __init__(self, event_shape: tuple[int, ...]):
        super().__init__(event_shape, temperature=1.0)

    @abc.abstractmethod
    def coupling_at_temperature(self, temperature: float) -> str:
        """How e^{−S/T} at ``temperature`` T reads as this action at other couplings.

        One sentence naming the card overrides (and any field rescaling) that give the
        same distribution, for error messages that refuse a ``temperature`` override.
        """
