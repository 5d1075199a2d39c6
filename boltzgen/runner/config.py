"""Experiment files: systems × methods × seeds, parsed into typed, validated records.

An experiment YAML::

    name: quickstart
    systems: [double_well_2d, many_well_32d]
    seeds: [0, 1]
    methods:
      hmc: {method: hmc, n_chains: 256, n_steps: 1000}
      bg:  {method: boltzmann_generator, train: {steps: 1500}}

Every method entry is checked against the dataclass of its method (see
:mod:`boltzgen.runner.methods`); an unknown key or a value of the wrong type is a
:class:`~boltzgen.errors.ConfigError` naming the file and the dotted field path,
raised before any task runs. ``--set methods.bg.train.steps=100`` overrides a
value on the command line (parsed as YAML).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from boltzgen.errors import ConfigError

T = TypeVar("T")

EXECUTORS = ("debug", "local")


@dataclass(frozen=True)
class MethodSpec:
    """One method of an experiment: its label, registered kind and typed parameters."""

    label: str
    method: str
    params: Any


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment: what to run, and the raw mapping it came from."""

    name: str
    systems: list[str]
    seeds: list[int]
    methods: list[MethodSpec]
    executor: str = "local"
    workers: int = 2
    n_reference: int = 10_000
    source: str = "<memory>"
    raw: dict[str, Any] = field(default_factory=dict)


EXPERIMENT_FIELDS = {"name", "systems", "seeds", "methods", "executor", "workers", "n_reference"}


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (list, Sequence):
        return isinstance(value, list)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(annotation)))
    return getattr(annotation, "__name__", str(annotation)).replace("typing.", "")


def parse_dataclass(cls: type[T], data: Any, source: str, path: str) -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and value types.

    Nested dataclass fields are parsed recursively; errors name ``source`` and the
    dotted ``path`` of the offending field.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(source, path, "must be a mapping", data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(source, where, "is not a known field", choices=names)
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = parse_dataclass(annotation, value, source, where)
        elif _type_ok(value, annotation):
            kwargs[key] = float(value) if annotation is float else value
        else:
            raise ConfigError(source, where, f"must be {_describe(annotation)}", value)
    try:
        return cls(**kwargs)
    except ValueError as error:
        raise ConfigError(source, path or "(top level)", str(error)) from error


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str], source: str) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a raw mapping."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(source, item, "override must read key.path=value")
        key, text = item.split("=", 1)
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(source, key, "override path runs through a non-mapping")
        node[parts[-1]] = yaml.safe_load(text)
    return raw


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    """Read, override and validate an experiment file (nothing runs)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(path, "(file)", "does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(path, "(top level)", "must be a mapping")
    return parse_experiment(apply_overrides(raw, overrides, str(path)), str(path))


def parse_experiment(raw: Mapping[str, Any], source: str) -> Experiment:
    """Validate a raw experiment mapping; the systems named must be in the catalog."""
    from boltzgen.runner.methods import METHODS
    from boltzgen.systems import list_systems

    for key in raw:
        if key not in EXPERIMENT_FIELDS:
            raise ConfigError(source, key, "is not a known field", choices=EXPERIMENT_FIELDS)
    systems = _string_list(raw.get("systems"), source, "systems")
    known = list_systems()
    for i, name in enumerate(systems):
        if name not in known and not name.endswith((".yaml", ".yml")):
            raise ConfigError(source, f"systems[{i}]", "names no system", name, known)
    seeds = raw.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise ConfigError(source, "seeds", "must be a non-empty list of integers", seeds)
    methods_raw = raw.get("methods")
    if not isinstance(methods_raw, Mapping) or not methods_raw:
        raise ConfigError(source, "methods", "must map labels to method settings", methods_raw)
    methods = [_method(label, spec, source, METHODS) for label, spec in methods_raw.items()]
    executor = raw.get("executor", "local")
    if executor not in EXECUTORS:
        raise ConfigError(source, "executor", "is not a known executor", executor, EXECUTORS)
    workers = raw.get("workers", 2)
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(source, "workers", "must be a positive integer", workers)
    n_reference = raw.get("n_reference", 10_000)
    if not isinstance(n_reference, int) or n_reference < 1:
        raise ConfigError(source, "n_reference", "must be a positive integer", n_reference)
    return Experiment(
        name=str(raw.get("name", Path(source).stem)),
        systems=systems,
        seeds=list(seeds),
        methods=methods,
        executor=executor,
        workers=workers,
        n_reference=n_reference,
        source=source,
        raw=dict(raw),
    )


def _string_list(value: Any, source: str, name: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(source, name, "must be a non-empty list of names", value)
    return list(value)


def _method(label: str, spec: Any, source: str, registry: Mapping[str, Any]) -> MethodSpec:
    where = f"methods.{label}"
    if not isinstance(spec, Mapping) or "method" not in spec:
        raise ConfigError(source, where, "must be a mapping with a `method`", spec)
    kind = spec["method"]
    if kind not in registry:
        raise ConfigError(source, f"{where}.method", "is not a known method", kind, registry)
    params = {k: v for k, v in spec.items() if k != "method"}
    return MethodSpec(
        str(label), kind, parse_dataclass(registry[kind].params, params, source, where)
    )
