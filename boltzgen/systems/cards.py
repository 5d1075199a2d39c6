"""Cards → :class:`~boltzgen.systems.system.System`: reading, validating and building.

``load_system(name_or_path, **overrides)`` reads a card of the catalog (or any path),
applies keyword overrides (:func:`with_overrides`) and builds its energy, states,
free-energy pairs, observables and starting configuration (:func:`build_system`). Every
error names the card file and the field.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.exact import ExactReference
from boltzgen.energies.forcefield import TorchForceField, unsupported_forces
from boltzgen.energies.lattice import LatticeAction
from boltzgen.energies.openmm import OpenMMEnergy
from boltzgen.energies.particles import ParticleEnergy
from boltzgen.energies.particles.openmm_system import to_openmm
from boltzgen.energies.registry import ENERGY_KINDS
from boltzgen.errors import ConfigError, read_yaml
from boltzgen.molecules.card import build_molecule
from boltzgen.observables.kinds import OBSERVABLE_KINDS, Observable
from boltzgen.observables.states import State, StateContext, build_state
from boltzgen.systems.system import System

CATALOG = Path(str(files("boltzgen.catalog"))).resolve()
"""The installed catalog: the package ``boltzgen.catalog``, i.e. the ``systems/`` folder."""

CARD_FIELDS = {
    "name",
    "description",
    "energy",
    "temperature",
    "initial_positions",
    "states",
    "free_energies",
    "observables",
    "reference",
}
REFERENCE_KINDS = {"exact", "md", "pt", "none"}
FREE_ENERGY_SOURCES = {"umbrella"}
"""Reference sets a card may read its ΔF from instead of its frames' set
(``reference: {kind: pt, free_energies: umbrella}``)."""


def list_systems(catalog: Path = CATALOG) -> list[str]:
    """Names of the cards in the catalog folder."""
    return sorted(p.stem for p in catalog.glob("*.yaml"))


def load_system(
    name_or_path: str | Path,
    catalog: Path = CATALOG,
    backend: str | None = None,
    **overrides: Any,
) -> System:
    """Build the system of a catalog name or a path to a card.

    ``backend`` overrides a molecular card's ``energy.backend`` (``torch`` | ``openmm``).
    ``overrides`` replace card entries: ``temperature`` the card's temperature, any other
    name the energy parameter of that name (``energy.params``), e.g.
    ``load_system("kob_andersen_3d", n_particles=256, temperature=0.6)``; a name that is
    not a parameter of the card's energy is refused like a wrong card field. Lattice
    actions are dimensionless and refuse a ``temperature``: their couplings (``beta``,
    ``K``, ``lam``) set it, and the error names the equivalent coupling.
    """
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
    card = with_overrides(read_yaml(path) or {}, overrides)
    return build_system(card, path, backend)


def with_overrides(card: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``card`` with ``temperature`` and energy parameters replaced by ``overrides``."""
    out = dict(card)
    params = {key: value for key, value in overrides.items() if key != "temperature"}
    if "temperature" in overrides:
        out["temperature"] = overrides["temperature"]
    if params:
        energy = dict(out.get("energy") or {})
        energy["params"] = {**(energy.get("params") or {}), **params}
        out["energy"] = energy
    return out


def build_system(card: Mapping[str, Any], source: Path, backend: str | None = None) -> System:
    """Validate a parsed card and build its system; errors name ``source`` and the field.

    ``backend`` (``torch`` or ``openmm``) overrides the card's molecular energy backend.
    """
    if not isinstance(card, Mapping):
        raise ConfigError(source, "(top level)", "must be a mapping")
    unknown = set(card) - CARD_FIELDS
    if unknown:
        raise ConfigError(source, sorted(unknown)[0], "is not a card field", choices=CARD_FIELDS)
    spec = card.get("energy")
    if isinstance(spec, Mapping) and spec.get("kind") == "openmm":
        energy, molecule = _build_openmm(spec, card.get("temperature"), source, backend)
    else:
        energy, molecule = _build_energy(spec, source), None
        temperature = _number(card.get("temperature", energy.temperature), source, "temperature")
        if temperature != energy.temperature:
            _check_temperature(energy, temperature, source)
            energy = energy.at_temperature(temperature)
    reference_kind = _reference_kind(card.get("reference", {}), source)
    if reference_kind == "exact":
        _check_exact(energy, source)
    topology = molecule.mdtraj_topology if molecule is not None else None
    states = _build_states(card.get("states", {}), energy, topology, source)
    start = card.get("initial_positions", "structure" if molecule is not None else None)
    if start == "structure" and molecule is not None:
        start = molecule.positions
    return System(
        name=str(card.get("name", source.stem)),
        energy=energy,
        states=states,
        free_energy_pairs=_build_pairs(card.get("free_energies", []), states, source),
        initial_positions=_initial_positions(start, energy, source),
        reference_kind=reference_kind,
        free_energies_from=_free_energies_from(card.get("reference", {}), reference_kind, source),
        description=str(card.get("description", "")),
        card_path=source,
        topology=topology,
        openmm_system=molecule.openmm_system if molecule is not None else _particles_openmm(energy),
        card=dict(card),
        observables=_build_observables(card.get("observables", {}), energy, source),
    )


def _particles_openmm(energy: Energy) -> Any:
    """The OpenMM system of a 3-D particle energy (T* runs as T* kelvin), else ``None``."""
    if isinstance(energy, ParticleEnergy) and energy.box.numel() == 3:
        return to_openmm(energy)
    return None


BACKENDS = ("torch", "openmm")
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _build_openmm(
    spec: Mapping[str, Any], temperature: Any, source: Path, backend: str | None
) -> tuple[Energy, Any]:
    kelvin = _number(temperature, source, "temperature")
    if not kelvin > 0:
        raise ConfigError(source, "temperature", "must be a positive number in kelvin", temperature)
    backend = backend or str(spec.get("backend", "torch"))
    if backend not in BACKENDS:
        raise ConfigError(source, "energy.backend", "is not a known backend", backend, BACKENDS)
    dtype = spec.get("dtype", "float64")
    if dtype not in DTYPES:
        raise ConfigError(source, "energy.dtype", "is not a known dtype", dtype, DTYPES)
    molecule = build_molecule(spec, source.parent, source)
    return _molecular_energy(molecule.openmm_system, spec, kelvin, backend, source), molecule


def _molecular_energy(
    system: Any, spec: Mapping[str, Any], kelvin: float, backend: str, source: Path
) -> Energy:
    """TorchForceField when asked for and every force is supported, else OpenMMEnergy."""
    problems = unsupported_forces(system) if backend == "torch" else []
    if backend == "torch" and not problems:
        return TorchForceField.from_openmm(
            system,
            temperature=kelvin,
            device=str(spec.get("device", "cpu")),
            dtype=DTYPES[spec.get("dtype", "float64")],
            compile=bool(spec.get("compile", False)),
        )
    if problems:
        warnings.warn(
            f"{source}: the torch force field does not support {'; '.join(problems)}; "
            "using OpenMMEnergy",
            stacklevel=2,
        )
    return OpenMMEnergy(
        system,
        temperature=kelvin,
        n_workers=int(spec.get("n_workers", 0)),
        platform=str(spec.get("platform", "CPU")),
        threads_per_worker=int(spec.get("threads_per_worker", 1)),
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
        raise ConfigError(
            source, "energy.kind", "is not a known energy", kind, [*ENERGY_KINDS, "openmm"]
        )
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


def _build_states(spec: Any, energy: Energy, topology: Any, source: Path) -> dict[str, State]:
    """Named states from the card's ``states``, each entry built by its registered kind."""
    if not isinstance(spec, Mapping):
        raise ConfigError(source, "states", "must map state names to state entries", spec)
    return {
        str(name): build_state(
            entry, StateContext(source, f"states.{name}", energy.event_shape, topology)
        )
        for name, entry in spec.items()
    }


def _build_observables(spec: Any, energy: Energy, source: Path) -> dict[str, Observable]:
    """``observables: {name: kind}``, each kind from :data:`OBSERVABLE_KINDS`; a kind that
    relies on a symmetry only where the energy declares it."""
    if not isinstance(spec, Mapping):
        raise ConfigError(source, "observables", "must map result names to kinds", spec)
    for name, kind in spec.items():
        if kind not in OBSERVABLE_KINDS:
            raise ConfigError(
                source, f"observables.{name}", "is not an observable kind", kind, OBSERVABLE_KINDS
            )
        needed = OBSERVABLE_KINDS[kind].requires_symmetry
        if needed is not None and needed not in energy.symmetries:
            raise ConfigError(
                source,
                f"observables.{name}",
                f"relies on the symmetry {needed!r}, which the energy does not declare"
                f" (it declares {sorted(energy.symmetries) or 'none'})",
                kind,
            )
    return {str(name): OBSERVABLE_KINDS[kind] for name, kind in spec.items()}


def _build_pairs(spec: Any, states: Mapping[str, State], source: Path) -> list[tuple[str, str]]:
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
    if spec is None:
        raise ConfigError(source, "initial_positions", "is required for this energy")
    if isinstance(spec, str) and spec == "minimum" and hasattr(energy, "minimum"):
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


def _check_temperature(energy: Energy, temperature: float, source: Path) -> None:
    """Refuse a temperature other than 1 for a dimensionless lattice action.

    Its couplings are its temperature (:mod:`boltzgen.energies.lattice.action`): a second
    knob for the same physics would give two names to one system, and the tempered view
    e^{−S/T} would lose what the action exposes (its exact answers, local updates).
    """
    if isinstance(energy, LatticeAction):
        raise ConfigError(
            source,
            "temperature",
            f"cannot be set on the dimensionless lattice action {type(energy).__name__} "
            "(u = S at temperature 1: its couplings set the temperature): "
            f"{energy.coupling_at_temperature(temperature)}",
        )


def _check_exact(energy: Energy, source: Path) -> None:
    """Refuse ``reference: exact`` for an energy that cannot compute its exact answers.

    A toy energy at another temperature keeps them when its family is closed under
    u → s·u (double wells, Gaussians); otherwise (a tempered mixture) it has none.
    """
    if not isinstance(energy, ExactReference):
        raise ConfigError(
            source,
            "reference.kind",
            f"is exact, but {type(energy).__name__} at temperature {energy.temperature:g} "
            "computes no exact log Z, state probabilities or samples: use the energy's "
            "native temperature or `reference: {kind: none}`",
            "exact",
        )


def _reference_kind(spec: Any, source: Path) -> str:
    kind = spec.get("kind", "none") if isinstance(spec, Mapping) else spec
    if kind not in REFERENCE_KINDS:
        raise ConfigError(
            source, "reference.kind", "is not a known reference", kind, REFERENCE_KINDS
        )
    return str(kind)


def _free_energies_from(spec: Any, kind: str, source: Path) -> str | None:
    """``reference.free_energies``: a set whose manifest gives the reference ΔF, or None."""
    name = spec.get("free_energies") if isinstance(spec, Mapping) else None
    if name is None:
        return None
    if name not in FREE_ENERGY_SOURCES or kind not in ("md", "pt"):
        raise ConfigError(
            source,
            "reference.free_energies",
            f"must be one of {sorted(FREE_ENERGY_SOURCES)}, beside kind md or pt",
            name,
        )
    return str(name)
