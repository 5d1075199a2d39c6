"""Experiment files: systems × methods × seeds, parsed into typed, validated records.

An experiment YAML::

    name: quickstart
    systems: [double_well_2d, {name: ising_2d, sweep: {K: [0.3, 0.44]}}]
    seeds: [0, 1]
    methods:
      hmc: {method: hmc, n_chains: 256, n_steps: 1000}
      bg:  {method: boltzmann_generator, train: {steps: 1500}}

Every method entry is checked against the dataclass of its method (see
:mod:`boltzgen.runner.methods`); an unknown key or a value of the wrong type is a
:class:`~boltzgen.errors.ConfigError` naming the file and the dotted field path,
raised before any task runs. ``--set methods.bg.train.steps=100`` overrides a
value on the command line (parsed as YAML). A ``systems`` entry may be a mapping that
passes keyword overrides to its card and sweeps them (:mod:`boltzgen.runner.system_specs`).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from boltzgen.errors import ConfigError, read_yaml
from boltzgen.runner.methods import METHODS
from boltzgen.runner.system_specs import SystemSpec, parse_systems
from boltzgen.systems import list_systems

T = TypeVar("T")

EXECUTORS = ("debug", "local", "slurm", "dask")
SCHEDULERS = ("slurm", "pbs", "sge", "lsf", "local")


@dataclass(frozen=True)
class Resources:
    """What each task asks of a cluster (``slurm`` and ``dask`` executors).

    Attributes:
        cpus: cores per task.
        gpus: GPUs per task.
        memory_gb: memory per task.
        time_min: wall-time limit per job; a task that hits it is requeued and resumes
            from its checkpoint (slurm) or is retried (dask).
        partition: Slurm partition or PBS/SGE/LSF queue.
        account: accounting project.
        array_parallelism: Slurm array tasks running at once.
        scheduler: the dask-jobqueue cluster kind, or ``local`` for a LocalCluster.
        jobs: dask: how many batch jobs (workers) to start.
        setup: shell lines run before each job (e.g. ``source .venv/bin/activate``).
    """

    cpus: int = 1
    gpus: int = 0
    memory_gb: float = 4.0
    time_min: int = 60
    partition: str | None = None
    account: str | None = None
    array_parallelism: int = 64
    scheduler: Literal["slurm", "pbs", "sge", "lsf", "local"] = "slurm"
    jobs: int = 2
    setup: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.cpus < 1 or self.gpus < 0 or self.memory_gb <= 0 or self.time_min < 1:
            raise ValueError("cpus ≥ 1, gpus ≥ 0, memory_gb > 0 and time_min ≥ 1 are required")


@dataclass(frozen=True)
class Budget:
    """One budget that every method of an experiment gets: target energy evaluations.

    Every energy or force evaluation counts, training included. Each method sizes
    its run (steps, samples, frames) to spend at most this many.
    """

    energy_evals: int

    def __post_init__(self) -> None:
        if self.energy_evals < 1:
            raise ValueError("budget.energy_evals must be a positive integer")


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
    systems: list[SystemSpec]
    seeds: list[int]
    methods: list[MethodSpec]
    executor: str = "local"
    workers: int = 2
    n_reference: int = 10_000
    resources: Resources = field(default_factory=Resources)
    budget: Budget | None = None
    energy_backend: str | None = None
    threads: int | None = None
    source: str = "<memory>"
    raw: dict[str, Any] = field(default_factory=dict)


EXPERIMENT_FIELDS = {
    "name",
    "systems",
    "seeds",
    "methods",
    "executor",
    "workers",
    "n_reference",
    "resources",
    "budget",
    "energy_backend",
    "threads",
}


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


def _dataclass_in(annotation: Any) -> Any:
    """The dataclass an annotation names, directly or as ``X | None``; else ``None``."""
    if dataclasses.is_dataclass(annotation):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(annotation) if dataclasses.is_dataclass(a)]
        return found[0] if len(found) == 1 else None
    return None


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(annotation)))
    return getattr(annotation, "__name__", str(annotation)).replace("typing.", "")


ZERO_ALLOWED = frozenset(
    {
        "n_warmup",
        "n_equilibration",
        "lr_warmup",
        "patience",
        "monitor_every",
        "n_mcmc",
        "steps",
        "train_steps",
        "scale_steps",
        "flow_every",
        "conditioner_layers",
        "gpus",
        "seed",
    }
)
"""Integer fields where 0 means "none"; every other integer field counts something ≥ 1."""


def _check_count(cls: type, key: str, value: Any, source: str, where: str) -> None:
    """Integer settings are counts: never negative, and ≥ 1 unless 0 means "none"."""
    if not isinstance(value, int) or isinstance(value, bool):
        return
    default = next(f.default for f in dataclasses.fields(cls) if f.name == key)
    positive = key not in ZERO_ALLOWED and not (isinstance(default, int) and default <= 0)
    if value < (1 if positive else 0):
        raise ConfigError(source, where, f"must be {'≥ 1' if positive else '≥ 0'}", value)


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
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(source, where, "is not a known field", choices=names)
        annotation = hints[key]
        nested = _dataclass_in(annotation)
        if nested is not None and (value is not None or annotation is nested):
            kwargs[key] = parse_dataclass(nested, value, source, where)
        elif _type_ok(value, annotation):
            _check_count(cls, key, value, source, where)
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
        try:
            node[parts[-1]] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(source, key, f"override value is not valid YAML ({error})") from None
    return raw


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    """Read, override and validate an experiment file (nothing runs)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(path, "(file)", "does not exist")
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(path, "(top level)", "must be a mapping")
    return parse_experiment(apply_overrides(raw, overrides, str(path)), str(path))


def parse_experiment(raw: Mapping[str, Any], source: str) -> Experiment:
    """Validate a raw experiment mapping; the systems named must be in the catalog."""

    for key in raw:
        if key not in EXPERIMENT_FIELDS:
            raise ConfigError(source, key, "is not a known field", choices=EXPERIMENT_FIELDS)
    systems = parse_systems(raw.get("systems"), source, list_systems())
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
    methods = [
        m for label, spec in methods_raw.items() for m in _methods(label, spec, source, METHODS)
    ]
    executor = raw.get("executor", "local")
    if executor not in EXECUTORS:
        raise ConfigError(source, "executor", "is not a known executor", executor, EXECUTORS)
    workers = raw.get("workers", 2)
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(source, "workers", "must be a positive integer", workers)
    threads = raw.get("threads")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(source, "threads", "must be a positive integer (or omitted)", threads)
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
        resources=parse_dataclass(Resources, raw.get("resources"), source, "resources"),
        budget=None
        if raw.get("budget") is None
        else parse_dataclass(Budget, raw["budget"], source, "budget"),
        energy_backend=_backend(raw.get("energy_backend"), source),
        threads=threads,
        source=source,
        raw=dict(raw),
    )


def _backend(value: Any, source: str) -> str | None:
    """The molecular energy backend every system of the experiment uses (None: the card's)."""
    if value is None or value == "card":
        return None
    if value not in ("torch", "openmm"):
        raise ConfigError(
            source, "energy_backend", "is not a known backend", value, ("card", "torch", "openmm")
        )
    return str(value)


def _methods(label: str, spec: Any, source: str, registry: Mapping[str, Any]) -> list[MethodSpec]:
    """The method entry, expanded over its ``sweep`` grid (one label per grid point).

    ``sweep: {n_leapfrog: [5, 10]}`` gives labels ``hmc-n_leapfrog5`` and ``hmc-n_leapfrog10``.
    Nested fields use dots: ``sweep: {train.lr: [1e-3, 3e-4]}``.
    """
    where = f"methods.{label}"
    if not isinstance(spec, Mapping) or "method" not in spec:
        raise ConfigError(source, where, "must be a mapping with a `method`", spec)
    sweep = spec.get("sweep") or {}
    if not isinstance(sweep, Mapping) or not all(isinstance(v, list) and v for v in sweep.values()):
        raise ConfigError(source, f"{where}.sweep", "must map fields to non-empty lists", sweep)
    base = {k: v for k, v in spec.items() if k != "sweep"}
    points: list[tuple[str, dict[str, Any]]] = [(label, base)]
    for key, values in sweep.items():
        points = [
            (f"{name}-{key.split('.')[-1]}{value}", _with(point, str(key), value))
            for name, point in points
            for value in values
        ]
    return [_method(name, point, source, registry) for name, point in points]


def _with(spec: Mapping[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(dict(spec))
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _method(
    label: str, spec: Mapping[str, Any], source: str, registry: Mapping[str, Any]
) -> MethodSpec:
    where = f"methods.{label}"
    kind = spec["method"]
    if kind not in registry:
        raise ConfigError(source, f"{where}.method", "is not a known method", kind, registry)
    params = {k: v for k, v in spec.items() if k != "method"}
    return MethodSpec(
        str(label), kind, parse_dataclass(registry[kind].params, params, source, where)
    )
