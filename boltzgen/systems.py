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

``load_system(name_or_path)`` returns a :class:`System`.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.exact import ExactLogZ, ExactObservables, ExactReference
from boltzgen.energies.forcefield import TorchForceField, unsupported_forces
from boltzgen.energies.lattice import LatticeAction
from boltzgen.energies.openmm import OpenMMEnergy
from boltzgen.energies.particles import ParticleEnergy
from boltzgen.energies.particles.openmm_system import to_openmm
from boltzgen.energies.registry import ENERGY_KINDS
from boltzgen.errors import ConfigError, read_yaml
from boltzgen.metrics import block_free_energy_difference
from boltzgen.molecules.card import build_molecule
from boltzgen.observables.lattice import OBSERVABLE_KINDS, Observable
from boltzgen.observables.states import State, StateContext, build_state
from boltzgen.records.reference_sets import (
    ReferenceSet,
    load_manifest,
    load_reference,
    settings_mismatch,
)

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
MIN_TRANSITIONS = 10
"""An MD reference ΔF counts only after this many transitions between the two states."""
DISPERSED_TEMPERATURE_FACTOR = 2.0
"""Chains of exactly solvable systems start from draws at this multiple of T."""
PT_UNSPLIT = "pt: MBAR over the whole run, training frames included: regenerate the set"


@dataclass(frozen=True)
class ReferenceValue:
    """A reference number with its standard error and provenance ("exact", "md", ...)."""

    value: float | None
    stderr: float | None
    note: str


def _stored_value(entry: dict[str, Any], source: str) -> ReferenceValue:
    """A manifest's ΔF entry; one marked ``converged: false`` gives no value."""
    if entry.get("converged") is False:
        return ReferenceValue(None, None, f"{source}: not converged (its halves disagree)")
    return ReferenceValue(entry.get("value"), entry.get("stderr"), f"{source}: MBAR")


def count_transitions(in_a: Tensor, in_b: Tensor) -> int:
    """Switches between states a and b along a trajectory, ignoring frames in neither."""
    label = in_b.to(torch.int8) - in_a.to(torch.int8)
    visited = label[label != 0]
    return int((visited[1:] != visited[:-1]).sum()) if visited.numel() > 1 else 0


def md_reference_value(samples: Any, state_a: State, state_b: State) -> ReferenceValue:
    """ΔF_{b vs a} from an MD trajectory by blocks, if it crossed ``MIN_TRANSITIONS`` times."""
    in_a, in_b = state_a(samples.x), state_b(samples.x)
    crossings = count_transitions(in_a, in_b)
    if crossings < MIN_TRANSITIONS:
        return ReferenceValue(None, None, f"md unconverged: {crossings} transitions")
    estimate = block_free_energy_difference(samples, in_a, in_b)
    return ReferenceValue(estimate.value, estimate.stderr, f"md: {crossings} transitions")


@dataclass(frozen=True)
class StoredReference:
    """The card's MD or PT reference set (one part) if made for this system, else ``None``
    and a ``note`` saying why (no data route, not generated, made at other settings)."""

    data: ReferenceSet | None
    note: str


@dataclass
class System:
    """A target distribution with its named states and reference answers.

    Attributes:
        name: catalog name.
        energy: the reduced energy u(x).
        states: named state indicators ``x -> bool[B]``.
        free_energy_pairs: ``(a, b)`` pairs reported as ``b_vs_a`` = −ln(P_b/P_a).
        initial_positions: a valid configuration ``[*event_shape]``.
        reference_kind: the card's reference route (``md``, ``pt``, ``exact`` or ``none``);
            exact answers come from the energy's capability, see
            :attr:`has_exact_reference`.
        free_energies_from: where the reference ΔF comes from when not from the frames'
            set: ``umbrella`` (``DATA/<system>/umbrella/manifest.json``), else ``None``.
        topology: mdtraj topology for molecules, ``None`` otherwise.
        openmm_system: the openmm.System behind OpenMM-backed energies, else ``None``.
        observables: named observables reported in ``result.json`` (lattice systems).
    """

    name: str
    energy: Energy
    states: dict[str, State]
    free_energy_pairs: list[tuple[str, str]]
    initial_positions: Tensor
    reference_kind: str = "none"
    free_energies_from: str | None = None
    description: str = ""
    card_path: Path | None = None
    topology: Any = None
    openmm_system: Any = None
    card: dict[str, Any] = field(default_factory=dict)
    observables: dict[str, Observable] = field(default_factory=dict)

    @property
    def temperature(self) -> float:
        return self.energy.temperature

    @property
    def box(self) -> Tensor | None:
        """Side lengths ``[d]`` of the periodic box of a particle system, else ``None``."""
        return getattr(self.energy, "box", None)

    @property
    def species(self) -> Tensor | None:
        """Species index per particle ``[N]`` of a particle system, else ``None``."""
        return getattr(self.energy, "species", None)

    @property
    def has_exact_reference(self) -> bool:
        """Whether the energy computes its exact answers (an :class:`ExactReference`)."""
        return isinstance(self.energy, ExactReference)

    def reference_free_energies(self) -> dict[str, float | None]:
        """Reference ΔF = −ln(P_b/P_a) in kT per named pair; ``None`` where there is none.

        Exact systems give quadrature values. MD references give the estimate from the
        reference trajectory only if it crossed between the states at least
        ``MIN_TRANSITIONS`` times; otherwise the entry is ``None`` (unconverged).
        """
        return {name: r.value for name, r in self.reference_estimates().items()}

    def reference_estimates(self) -> dict[str, ReferenceValue]:
        """Reference ΔF per pair with its standard error and a note on where it came from."""
        names = [f"{b}_vs_{a}" for a, b in self.free_energy_pairs]
        if self.has_exact_reference:
            exact = [
                self._state_log_prob(a) - self._state_log_prob(b) for a, b in self.free_energy_pairs
            ]
            return {
                name: ReferenceValue(value, 0.0, "exact")
                for name, value in zip(names, exact, strict=True)
            }
        if self.free_energies_from is not None:
            return self._manifest_estimates(names)
        stored = self.stored_reference()
        reference = stored.data
        out: dict[str, ReferenceValue] = {}
        for name, (a, b) in zip(names, self.free_energy_pairs, strict=True):
            if reference is not None and self.reference_kind == "pt":
                fe = reference.manifest.get("free_energies", {}).get(name, {})
                note = "pt: MBAR" if "free_energies_from" in reference.manifest else PT_UNSPLIT
                out[name] = ReferenceValue(fe.get("value"), fe.get("stderr"), note)
            elif reference is not None:
                out[name] = md_reference_value(reference.samples(), self.states[a], self.states[b])
            else:
                out[name] = ReferenceValue(None, None, stored.note)
        return out

    def _manifest_estimates(self, names: list[str]) -> dict[str, ReferenceValue]:
        """ΔF per pair from the ``free_energies`` of the manifest the card names."""
        source = str(self.free_energies_from)
        manifest = load_manifest(self.name, source)
        if manifest is None:
            missing = f"no {source} reference: boltzgen reference {self.name} --method {source}"
            return {name: ReferenceValue(None, None, missing) for name in names}
        mismatch = self._mismatch(manifest, source)
        if mismatch is not None:
            return {name: ReferenceValue(None, None, mismatch) for name in names}
        stored = manifest.get("free_energies", {})
        return {name: _stored_value(stored.get(name, {}), source) for name in names}

    def stored_reference(self, part: str = "evaluation") -> StoredReference:
        """The ``part`` of the card's MD or PT reference set, only if made for this system.

        A set counts only when its manifest records this card's energy entry and this
        system's temperature (:func:`~boltzgen.records.reference_sets.settings_mismatch`): a
        card overridden to another L, β, m², λ, K or temperature never borrows the set made
        at the card's own settings; ``note`` then says why.
        """
        kind = self.reference_kind
        if kind not in ("md", "pt"):
            return StoredReference(None, "no reference data")
        data = load_reference(self.name, kind, part=part)
        if data is None:
            missing = f"no {kind} reference set: boltzgen reference {self.name} --method {kind}"
            return StoredReference(None, missing)
        mismatch = self._mismatch(data.manifest, kind)
        return StoredReference(None, mismatch) if mismatch else StoredReference(data, kind)

    def _mismatch(self, manifest: Mapping[str, Any], method: str) -> str | None:
        return settings_mismatch(manifest, self.card.get("energy"), self.temperature, method)

    def _state_log_prob(self, state: str) -> float:
        s = self.states[state]
        return self.energy.interval_log_prob(s.coordinate, s.low, s.high)

    def reference_log_z(self) -> float | None:
        """Exact log Z when the energy knows it (toys; Ising: ln Z of the spin model)."""
        return float(self.energy.log_z) if isinstance(self.energy, ExactLogZ) else None

    def reference_observables(self) -> dict[str, float]:
        """Reference expectations of the named observables that have one (see
        :meth:`reference_observable_estimates`)."""
        estimates = self.reference_observable_estimates().items()
        return {name: r.value for name, r in estimates if r.value is not None}

    def reference_observable_estimates(self) -> dict[str, ReferenceValue]:
        """Each named observable's reference, with a note on where it came from: exact where
        the energy knows it, else its mean (or variance) over the evaluation frames of the
        card's MD or PT reference set — only if that set was made for this system
        (:meth:`stored_reference`; a set made at other parameters is not used)."""
        if isinstance(self.energy, ExactObservables):
            exact, unknown = self.energy.exact_observables(), "no exact value"
            return {
                name: ReferenceValue(exact.get(name), None, "exact" if name in exact else unknown)
                for name in dict.fromkeys([*self.observables, *exact])
            }
        stored = self.stored_reference()
        if stored.data is None:
            return {name: ReferenceValue(None, None, stored.note) for name in self.observables}
        x, out = stored.data.x.to(torch.float64), {}
        for name, observable in self.observables.items():
            values = observable.series(x)
            variance = observable.statistic == "variance"
            value = float(values.var(unbiased=False) if variance else values.mean())
            out[name] = ReferenceValue(value, None, f"{stored.note}: {len(x)} evaluation frames")
        return out

    def dispersed_starts(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` starting configurations ``[n, *event_shape]`` for independent chains.

        Convergence diagnostics (split-R̂) need chains started from points spread wider
        than the target, so that chains which fail to forget their start disagree
        (Gelman & Rubin 1992; Vehtari et al. 2021). An energy with an exact sampler draws
        them from itself at twice the system's temperature (overdispersed, every basin
        represented); particle systems start each chain from its own relaxed random
        lattice (:meth:`~boltzgen.energies.particles.ParticleEnergy.random_starts`, a quench:
        colder and more ordered than the liquid, and different from chain to chain); other
        systems start every chain from ``initial_positions``. These draws are set-up, not
        sampling: they are not charged.
        """
        if isinstance(self.energy, ParticleEnergy):
            return self.energy.random_starts(n, generator).to(self.initial_positions)
        hot = self.energy.at_temperature(DISPERSED_TEMPERATURE_FACTOR * self.temperature)
        if isinstance(hot, ExactReference):
            return hot.sample_exact(n, generator).to(self.initial_positions)
        return self.initial_positions.expand(n, *self.energy.event_shape).clone()

    def sample_reference(self, n: int, generator: torch.Generator) -> Tensor | None:
        """``n`` exact draws when the system has an exact sampler, else ``None``."""
        if not self.has_exact_reference:
            return None
        return self.energy.sample_exact(n, generator)


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
        observables=_build_observables(card.get("observables", {}), source),
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


def _build_observables(spec: Any, source: Path) -> dict[str, Observable]:
    """``observables: {name: kind}``, each kind from :data:`OBSERVABLE_KINDS`."""
    if not isinstance(spec, Mapping):
        raise ConfigError(source, "observables", "must map result names to kinds", spec)
    for name, kind in spec.items():
        if kind not in OBSERVABLE_KINDS:
            raise ConfigError(
                source, f"observables.{name}", "is not an observable kind", kind, OBSERVABLE_KINDS
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
