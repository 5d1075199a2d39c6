"""Energies that know their exact answers, recognised by what they can compute.

An energy that can compute log Z = log ∫exp(−u(x)) dx, the probability of a coordinate
interval, and independent draws from p(x) = exp(−u(x))/Z is an :class:`ExactReference`.
Its exact answers are the reference that samplers and generators are scored against,
and no card flag can grant them: ``isinstance(energy, ExactReference)`` checks that the
energy has them (as openmmtools' test systems expose ``get_potential_expectation``).
The toy energies of :mod:`boltzgen.energies.toy` are exact, and so are their tempered
views where the family is closed under u → s·u (double wells, Gaussians; not mixtures).

Example:
    >>> from boltzgen.energies.toy import DoubleWell2D, GaussianMixture
    >>> isinstance(DoubleWell2D().at_temperature(2.0), ExactReference)
    True
    >>> isinstance(GaussianMixture([[0.0]], [[1.0]]).at_temperature(2.0), ExactReference)
    False
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class ExactReference(Protocol):
    """What an exactly solvable energy offers (``x: [n, *event_shape]``, reduced units).

    Attributes:
        log_z: log Z = log ∫exp(−u(x)) dx at the energy's temperature.
    """

    @property
    def log_z(self) -> float: ...

    def interval_log_prob(self, coordinate: int, low: float, high: float) -> float:
        """log P(low < x_flat[coordinate] < high) under p(x) = exp(−u(x))/Z."""
        ...

    def sample_exact(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` independent draws ``[n, *event_shape]`` from p(x) = exp(−u(x))/Z."""
        ...


@runtime_checkable
class ExactLogZ(Protocol):
    """An energy that knows log Z = log ∫exp(−u(x)) dx but no more (lattice models:
    the Ising model's ln Z by Kaufman's formula, U(1) by the character expansion)."""

    @property
    def log_z(self) -> float: ...


@runtime_checkable
class ExactObservables(Protocol):
    """An energy that knows the exact expectations of some named observables."""

    def exact_observables(self) -> dict[str, float]:
        """{observable name (as in ``result.json``): exact expectation}."""
        ...
