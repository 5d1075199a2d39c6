"""What producing samples cost: :class:`Cost` and the :class:`CostMeter` that measures it.

Every energy evaluation a sampler or a training loop makes is charged. A :class:`Cost`
counts energy and force evaluations (configurations) and wall seconds, split into the
sampling cost and what training the generator cost beforehand.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass
class EvaluationCounter:
    """Number of configurations evaluated, shared by an energy and its views."""

    energy: int = 0
    force: int = 0
    nonfinite: int = 0

    def snapshot(self) -> EvaluationCounter:
        return EvaluationCounter(self.energy, self.force, self.nonfinite)

    def since(self, earlier: EvaluationCounter) -> EvaluationCounter:
        """Evaluations made after ``earlier`` was taken."""
        return EvaluationCounter(
            self.energy - earlier.energy,
            self.force - earlier.force,
            self.nonfinite - earlier.nonfinite,
        )


@dataclass
class Cost:
    """Energy and force evaluations (configurations) and wall seconds spent.

    ``energy_evals`` / ``force_evals`` / ``wall_s`` are the sampling cost;
    the ``train_*`` fields are what training the generator cost beforehand.
    """

    energy_evals: int = 0
    force_evals: int = 0
    wall_s: float = 0.0
    train_energy_evals: int = 0
    train_force_evals: int = 0
    train_wall_s: float = 0.0

    @property
    def total_energy_evals(self) -> int:
        """Every target evaluation, energy or force, training included."""
        return (
            self.energy_evals + self.force_evals + self.train_energy_evals + self.train_force_evals
        )

    @property
    def total_wall_s(self) -> float:
        return self.wall_s + self.train_wall_s

    def __add__(self, other: Cost) -> Cost:
        """Field-by-field sum: two costs paid one after the other."""
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(**{k: getattr(self, k) + getattr(other, k) for k in Cost.__dataclass_fields__})

    def with_training(self, training: Cost) -> Cost:
        """This sampling cost with ``training``'s sampling fields as its training cost."""
        return Cost(
            self.energy_evals,
            self.force_evals,
            self.wall_s,
            self.train_energy_evals + training.energy_evals + training.train_energy_evals,
            self.train_force_evals + training.force_evals + training.train_force_evals,
            self.train_wall_s + training.wall_s + training.train_wall_s,
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cost:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


class CountsEvaluations(Protocol):
    """Anything with an evaluation counter: every :class:`~boltzgen.energies.Energy`."""

    counter: EvaluationCounter


class CostMeter:
    """Measures what a block of code costs on an energy: evaluations and wall time."""

    def __init__(self, energy: CountsEvaluations):
        self.energy = energy
        self.cost = Cost()

    @contextmanager
    def measure(self) -> Iterator[Cost]:
        before = self.energy.counter.snapshot()
        start = time.perf_counter()
        try:
            yield self.cost
        finally:
            spent = self.energy.counter.since(before)
            self.cost.energy_evals += spent.energy
            self.cost.force_evals += spent.force
            self.cost.wall_s += time.perf_counter() - start
