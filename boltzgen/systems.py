"""The system catalog: one YAML card per system in ``systems/``.

A card names how to build the energy, its temperature, a valid starting
configuration, named states and the free-energy differences between them, and
where its reference comes from. For example ``systems/double_well_2d.yaml``::

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

``load_system(name_or_path)`` returns a :class:`System`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from boltzgen.energies import toy
from boltzgen.energies.base import Energy
from boltzgen.errors import ConfigError

CATALOG = Path(__file__).resolve().parent.parent / "systems"

ENERGY_KINDS: dict[str, Callable[..., Energy]] = {
    "double_well": toy.DoubleWell,
    "gaussian_mixture": toy.GaussianMixture,
    "correlated_gaussian": toy.CorrelatedGaussian,
}

CARD_FIELDS = {
    "name",
    "description",
    "energy",
    "temperature",
    "initial_positions",
    "states",
    "free_energies",
    "reference",
}
REFERENCE_KINDS = {"exact", "none"}


@dataclass(frozen=True)
class IntervalState:
    """The set {x : low < x_flat[coordinate] < high}; call it on ``x: [B, ...]`` → ``bool[B]``."""

    coordinate: int
    low: float = -math.inf
    high: float = math.inf

    def __call__(self, x: Tensor) -> Tensor:
        value = x.reshape(x.shape[0], -1)[:, self.coordinate]
        return (value > self.low) & (value < self.high)


@dataclass
class System:
    """A target distribution with its named states and reference answers.

    Attributes:
        name: catalog name.
        energy: the reduced energy u(x).
        states: named state indicators ``x -> bool[B]``.
        free_energy_pairs: ``(a, b)`` pairs reported as ``b_vs_a`` = −ln(P_b/P_a).
        initial_positions: a valid configuration ``[*event_shape]``.
        reference_kind: ``"exact"`` when the energy knows its exact answers.
        topology: mdtraj topology for molecules, ``None`` otherwise.
        openmm_system: the openmm.System behind OpenMM-backed energies, else ``None``.
    """

    name: str
    energy: Energy
    states: dict[str, IntervalState]
    free_energy_pairs: list[tuple[str, str]]
    initial_positions: Tensor
    reference_kind: str = "none"
    description: str = ""
    card_path: Path | None = None
    topology: Any = None
    openmm_system: Any = None
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def temperature(self) -> float:
        return self.energy.temperature

    @property
    def has_exact_reference(self) -> bool:
        return self.reference_kind == "exact"

    def reference_free_energies(self) -> dict[str, float | None]:
        """Exact ΔF = −ln(P_b/P_a) in kT for each named pair (``None`` without a reference)."""
        out: dict[str, float | None] = {}
        for a, b in self.free_energy_pairs:
            name = f"{b}_vs_{a}"
            out[name] = None
            if self.has_exact_reference:
                out[name] = self._state_log_prob(a) - self._state_log_prob(b)
        return out

    def _state_log_prob(self, state: str) -> float:
        s = self.states[state]
        return self.energy.interval_log_prob(s.coordinate, s.low, s.high)

    def reference_log_z(self) -> float | None:
        return float(self.energy.log_z) if self.has_exact_reference else None

    def sample_reference(self, n: int, generator: torch.Generator) -> Tensor | None:
        """``n`` exact draws when the system has an exact sampler, else ``None``."""
        if not self.has_exact_reference:
            return None
        return self.energy.sample_exact(n, generator)


def list_systems(catalog: Path = CATALOG) -> list[str]:
    """Names of the cards in the catalog folder."""
    return sorted(p.stem for p in catalog.glob("*.yaml"))


def load_system(name_or_path: str | Path, catalog: Path = CATALOG) -> System:
    """Build the system of a catalog name or a path to a card."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = catalog / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(
                "systems",
                "system",
                "names no system in the catalog",
                str(name_or_path),
                list_systems(catalog),
            )
    if not path.exists():
        raise FileNotFoundError(f"system card {path} does not exist")
    card = yaml.safe_load(path.read_text()) or {}
    return build_system(card, path)


def build_system(card: Mapping[str, Any], source: Path) -> System:
    """Validate a parsed card and build its system; errors name ``source`` and the field."""
    if not isinstance(card, Mapping):
        raise ConfigError(source, "(top level)", "must be a mapping")
    unknown = set(card) - CARD_FIELDS
    if unknown:
        raise ConfigError(source, sorted(unknown)[0], "is not a card field", choices=CARD_FIELDS)
    energy = _build_energy(card.get("energy"), source)
    temperature = _number(card.get("temperature", energy.temperature), source, "temperature")
    if temperature != energy.temperature:
        energy = energy.at_temperature(temperature)
    states = _build_states(card.get("states", {}), energy, source)
    return System(
        name=str(card.get("name", source.stem)),
        energy=energy,
        states=states,
        free_energy_pairs=_build_pairs(card.get("free_energies", []), states, source),
        initial_positions=_initial_positions(card.get("initial_positions"), energy, source),
        reference_kind=_reference_kind(card.get("reference", {}), source),
        description=str(card.get("description", "")),
        card_path=source,
        card=dict(card),
    )


def _number(value: Any, source: Path, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(source, name, "must be a number", value)
    return float(value)


def _build_energy(spec: Any, source: Path) -> Energy:
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise ConfigError(source, "energy", "must be a mapping with a `kind`", spec)
    kind = spec["kind"]
    if kind not in ENERGY_KINDS:
        raise ConfigError(source, "energy.kind", "is not a known energy", kind, ENERGY_KINDS)
    builder = ENERGY_KINDS[kind]
    params = dict(spec.get("params") or {})
    allowed = set(inspect.signature(builder).parameters)
    for key in params:
        if key not in allowed:
            raise ConfigError(
                source, f"energy.params.{key}", f"is not a parameter of {kind}", choices=allowed
            )
    try:
        return builder(**params)
    except (TypeError, ValueError) as error:
        raise ConfigError(source, "energy.params", str(error)) from error


def _build_states(spec: Any, energy: Energy, source: Path) -> dict[str, IntervalState]:
    if not isinstance(spec, Mapping):
        raise ConfigError(source, "states", "must map state names to intervals", spec)
    states = {}
    for name, interval in spec.items():
        where = f"states.{name}"
        if not isinstance(interval, Mapping) or set(interval) - {"coordinate", "min", "max"}:
            raise ConfigError(source, where, "must be {coordinate, min, max}", interval)
        coordinate = interval.get("coordinate")
        if not isinstance(coordinate, int) or not 0 <= coordinate < energy.dim:
            raise ConfigError(
                source,
                f"{where}.coordinate",
                f"must be an integer in [0, {energy.dim})",
                coordinate,
            )
        low = _number(interval.get("min", -math.inf), source, f"{where}.min")
        high = _number(interval.get("max", math.inf), source, f"{where}.max")
        states[str(name)] = IntervalState(coordinate, low, high)
    return states


def _build_pairs(
    spec: Any, states: Mapping[str, IntervalState], source: Path
) -> list[tuple[str, str]]:
    if not isinstance(spec, list):
        raise ConfigError(source, "free_energies", "must be a list of {a, b}", spec)
    pairs = []
    for i, pair in enumerate(spec):
        if not isinstance(pair, Mapping) or set(pair) != {"a", "b"}:
            raise ConfigError(source, f"free_energies[{i}]", "must be {a: STATE, b: STATE}", pair)
        for key in ("a", "b"):
            if pair[key] not in states:
                raise ConfigError(
                    source, f"free_energies[{i}].{key}", "is not a named state", pair[key], states
                )
        pairs.append((str(pair["a"]), str(pair["b"])))
    return pairs


def _initial_positions(spec: Any, energy: Energy, source: Path) -> Tensor:
    if spec == "minimum" and hasattr(energy, "minimum"):
        spec = energy.minimum
    try:
        x = torch.as_tensor(spec, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(source, "initial_positions", "must be a list of numbers", spec) from error
    if tuple(x.shape) != energy.event_shape:
        raise ConfigError(
            source,
            "initial_positions",
            f"must have shape {list(energy.event_shape)}",
            list(x.shape),
        )
    if not math.isfinite(float(energy.energy(x[None])[0])):
        raise ConfigError(source, "initial_positions", "has a non-finite energy")
    return x


def _reference_kind(spec: Any, source: Path) -> str:
    kind = spec.get("kind", "none") if isinstance(spec, Mapping) else spec
    if kind not in REFERENCE_KINDS:
        raise ConfigError(
            source, "reference.kind", "is not a known reference", kind, REFERENCE_KINDS
        )
    return str(kind)
