"""Named states from card entries: a registry of state kinds.

A system card's ``states`` maps names to entries such as ``{coordinate: 0, max: 0.0}``
(an interval of one coordinate) or ``{phi: 0, min: 0.0}`` (an interval of a peptide's
backbone torsion φ_0). The *kind* of an entry is the one registered key it names; the
kind's builder turns the entry into a state, a callable ``x: [B, *event_shape] -> bool[B]``.
A new system family registers its own kinds next to its observables, and the catalog
reads them without being edited::

    @register_state_kind("radius", fields=("radius", "min", "max"))
    def radius_state(entry: Mapping[str, Any], context: StateContext) -> State:
        low, high = interval_bounds(entry, context)
        return lambda x: (low < x.norm(dim=-1).amax(-1)) & (x.norm(dim=-1).amax(-1) < high)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from boltzgen.errors import ConfigError

State = Callable[[Tensor], Tensor]
"""A named state: configurations ``[B, *event_shape]`` → ``bool[B]``."""


@dataclass(frozen=True)
class StateContext:
    """What a state builder may use besides the entry.

    Attributes:
        source: the card, named in errors.
        where: the entry's dotted path in the card, e.g. ``states.left``.
        event_shape: the shape of one configuration.
        topology: the mdtraj topology of a molecule, ``None`` for other systems.
    """

    source: str | Path
    where: str
    event_shape: tuple[int, ...]
    topology: Any = None

    def error(self, key: str, message: str, value: Any = None) -> ConfigError:
        """A :class:`ConfigError` naming the card and the field ``where.key``."""
        return ConfigError(self.source, f"{self.where}.{key}", message, value)


StateBuilder = Callable[[Mapping[str, Any], StateContext], State]


@dataclass(frozen=True)
class StateKind:
    """A registered kind: its builder and the fields its entries may have (key first)."""

    builder: StateBuilder
    fields: tuple[str, ...]


STATE_KINDS: dict[str, StateKind] = {}
"""Every registered state kind, by the key that selects it in a card entry."""


def register_state_kind(
    name: str, fields: tuple[str, ...] = ("min", "max")
) -> Callable[[StateBuilder], StateBuilder]:
    """Decorator: entries naming ``name`` are built by the decorated builder.

    ``fields`` are the other keys such an entry may have.
    """

    def register(builder: StateBuilder) -> StateBuilder:
        if name in STATE_KINDS:
            raise ValueError(f"state kind {name!r} is already registered")
        STATE_KINDS[name] = StateKind(builder, (name, *(f for f in fields if f != name)))
        return builder

    return register


def build_state(entry: Any, context: StateContext) -> State:
    """The state of one card entry; errors name the card and the entry's field."""
    kinds = [name for name in STATE_KINDS if name in entry] if isinstance(entry, Mapping) else []
    if len(kinds) != 1 or set(entry) - set(STATE_KINDS[kinds[0]].fields):
        shapes = " or ".join("{" + ", ".join(k.fields) + "}" for k in STATE_KINDS.values())
        raise ConfigError(context.source, context.where, f"must be {shapes}", entry)
    return STATE_KINDS[kinds[0]].builder(entry, context)


def _bound(entry: Mapping[str, Any], key: str, default: float, context: StateContext) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise context.error(key, "must be a number", value)
    return float(value)


def interval_bounds(entry: Mapping[str, Any], context: StateContext) -> tuple[float, float]:
    """``(low, high)`` from the entry's ``min`` and ``max`` (unbounded when absent)."""
    return _bound(entry, "min", -math.inf, context), _bound(entry, "max", math.inf, context)


@dataclass(frozen=True)
class IntervalState:
    """The set {x : low < x_flat[coordinate] < high}; call it on ``x: [B, ...]`` → ``bool[B]``."""

    coordinate: int
    low: float = -math.inf
    high: float = math.inf

    def __call__(self, x: Tensor) -> Tensor:
        value = x.reshape(x.shape[0], -1)[:, self.coordinate]
        return (value > self.low) & (value < self.high)


@register_state_kind("coordinate")
def coordinate_interval(entry: Mapping[str, Any], context: StateContext) -> IntervalState:
    """``{coordinate: i, min: a, max: b}``: a < x_flat[i] < b."""
    low, high = interval_bounds(entry, context)
    coordinate, dim = entry["coordinate"], math.prod(context.event_shape)
    if not isinstance(coordinate, int) or not 0 <= coordinate < dim:
        raise context.error("coordinate", f"must be an integer in [0, {dim})", coordinate)
    return IntervalState(coordinate, low, high)
