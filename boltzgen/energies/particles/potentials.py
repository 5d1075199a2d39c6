"""Pair potentials of glass formers: inverse powers cut at x_c = r_c/σ, shifted or smoothed.

With x = r/σ_ij every model here is v(x) = Σ_k a_k x^(−p_k) + c₀ + c₂x² + c₄x⁴ for
x < x_c and 0 beyond, times ε_ij:

* ``shift`` — c₂ = c₄ = 0 and c₀ = −Σ a_k x_c^(−p_k): v is continuous at the cutoff
  (the truncated-and-shifted Kob–Andersen mixture, Kob & Andersen, PRE 51, 4626 (1995)).
* ``quartic`` — c₀, c₂, c₄ solve v(x_c) = v′(x_c) = v″(x_c) = 0, so energy, force and
  its derivative are continuous (Ninarello, Berthier, Coslovich, "Models and algorithms
  for the next generation of glass transition studies", PRX 7, 021039 (2017),
  arXiv 1704.08864: for v = x^(−12), c₀ = −28/x_c¹², c₂ = 48/x_c¹⁴, c₄ = −21/x_c¹⁶).

Powers are even, so v is evaluated on s = x² without a square root.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from torch import Tensor

SMOOTHINGS = ("shift", "quartic")


@dataclass(frozen=True)
class CutInversePowers:
    """v(x) = Σ a_k x^(−p_k) + c₀ + c₂x² + c₄x⁴ on x < x_c, zero beyond.

    Args:
        terms: ``((a_k, p_k), ...)`` with even powers p_k, e.g. ``((4, 12), (-4, 6))`` for LJ.
        x_cut: the cutoff in units of the pair's σ.
        smoothing: ``shift`` or ``quartic`` (see the module docstring).
    """

    terms: tuple[tuple[float, int], ...]
    x_cut: float
    smoothing: str

    def __post_init__(self) -> None:
        if self.smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {self.smoothing!r}")
        if any(p % 2 for _, p in self.terms):
            raise ValueError(f"powers must be even, got {[p for _, p in self.terms]}")

    @cached_property
    def coefficients(self) -> tuple[float, float, float]:
        """(c₀, c₂, c₄) of the cutoff correction (solved once per potential)."""
        xc = self.x_cut
        bare = [sum(a * _derivative_of_power(-p, k, xc) for a, p in self.terms) for k in range(3)]
        if self.smoothing == "shift":
            return (-bare[0], 0.0, 0.0)
        rows = np.array([[1.0, xc**2, xc**4], [0.0, 2 * xc, 4 * xc**3], [0.0, 2.0, 12 * xc**2]])
        c0, c2, c4 = np.linalg.solve(rows, -np.array(bare))
        return (float(c0), float(c2), float(c4))

    def value(self, x: float, derivative: int = 0) -> float:
        """d^k/dx^k of Σ a x^(−p) + c₀ + c₂x² + c₄x⁴ at a scalar x < x_c (tests, docs)."""
        c0, c2, c4 = self.coefficients
        poly = [(c0, 0), (c2, 2), (c4, 4)]
        total = sum(a * _derivative_of_power(-p, derivative, x) for a, p in self.terms)
        return total + sum(c * _derivative_of_power(q, derivative, x) for c, q in poly)

    def __call__(self, s: Tensor) -> Tensor:
        """v at s = x² (any shape), zero where s ≥ x_c²; powers by multiplication."""
        c0, c2, c4 = self.coefficients
        inside = s < self.x_cut**2
        s_safe = s.where(inside, s.new_tensor(self.x_cut**2))
        value = c0 + s_safe * (c2 + c4 * s_safe)
        inverse, powers = 1.0 / s_safe, {}
        for a, p in self.terms:
            value = value + a * _integer_power(inverse, p // 2, powers)
        return value.where(inside, s.new_zeros(()))


def _integer_power(base: Tensor, k: int, cache: dict[int, Tensor]) -> Tensor:
    """base**k for k ≥ 1 by repeated squaring, reusing the powers already in ``cache``."""
    if k not in cache:
        if k == 1:
            cache[k] = base
        else:
            half = _integer_power(base, k // 2, cache)
            square = half * half
            cache[k] = square * base if k % 2 else square
    return cache[k]


def _derivative_of_power(q: int, k: int, x: float) -> float:
    """d^k/dx^k x^q at x."""
    factor = 1.0
    for i in range(k):
        factor *= q - i
    return factor * x ** (q - k) if factor != 0.0 else 0.0
