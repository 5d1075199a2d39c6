"""A system's reference answers: exact where its energy computes them, else read from the
reference sets made for it.

Exact answers (log Z, state probabilities, draws, observables) come from the energy's
capability (:class:`~boltzgen.energies.exact.ExactReference`). Otherwise the card's
``reference`` route names a stored set (:mod:`boltzgen.records.reference_sets`): MD or PT
frames, and optionally an umbrella manifest for the ΔF. Every read of a set goes through one
check, :meth:`SystemReferences.stored_reference` (or, for a manifest,
:func:`~boltzgen.records.reference_sets.settings_mismatch`): a set serves a system only when
its manifest records that system's energy entry and temperature; otherwise the answer is
``None`` with a note saying why. One exception, for the free energies alone: a PT set made
for the same energy at another temperature serves a system whose temperature is one of its
ladder's rungs, by the MBAR ΔF the set records at that rung (``rung_free_energies``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.exact import ExactLogZ, ExactObservables, ExactReference
from boltzgen.metrics import block_free_energy_difference
from boltzgen.observables.kinds import Observable
from boltzgen.observables.states import State
from boltzgen.records.reference_sets import (
    ReferenceSet,
    load_manifest,
    load_reference,
    settings_mismatch,
)

MIN_TRANSITIONS = 10
"""An MD reference ΔF counts only after this many transitions between the two states."""
RUNG_TOLERANCE = 1e-6
"""Relative difference below which a system's temperature is a PT ladder's rung."""
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


def _rung_values(
    names: list[str], rung: Mapping[str, Any], made_at: float
) -> dict[str, ReferenceValue]:
    """The ΔF of each pair that a PT set made at ``made_at`` records at ``rung``."""
    note = (
        f"pt: MBAR at the ladder's rung T = {rung['temperature']:.6g} of the set made at {made_at}"
    )
    stored = rung["free_energies"]
    return {
        name: ReferenceValue(
            stored.get(name, {}).get("value"), stored.get(name, {}).get("stderr"), note
        )
        for name in names
    }


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


class SystemReferences:
    """The reference answers of a :class:`~boltzgen.systems.System`, which derives from it.

    Reads the system's energy, states, free-energy pairs, observables and its card's
    reference route (the attributes below, set by the system).
    """

    name: str
    energy: Energy
    states: dict[str, State]
    free_energy_pairs: list[tuple[str, str]]
    reference_kind: str
    free_energies_from: str | None
    card: dict[str, Any]
    observables: dict[str, Observable]
    temperature: float

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
        missing = stored.note
        if reference is None and self.reference_kind == "pt":
            made_at, rungs = self._other_rungs()
            for rung in rungs:
                if math.isclose(rung["temperature"], self.temperature, rel_tol=RUNG_TOLERANCE):
                    return _rung_values(names, rung, float(made_at))
            if rungs:
                listed = ", ".join(repr(r["temperature"]) for r in rungs[1:])
                missing = f"{missing}; its ΔF is known at the ladder's rungs {listed}"
        out: dict[str, ReferenceValue] = {}
        for name, (a, b) in zip(names, self.free_energy_pairs, strict=True):
            if reference is not None and self.reference_kind == "pt":
                fe = reference.manifest.get("free_energies", {}).get(name, {})
                note = "pt: MBAR" if "free_energies_from" in reference.manifest else PT_UNSPLIT
                out[name] = ReferenceValue(fe.get("value"), fe.get("stderr"), note)
            elif reference is not None:
                out[name] = md_reference_value(reference.samples(), self.states[a], self.states[b])
            else:
                out[name] = ReferenceValue(None, None, missing)
        return out

    def _other_rungs(self) -> tuple[float | None, list[dict[str, Any]]]:
        """The temperature and ``rung_free_energies`` of the card's PT set when it was made
        for this energy at another temperature; ``(None, [])`` otherwise."""
        manifest = load_manifest(self.name, "pt")
        if manifest is None or "temperature" not in manifest:
            return None, []
        made_at = float(manifest["temperature"])
        if math.isclose(made_at, self.temperature, rel_tol=RUNG_TOLERANCE):
            return None, []  # made at this temperature: the set itself answers, or says why not
        if settings_mismatch(manifest, self.card.get("energy"), made_at, "pt"):
            return None, []
        return made_at, list(manifest.get("rung_free_energies", []))

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

    def stored_reference(
        self, part: str = "evaluation", kind: str | None = None
    ) -> StoredReference:
        """The ``part`` of the card's MD or PT reference set (or of the ``kind`` one, ``md``
        or ``pt``), only if made for this system.

        A set counts only when its manifest records this card's energy entry and this
        system's temperature (:func:`~boltzgen.records.reference_sets.settings_mismatch`): a
        card overridden to another L, β, m², λ, K or temperature never borrows the set made
        at the card's own settings; ``note`` then says why.
        """
        kind = self.reference_kind if kind is None else kind
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
        u, temperature = stored.data.energies.to(torch.float64), self.energy.temperature
        for name, observable in self.observables.items():
            values = observable.values(x, u, temperature)
            variance = observable.statistic == "variance"
            value = float(values.var(unbiased=False) if variance else values.mean())
            out[name] = ReferenceValue(value, None, f"{stored.note}: {len(x)} evaluation frames")
        return out

    def sample_reference(self, n: int, generator: torch.Generator) -> Tensor | None:
        """``n`` exact draws when the system has an exact sampler, else ``None``."""
        if not self.has_exact_reference:
            return None
        return self.energy.sample_exact(n, generator)
