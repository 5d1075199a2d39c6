"""A value with its standard error: what every statistical metric returns."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Estimate:
    """An estimate and its standard error (``inf`` when it cannot be estimated).

    Unpacks like a pair: ``value, stderr = free_energy_difference(...)``.
    """

    value: float
    stderr: float

    def __iter__(self) -> Iterator[float]:
        return iter((self.value, self.stderr))
