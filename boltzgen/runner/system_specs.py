"""The ``systems:`` entries of an experiment: a card, its keyword overrides, and its label.

An entry is a catalog name or a card path, or a mapping that passes keyword overrides
to the card (as :func:`boltzgen.load_system` takes them) and may sweep them::

    systems:
      - double_well_2d
      - name: kob_andersen_2d_ternary
        overrides: {n_particles: 64}
        sweep: {temperature: [2.0, 1.0, 0.6]}
      - name: u1_2d
        label: u1_beta3
        overrides: {beta: 3.0}

Each (entry × sweep point) is one system of the run, named by its *label*: the card's
name when nothing is swept, ``name-key<value>`` per swept key otherwise (here
``kob_andersen_2d_ternary-temperature0.6``), or the explicit ``label``. The label is the
run folder ``RUN_DIR/<label>/`` and ``result.json``'s ``system``.

Exact references follow the overrides (e.g. the exact ln Z of ``ising_2d`` at the
overridden ``K``). A reference data set (``boltzgen reference``, MD or PT frames) records
the energy and temperature it was made at, and a system reads it only when those equal its
own (:meth:`~boltzgen.systems.System.stored_reference`): an override that restates the
card's value keeps the set, one that changes the energy or temperature does not, and the
result's ``reference_note`` says why.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boltzgen.errors import ConfigError
from boltzgen.systems import System, load_system

ENTRY_FIELDS = ("name", "label", "overrides", "sweep")
LABEL_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*")
"""A label is a folder name: letters, digits and ``_ . + = -``, not starting with ``.``/``-``."""


@dataclass(frozen=True)
class SystemSpec:
    """One system of an experiment.

    Attributes:
        label: the run folder's name and ``result.json``'s ``system``.
        card: a catalog name or the resolved path of a card.
        overrides: keyword overrides of the card (``temperature`` or energy parameters).
        source: the experiment file, for error messages.
        entry: where the entry sits in it, e.g. ``systems[1]``.
    """

    label: str
    card: str
    overrides: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"
    entry: str = "systems"

    def __hash__(self) -> int:
        return hash(
            (self.label, self.card, json.dumps(self.overrides, sort_keys=True, default=str))
        )


def parse_systems(value: Any, source: str, known: Sequence[str]) -> list[SystemSpec]:
    """Every system of the ``systems:`` list, sweeps expanded; labels unique and valid."""
    if not isinstance(value, list) or not value:
        raise ConfigError(
            source, "systems", "must be a non-empty list of names, card paths or mappings", value
        )
    specs = [
        spec
        for i, entry in enumerate(value)
        for spec in _entry(entry, f"systems[{i}]", source, known)
    ]
    _check_unique(specs)
    return specs


def _entry(entry: Any, where: str, source: str, known: Sequence[str]) -> list[SystemSpec]:
    if isinstance(entry, str):
        card = resolve_card(entry, where, source, known)
        return [_spec(Path(entry).stem, card, {}, source, where)]
    if not isinstance(entry, Mapping):
        raise ConfigError(source, where, "must be a name, a card path or a mapping", entry)
    for key in entry:
        if key not in ENTRY_FIELDS:
            raise ConfigError(
                source, f"{where}.{key}", "is not a known field", choices=ENTRY_FIELDS
            )
    name = entry.get("name")
    if not isinstance(name, str):
        raise ConfigError(source, f"{where}.name", "must be a system name or card path", name)
    card = resolve_card(name, f"{where}.name", source, known)
    overrides = _overrides(entry.get("overrides"), f"{where}.overrides", source)
    sweep = _sweep(entry.get("sweep"), f"{where}.sweep", source)
    label = entry.get("label")
    if label is not None and (sweep or not isinstance(label, str)):
        problem = "cannot be combined with a sweep" if sweep else "must be a string"
        raise ConfigError(source, f"{where}.label", problem, label)
    return [
        _spec(point_label, card, point, source, where)
        for point_label, point in sweep_points(label or Path(name).stem, overrides, sweep)
    ]


def _overrides(value: Any, where: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(source, where, "must map parameter names to values", value)
    return dict(value)


def _sweep(value: Any, where: str, source: str) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(source, where, "must map parameter names to lists of values", value)
    for key, values in value.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(
                source, f"{where}.{key}", "must be a non-empty list of values", values
            )
    return {str(k): list(v) for k, v in value.items()}


def sweep_points(
    base_label: str, overrides: Mapping[str, Any], sweep: Mapping[str, list[Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """``(label, overrides)`` per grid point, first key outermost; a swept value wins.

    ``sweep_points("ising_2d", {"L": 8}, {"K": [0.3, 0.4]})`` gives
    ``[("ising_2d-K0.3", {"L": 8, "K": 0.3}), ("ising_2d-K0.4", {"L": 8, "K": 0.4})]``.
    """
    points: list[tuple[str, dict[str, Any]]] = [(base_label, copy.deepcopy(dict(overrides)))]
    for key, values in sweep.items():
        points = [
            (f"{label}-{key}{value}", {**point, key: value})
            for label, point in points
            for value in values
        ]
    return points


def _spec(label: str, card: str, overrides: dict[str, Any], source: str, where: str) -> SystemSpec:
    if not LABEL_PATTERN.fullmatch(label):
        raise ConfigError(
            source,
            where,
            "gives a label that is not a valid folder name (letters, digits and _ . + = - "
            "only; set `label:` or sweep simpler values)",
            label,
        )
    return SystemSpec(label, card, overrides, source, where)


def _check_unique(specs: Sequence[SystemSpec]) -> None:
    seen: dict[str, SystemSpec] = {}
    for spec in specs:
        if spec.label in seen:
            raise ConfigError(
                spec.source,
                spec.entry,
                f"gives the label {spec.label!r}, which {seen[spec.label].entry} gives too: "
                "each system needs its own label (set `label:` on one of them)",
            )
        seen[spec.label] = spec


def resolve_card(name: str, where: str, source: str, known: Sequence[str]) -> str:
    """A catalog name, or a card path resolved against the experiment file's folder."""
    if not name.endswith((".yaml", ".yml")):
        if name not in known:
            raise ConfigError(source, where, "names no system", name, known)
        return name
    card = Path(source).parent / name if source != "<memory>" else Path(name)
    if not card.exists():
        raise ConfigError(
            source,
            where,
            f"names a card that does not exist ({card}; card paths are relative to the "
            "experiment file)",
            name,
        )
    return str(card.resolve())


def load_task_system(spec: SystemSpec, backend: str | None = None) -> System:
    """Build the system of ``spec``: its card with its overrides.

    A bad override (a key the card's energy does not take, a value it refuses) is a
    :class:`ConfigError` naming the experiment file and ``systems[i].overrides.KEY``.
    A reference data set is read only where it was made at the overridden system's energy
    and temperature (:meth:`~boltzgen.systems.System.stored_reference` checks each read).
    """
    try:
        system = load_system(spec.card, backend=backend, **spec.overrides)
    except ConfigError as error:
        raise _override_error(spec, error) from error
    except (TypeError, ValueError) as error:
        if not spec.overrides:
            raise
        raise _override_error(spec, error) from error
    return system


def _override_error(spec: SystemSpec, error: Exception) -> Exception:
    """``error`` restated against the override that caused it, when one did."""
    card_field = getattr(error, "field", None)
    key = _culprit(spec.overrides, card_field)
    if not spec.overrides or (isinstance(error, ConfigError) and key is None):
        return error
    where = f"{spec.entry}.overrides" + (f".{key}" if key else "")
    choices = getattr(error, "choices", None)
    if choices is not None and str(card_field).startswith("energy.params"):
        valid = {"temperature", *(() if card_field == "energy.params" else choices)}
        return ConfigError(
            spec.source, where, f"is not an override the card {spec.card} takes", choices=valid
        )
    text = str(error).removeprefix(f"{getattr(error, 'source', '')}: ")
    text = text.removeprefix(f"field `{card_field}` ")
    return ConfigError(spec.source, where, f"has a value the card {spec.card} refuses: {text}")


def _culprit(overrides: Mapping[str, Any], card_field: str | None) -> str | None:
    """The override key a card error points at (``energy.params.K`` → ``K``), if any."""
    params = [k for k in overrides if k != "temperature"]
    if card_field is None:
        return next(iter(overrides)) if len(overrides) == 1 else ""
    if card_field.startswith("energy.params."):
        key = card_field.removeprefix("energy.params.")
        return key if key in overrides else None
    if card_field == "temperature" and "temperature" in overrides:
        return "temperature"
    if card_field in ("energy.params", "energy") and params:
        return params[0] if len(params) == 1 else ""
    return None


def spec_of_result(result: Mapping[str, Any]) -> SystemSpec:
    """The system a ``result.json`` was computed on (card and overrides; older files: card)."""
    card = result.get("system_card", result["system"])
    return SystemSpec(result["system"], card, dict(result.get("system_overrides") or {}))


def result_folder_name(result: Mapping[str, Any]) -> str:
    """The run-folder name of a result: its label (older files: the card's file stem)."""
    if "system_overrides" in result:
        return str(result["system"])
    return Path(result.get("system_card", result["system"])).stem
