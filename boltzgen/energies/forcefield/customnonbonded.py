"""CustomNonbondedForce: a pair energy ``f(r; params1, params2, globals)`` from its expression.

Semantics of OpenMM's Reference platform:

* pairs: every i < j not excluded; with interaction groups, for each group every
  (a₁ ∈ set₁, a₂ ∈ set₂), a₁ ≠ a₂, not excluded, and only once (a₁ < a₂) when both are
  in both sets; particle a₁ gives the ``…1`` parameters;
* per-particle parameters ``name1``/``name2`` and computed values (per-particle
  expressions of the parameters) likewise;
* CutoffNonPeriodic / CutoffPeriodic: pairs with r ≥ r_c contribute nothing;
  CutoffPeriodic takes minimum images; with a switching function the energy is
  multiplied by ``S = 1 − 10t³ + 15t⁴ − 6t⁵``, ``t = (r − r_sw)/(r_c − r_sw)`` for r > r_sw;
* the long-range correction (CutoffPeriodic only) is ``2πN²/V`` times the
  class-pair-weighted mean of ``∫_{r_c}^∞ f r² dr`` (plus, with switching,
  ``∫_{r_sw}^{r_c} (1 − S) f r² dr``) over the N(N+1)/2 pairs, each integral by OpenMM's
  own midpoint rule on thirds (``CustomNonbondedForceImpl::integrateInteraction``),
  converged to the same 1e-5 relative tolerance, so that the constant matches
  OpenMM's; V is the default box's volume.

Forces are the autograd gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
    summed,
)
from boltzgen.energies.forcefield.geometry import (
    Box,
    BoxVectors,
    displacements,
    squared_norm,
)
from boltzgen.energies.forcefield.language import Expression, ExpressionError
from boltzgen.energies.forcefield.terms import Term

_NB = openmm.CustomNonbondedForce


def _parameters(force: _NB) -> np.ndarray:
    """``[N, K]`` per-particle parameters."""
    n, k = force.getNumParticles(), force.getNumPerParticleParameters()
    rows = [force.getParticleParameters(i) for i in range(n)]
    return np.asarray(rows, dtype=np.float64).reshape(n, k)


def _computed(force: _NB) -> list[tuple[str, Expression]]:
    count = force.getNumComputedValues() if hasattr(force, "getNumComputedValues") else 0
    return [
        (name, Expression(text))
        for name, text in (force.getComputedValueParameters(k) for k in range(count))
    ]


def _exclusions(force: _NB) -> set[tuple[int, int]]:
    pairs = (force.getExclusionParticles(k) for k in range(force.getNumExclusions()))
    return {(min(a, b), max(a, b)) for a, b in pairs}


def _group_pairs(force: _NB, excluded: set[tuple[int, int]]) -> np.ndarray:
    rows = []
    for g in range(force.getNumInteractionGroups()):
        set1, set2 = (set(s) for s in force.getInteractionGroupParameters(g))
        for a1 in sorted(set1):
            for a2 in sorted(set2):
                if a1 == a2 or (min(a1, a2), max(a1, a2)) in excluded:
                    continue
                if a1 > a2 and a2 in set1 and a1 in set2:
                    continue
                rows.append((a1, a2))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def interacting_pairs(force: _NB) -> np.ndarray:
    """``[P, 2]`` the interacting pairs (first gives the ``…1`` parameters)."""
    excluded = _exclusions(force)
    if force.getNumInteractionGroups():
        return _group_pairs(force, excluded)
    i, j = np.triu_indices(force.getNumParticles(), k=1)
    if excluded:
        n = force.getNumParticles()
        codes = np.array([a * n + b for a, b in excluded], dtype=np.int64)
        keep = ~np.isin(i * n + j, codes)
        i, j = i[keep], j[keep]
    return np.stack([i, j], axis=1)


@dataclass(frozen=True)
class NonbondedExpression(AutogradTerm):
    """A compiled CustomNonbondedForce.

    Attributes:
        expression: the pair energy.
        pairs: ``[2, P]`` (first, second).
        parameters: per-particle values ``{name: [N, 1]}`` (parameters and computed values).
        context: globals and tabulated functions.
        cutoff: r_c (nm) or None.
        switch: r_sw (nm) or None.
        uses_pbc: minimum images.
        constant: the long-range correction (kJ/mol), 0 if none.
    """

    expression: Expression
    pairs: Tensor
    parameters: dict[str, Tensor]
    context: Definitions
    cutoff: float | None
    switch: float | None
    uses_pbc: bool
    constant: float

    def potential(self, positions: Tensor, box: BoxVectors | None) -> Tensor:
        first, second = self.pairs
        r = torch.sqrt(squared_norm(displacements(positions, first, second, box)))
        environment = {**self.context.environment(), "r": r}
        for name, column in self.parameters.items():
            environment[name + "1"] = column[first]
            environment[name + "2"] = column[second]
        energy = self.expression(environment)
        if not isinstance(energy, Tensor) or energy.shape != r.shape:
            energy = torch.zeros_like(r) + energy
        if self.switch is not None:
            t = torch.clamp((r - self.switch) / (self.cutoff - self.switch), min=0.0)
            energy = energy * (1.0 + t * t * t * (-10.0 + t * (15.0 - 6.0 * t)))
        if self.cutoff is not None:
            energy = torch.where(r < self.cutoff, energy, torch.zeros_like(energy))
        total = summed(energy, int(first.shape[0]), positions)
        return total + self.constant


def _midpoint_thirds(evaluate: Callable[[np.ndarray], np.ndarray], message: str) -> np.ndarray:
    """OpenMM's midpoint rule on [0, 1], refined by thirds until each row's sum changes by
    < 1e-5 relative (after 3 refinements); ``evaluate(x) -> [C, len(x)]`` integrands."""
    total, converged, done = None, None, None
    points = 1
    for iteration in range(11):
        x = np.array([(i + 0.5) / points for i in range(points) if i % 3 != 1])
        new = evaluate(x).sum(axis=1) / points
        old = np.zeros_like(new) if total is None else total
        current = new + old / 3
        with np.errstate(divide="ignore", invalid="ignore"):
            change = np.abs((current - old) / current)
        if total is None:
            total, done, converged = current, np.zeros(len(new), bool), current.copy()
        total = current
        stop = ~done & (iteration > 2) & ((change < 1e-5) | (current == 0))
        converged[stop] = current[stop]
        done |= stop
        if done.all():
            return converged
        points *= 3
    raise ExpressionError(message)


def _classes(force: _NB) -> tuple[np.ndarray, np.ndarray]:
    """(classes ``[C, K]`` by first appearance, class of each particle ``[N]``)."""
    params = _parameters(force)
    index: dict[tuple[float, ...], int] = {}
    of = np.empty(len(params), dtype=np.int64)
    for n, row in enumerate(map(tuple, params)):
        of[n] = index.setdefault(row, len(index))
    return np.asarray(list(index), dtype=np.float64).reshape(len(index), params.shape[1]), of


def _class_counts(force: _NB, of: np.ndarray, classes: int) -> np.ndarray:
    """``[C, C]`` (upper triangle) interactions per class pair, as OpenMM counts them."""
    counts = np.zeros((classes, classes))
    if not force.getNumInteractionGroups():
        size = np.bincount(of, minlength=classes).astype(np.float64)
        counts = np.outer(size, size)
        counts[np.diag_indices(classes)] = size * (size + 1) / 2
        return np.triu(counts)
    for g in range(force.getNumInteractionGroups()):
        set1, set2 = (set(s) for s in force.getInteractionGroupParameters(g))
        for a1 in set1:
            for a2 in set2:
                if a1 >= a2 and a2 in set1 and a1 in set2:
                    continue
                c1, c2 = of[a1], of[a2]
                counts[min(c1, c2), max(c1, c2)] += 1
    return counts


def long_range_correction(force: _NB, context: Definitions, box: Box) -> float:
    """The long-range correction (kJ/mol) of ``force`` in ``box`` (module docstring)."""
    classes, of = _classes(force)
    counts = _class_counts(force, of, len(classes))
    a, b = np.nonzero(counts)
    names = names_of(force, "getNumPerParticleParameters", "getPerParticleParameterName")
    values = _class_values(force, classes, names, context)
    expression = Expression(force.getEnergyFunction())

    def integrand(r: np.ndarray) -> np.ndarray:
        environment = {**context.environment(), "r": torch.as_tensor(r)[None, :]}
        for name, column in values.items():
            environment[name + "1"] = torch.as_tensor(column[a])[:, None]
            environment[name + "2"] = torch.as_tensor(column[b])[:, None]
        value = expression(environment)
        shape = (len(a), len(r))
        return (torch.zeros(shape, dtype=torch.float64) + value).numpy()

    cutoff = force.getCutoffDistance().value_in_unit(openmm.unit.nanometer)
    tail = (
        _midpoint_thirds(
            lambda x: integrand(cutoff / x) * (cutoff / x) ** 4,
            "CustomNonbondedForce: the long-range correction does not converge",
        )
        / cutoff
    )
    if force.getUseSwitchingFunction():
        start = force.getSwitchingDistance().value_in_unit(openmm.unit.nanometer)

        def switched(x: np.ndarray) -> np.ndarray:
            r = start + x * (cutoff - start)
            return x**3 * (10 + x * (-15 + x * 6)) * integrand(r) * r * r

        tail = tail + _midpoint_thirds(switched, "switching interval does not converge") * (
            cutoff - start
        )
    n = float(force.getNumParticles())
    mean = float((counts[a, b] * tail).sum()) / (n * (n + 1) / 2)
    return 2 * math.pi * n * n * mean / box.volume


def _class_values(
    force: _NB, classes: np.ndarray, names: tuple[str, ...], context: Definitions
) -> dict[str, np.ndarray]:
    values = {name: classes[:, k] for k, name in enumerate(names)}
    for name, expression in _computed(force):
        environment = {
            **context.environment(),
            **{k: torch.as_tensor(v) for k, v in values.items()},
        }
        result = expression(environment)
        values[name] = (torch.zeros(len(classes), dtype=torch.float64) + result).numpy()
    return values


def check_custom_nonbonded(force: _NB) -> None:
    """Raise :class:`ExpressionError` if ``force`` cannot be compiled."""
    check_definitions(force)
    names = names_of(force, "getNumPerParticleParameters", "getPerParticleParameterName")
    base = {*names, *definitions_names(force)}
    computed = _computed(force)
    for _, expression in computed:
        expression.check(base, function_names(force))
    every = [*names, *(name for name, _ in computed)]
    pair = {"r", *definitions_names(force), *(n + s for n in every for s in "12")}
    Expression(force.getEnergyFunction()).check(pair, function_names(force))


def custom_nonbonded(force: _NB, box: Box | None) -> list[Term]:
    """Compile a CustomNonbondedForce; ``box`` is the System's default box."""
    method = force.getNonbondedMethod()
    context = definitions(force)
    names = names_of(force, "getNumPerParticleParameters", "getPerParticleParameterName")
    params = _parameters(force)
    values = {name: torch.as_tensor(params[:, [k]].copy()) for k, name in enumerate(names)}
    for name, expression in _computed(force):
        result = expression({**context.environment(), **values})
        values[name] = torch.zeros(len(params), 1, dtype=torch.float64) + result
    cutoff = switch = None
    if method != _NB.NoCutoff:
        cutoff = force.getCutoffDistance().value_in_unit(openmm.unit.nanometer)
        if force.getUseSwitchingFunction():
            switch = force.getSwitchingDistance().value_in_unit(openmm.unit.nanometer)
    periodic = method == _NB.CutoffPeriodic
    constant = 0.0
    if periodic and force.getUseLongRangeCorrection():
        assert box is not None, "CutoffPeriodic needs the System's default box"
        constant = long_range_correction(force, context, box)
    pairs = torch.as_tensor(interacting_pairs(force).T.copy())
    return [
        NonbondedExpression(
            Expression(force.getEnergyFunction()),
            pairs,
            values,
            context,
            cutoff,
            switch,
            periodic,
            constant,
        )
    ]
