"""Energy kinds a system card may name: a registry filled by the energy modules.

A card's ``energy: {kind: double_well, params: {...}}`` is built by the callable
registered under ``double_well`` with ``params`` as keyword arguments. A new energy
family registers its class where it is defined and needs no edit of the catalog::

    @register_energy_kind("quartic_chain")
    class QuarticChain(Energy):
        def __init__(self, n: int = 4, a: float = 1.0, temperature: float = 1.0): ...

OpenMM-backed molecules are the one kind built by the catalog itself (``kind: openmm``),
because they need a topology and a force field besides parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from boltzgen.energies.base import Energy

EnergyBuilder = Callable[..., Energy]
B = TypeVar("B", bound=EnergyBuilder)

ENERGY_KINDS: dict[str, EnergyBuilder] = {}
"""Every registered energy kind, by the name a card's ``energy.kind`` uses."""


def register_energy_kind(name: str) -> Callable[[B], B]:
    """Decorator: cards naming ``energy.kind: name`` are built by the decorated callable."""

    def register(builder: B) -> B:
        if name in ENERGY_KINDS or name == "openmm":
            raise ValueError(f"energy kind {name!r} is already registered")
        ENERGY_KINDS[name] = builder
        return builder

    return register
