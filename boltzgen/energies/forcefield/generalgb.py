"""CustomGBForce in general: computed values and energy terms from their expressions.

Semantics of OpenMM's Reference platform (``ReferenceCustomGBIxn``), particles i, j,
per-particle parameters ``p`` and computed values ``v``, evaluated in order:

* a SingleParticle computed value ``v_k(i) = f(p(i), v_<k(i), x, y, z, globals)``;
* a ParticlePair computed value ``v_k(i) = Σ_{j≠i} f(r, p(i)→…1, p(j)→…2, v_<k)``, the
  expression evaluated once per ordered pair; ParticlePair skips excluded pairs,
  ParticlePairNoExclusions does not;
* energy terms: SingleParticle ``Σ_i f(i)``; ParticlePair / ParticlePairNoExclusions
  ``Σ_{i<j} f(r, i→1, j→2)`` (excluded pairs skipped for ParticlePair);
* with a cutoff, pairs with r ≥ r_c contribute nothing (to values and energies);
  CutoffPeriodic takes minimum images. OpenMM then takes each pair in the order of its
  neighbour list, so a pair energy term that is not symmetric under 1 ↔ 2 depends on
  that order there; we keep i < j (openmm.app's terms are all symmetric).

The openmm.app OBC2 and GBn2 forms keep their hand-written kernels
(:mod:`~boltzgen.energies.forcefield.customgb`); every other form comes here. Forces
are the autograd gradient (through the computed values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import openmm
import torch
from torch import Tensor

from boltzgen.energies.forcefield.custom import (
    AutogradTerm,
    Definitions,
    check_definitions,
    definitions,
    definitions_names,
    function_names,
    names_of,
)
from boltzgen.energies.forcefield.geometry import BoxVectors, displacements, squared_norm
from boltzgen.energies.forcefield.language import Expression, ExpressionError
from boltzgen.energies.forcefield.terms import Term

_GB = openmm.CustomGBForce
SINGLE = _GB.SingleParticle
PAIR = _GB.ParticlePair
PAIR_ALL = _GB.ParticlePairNoExclusions
_KINDS = {SINGLE: "SingleParticle", PAIR: "ParticlePair", PAIR_ALL: "ParticlePairNoExclusions"}


@dataclass(frozen=True)
class Step:
    """One computed value (``name`` set) or energy term (``name`` None) of a kind."""

    name: str | None
    expression: Expression
    kind: int


@dataclass(frozen=True)
class GeneralGB(AutogradTerm):
    """A compiled CustomGBForce.

    Attributes:
        steps: computed values, then energy terms, in OpenMM's order.
        parameters: ``{name: [N, 1]}`` per-particle parameters.
        pairs: ``[2, P]`` every i < j; ``included``: ``[P]`` bool, not excluded.
        context: globals and tabulated functions.
        cutoff: r_c (nm) or None; ``uses_pbc``: minimum images.
    """

    steps: tuple[Step, ...]
    parameters: dict[str, Tensor]
    pairs: Tensor
    included: Tensor
    context: Definitions
    cutoff: float | None
    uses_pbc: bool

    def potential(self, positions: Tensor, box: BoxVectors | None) -> Tensor:
        n, batch = positions.shape[0], positions.shape[2]
        values: dict[str, Tensor] = {
            name: column.expand(n, batch) for name, column in self.parameters.items()
        }
        geometry = {
            "x": positions[:, 0],
            "y": positions[:, 1],
            "z": positions[:, 2],
        }
        pair_sets = {PAIR: self.pairs[:, self.included], PAIR_ALL: self.pairs}
        energy = positions.new_zeros(batch)
        for step in self.steps:
            if step.kind == SINGLE:
                environment = {**self.context.environment(), **values, **geometry}
                result = _full(step.expression(environment), (n, batch), positions)
                if step.name is None:
                    energy = energy + result.sum(0)
                else:
                    values[step.name] = result
                continue
            first, second = pair_sets[step.kind]
            r = torch.sqrt(squared_norm(displacements(positions, first, second, box)))
            inside = None if self.cutoff is None else r < self.cutoff
            forward = self._pair(step, values, first, second, r, inside)
            if step.name is None:
                energy = energy + forward.sum(0)
                continue
            backward = self._pair(step, values, second, first, r, inside)
            total = torch.zeros((n, batch), dtype=r.dtype, device=r.device)
            values[step.name] = total.index_add(0, first, forward).index_add(0, second, backward)
        return energy

    def _pair(
        self,
        step: Step,
        values: dict[str, Tensor],
        first: Tensor,
        second: Tensor,
        r: Tensor,
        inside: Tensor | None,
    ) -> Tensor:
        environment = {**self.context.environment(), "r": r}
        for name, column in values.items():
            environment[name + "1"] = column[first]
            environment[name + "2"] = column[second]
        result = _full(step.expression(environment), r.shape, r)
        if inside is not None:
            result = torch.where(inside, result, torch.zeros_like(result))
        return result


def _full(value, shape, like: Tensor) -> Tensor:
    if isinstance(value, Tensor) and value.shape == tuple(shape):
        return value
    return torch.zeros(shape, dtype=like.dtype, device=like.device) + value


def _steps(force: _GB) -> list[Step]:
    steps = []
    for k in range(force.getNumComputedValues()):
        name, text, kind = force.getComputedValueParameters(k)
        steps.append(Step(name, Expression(text), kind))
    for k in range(force.getNumEnergyTerms()):
        text, kind = force.getEnergyTermParameters(k)
        steps.append(Step(None, Expression(text), kind))
    return steps


def check_general_gb(force: _GB) -> None:
    """Raise :class:`ExpressionError` naming what in ``force`` cannot be compiled."""
    check_definitions(force)
    base = {*names_of(force, "getNumPerParticleParameters", "getPerParticleParameterName")}
    base |= definitions_names(force)
    tables = function_names(force)
    known: list[str] = []
    for step in _steps(force):
        if step.kind not in _KINDS:
            raise ExpressionError(f"computation type {step.kind} is not supported")
        own = {*base, *known}
        if step.kind == SINGLE:
            allowed = {*own, "x", "y", "z"}
        else:
            allowed = {"r", *definitions_names(force)}
            allowed |= {n + s for n in own - definitions_names(force) for s in "12"}
        step.expression.check(allowed, tables)
        if step.name is not None:
            known.append(step.name)


def general_gb(force: _GB) -> list[Term]:
    """Compile any CustomGBForce (see :func:`check_general_gb`)."""
    n = force.getNumParticles()
    names = names_of(force, "getNumPerParticleParameters", "getPerParticleParameterName")
    rows = np.asarray([force.getParticleParameters(i) for i in range(n)], dtype=np.float64).reshape(
        n, len(names)
    )
    i, j = np.triu_indices(n, k=1)
    excluded = {
        (min(a, b), max(a, b))
        for a, b in (force.getExclusionParticles(k) for k in range(force.getNumExclusions()))
    }
    codes = np.array([a * n + b for a, b in excluded], dtype=np.int64)
    included = ~np.isin(i * n + j, codes)
    cutoff = None
    if force.getNonbondedMethod() != _GB.NoCutoff:
        cutoff = force.getCutoffDistance().value_in_unit(openmm.unit.nanometer)
    return [
        GeneralGB(
            tuple(_steps(force)),
            {name: torch.as_tensor(rows[:, [k]].copy()) for k, name in enumerate(names)},
            torch.as_tensor(np.stack([i, j])),
            torch.as_tensor(included),
            definitions(force),
            cutoff,
            force.getNonbondedMethod() == _GB.CutoffPeriodic,
        )
    ]
