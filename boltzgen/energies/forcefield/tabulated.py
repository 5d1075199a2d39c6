"""Tabulated functions of custom forces and the cubic splines behind them, as OpenMM builds them.

Splines (OpenMM's ``SplineFitter``): on knots x₀ < … < x_{n−1} with values y, the cubic
spline with second derivatives y″ is, on [x_k, x_{k+1}] with h = x_{k+1} − x_k,
``a = (x_{k+1} − t)/h``, ``b = 1 − a``,

    s(t) = a y_k + b y_{k+1} + ((a³ − a) y″_k + (b³ − b) y″_{k+1}) h²/6.

The *natural* spline has y″₀ = y″_{n−1} = 0 and solves the tridiagonal system
``h_{k−1} y″_{k−1} + 2(h_{k−1} + h_k) y″_k + h_k y″_{k+1} = 6((y_{k+1}−y_k)/h_k −
(y_k−y_{k−1})/h_{k−1})``; the *periodic* spline (y₀ = y_{n−1}) closes the system
cyclically and is solved by Sherman–Morrison, both exactly as OpenMM does (same
operations, so the same numbers to rounding).

Tabulated functions (OpenMM's Reference platform):

* ``Continuous1DFunction(values, min, max, periodic)``: the spline through
  ``values`` on n equally spaced knots of [min, max]; 0 outside [min, max]; a
  periodic one wraps its argument into [min, max) first.
* ``Discrete1D/2D/3DFunction``: ``values[i + size_x (j + size_y k)]`` at the
  arguments rounded half away from zero and clamped to the table; zero derivative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import openmm
import torch
from torch import Tensor

from boltzgen.energies.forcefield.language import ExpressionError, Value


def solve_tridiagonal(
    a: list[float], b: list[float], c: list[float], rhs: list[float]
) -> list[float]:
    """Solve ``a_k s_{k−1} + b_k s_k + c_k s_{k+1} = rhs_k`` (Thomas algorithm)."""
    n = len(a)
    gamma, solution = [0.0] * n, [0.0] * n
    solution[0] = rhs[0] / b[0]
    beta = b[0]
    for i in range(1, n):
        gamma[i] = c[i - 1] / beta
        beta = b[i] - a[i] * gamma[i]
        solution[i] = (rhs[i] - a[i] * solution[i - 1]) / beta
    for i in range(n - 2, -1, -1):
        solution[i] -= gamma[i + 1] * solution[i + 1]
    return solution


def _interior(x: list[float], y: list[float], i: int) -> tuple[float, float, float, float]:
    return (
        x[i] - x[i - 1],
        2.0 * (x[i + 1] - x[i - 1]),
        x[i + 1] - x[i],
        6.0 * ((y[i + 1] - y[i]) / (x[i + 1] - x[i]) - (y[i] - y[i - 1]) / (x[i] - x[i - 1])),
    )


def natural_spline(x: list[float], y: list[float]) -> list[float]:
    """Second derivatives y″ of the natural cubic spline through (x, y)."""
    n = len(x)
    if n < 2:
        raise ExpressionError("a spline needs at least 2 points")
    rows = [(0.0, 1.0, 0.0, 0.0)] + [_interior(x, y, i) for i in range(1, n - 1)]
    rows.append((0.0, 1.0, 0.0, 0.0))
    a, b, c, rhs = (list(column) for column in zip(*rows, strict=True))
    return solve_tridiagonal(a, b, c, rhs)


def periodic_spline(x: list[float], y: list[float]) -> list[float]:
    """Second derivatives y″ of the periodic cubic spline through (x, y), y₀ = y_{n−1}."""
    n = len(x)
    if n < 3:
        raise ExpressionError("a periodic spline needs at least 3 points")
    if abs(y[0] - y[-1]) > 1e-15 + 1e-15 * abs(y[-1]):
        raise ExpressionError("a periodic spline needs equal first and last values")
    first = (
        x[n - 1] - x[n - 2],
        2.0 * (x[1] - x[0] + x[n - 1] - x[n - 2]),
        x[1] - x[0],
        6.0 * ((y[1] - y[0]) / (x[1] - x[0]) - (y[n - 1] - y[n - 2]) / (x[n - 1] - x[n - 2])),
    )
    rows = [first] + [_interior(x, y, i) for i in range(1, n - 1)]
    a, b, c, rhs = (list(column) for column in zip(*rows, strict=True))
    beta, alpha, gamma = a[0], c[n - 2], -b[0]
    m = n - 1
    b[0] -= gamma
    b[m - 1] -= alpha * beta / gamma
    deriv = solve_tridiagonal(a, b, c, rhs)
    u = [0.0] * m
    u[0], u[m - 1] = gamma, alpha
    z = solve_tridiagonal(a, b, c, u)
    scale = (deriv[0] + beta * deriv[m - 1] / gamma) / (1.0 + z[0] + beta * z[m - 1] / gamma)
    deriv = [d - scale * zi for d, zi in zip(deriv, z, strict=True)]
    return [*deriv, deriv[0]]


def spline_derivative(x: list[float], y: list[float], deriv: list[float], t: float) -> float:
    """ds/dt of the spline (x, y, y″) at t ∈ [x₀, x_{n−1}] (OpenMM's interval search)."""
    lower, upper = 0, len(x) - 1
    while upper - lower > 1:
        middle = (upper + lower) // 2
        if x[middle] > t:
            upper = middle
        else:
            lower = middle
    dx = x[upper] - x[lower]
    a = (x[upper] - t) / dx
    b = 1.0 - a
    dadx = -1.0 / dx
    return (
        dadx * y[lower]
        - dadx * y[upper]
        + ((1.0 - 3.0 * a * a) * deriv[lower] + (3.0 * b * b - 1.0) * deriv[upper]) * dx / 6.0
    )


def _tensor(value: Value, like: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def _round_half_away(x: Tensor) -> Tensor:
    return torch.where(x >= 0, torch.floor(x + 0.5), torch.ceil(x - 0.5))


@dataclass(frozen=True)
class Spline1D:
    """``Continuous1DFunction``: knots ``x``, values ``y``, second derivatives ``d`` ([n])."""

    x: Tensor
    y: Tensor
    d: Tensor
    low: float
    high: float
    periodic: bool

    def __call__(self, argument: Value) -> Tensor:
        t = _tensor(argument, self.y)
        span = self.high - self.low
        if self.periodic:
            s = (t - self.low) / span
            t = self.low + span * (s - torch.floor(s))
        n = self.x.shape[0]
        step = span / (n - 1)
        lower = torch.clamp(torch.floor((t.detach() - self.low) / step), 0, n - 2).long()
        upper = lower + 1
        h = self.x[upper] - self.x[lower]
        a = (self.x[upper] - t) / h
        b = 1.0 - a
        value = a * self.y[lower] + b * self.y[upper]
        value = value + ((a * a * a - a) * self.d[lower] + (b * b * b - b) * self.d[upper]) * (
            h * h / 6.0
        )
        inside = (t >= self.low) & (t <= self.high)
        return torch.where(inside, value, torch.zeros_like(value))


@dataclass(frozen=True)
class Table:
    """``Discrete1D/2D/3DFunction``: ``values`` ``[size_z, size_y, size_x]`` (1 where absent)."""

    values: Tensor
    sizes: tuple[int, ...]

    def __call__(self, *arguments: Value) -> Tensor:
        like = next((a for a in arguments if isinstance(a, Tensor)), self.values)
        indices = [
            torch.clamp(_round_half_away(_tensor(a, like).detach()), 0, size - 1).long()
            for a, size in zip(arguments, self.sizes, strict=True)
        ]
        flat = indices[0]
        stride = 1
        for index, size in zip(indices[1:], self.sizes[:-1], strict=True):
            stride *= size
            flat = flat + stride * index
        return self.values.reshape(-1)[flat]


def tabulated(function: openmm.TabulatedFunction) -> Spline1D | Table:
    """The torch form of an OpenMM tabulated function (float64, CPU).

    Raises:
        ExpressionError: for Continuous2DFunction and Continuous3DFunction.
    """
    if isinstance(function, openmm.Continuous1DFunction):
        values, low, high = function.getFunctionParameters()
        values = [float(v) for v in values]
        n = len(values)
        x = [low + i * (high - low) / (n - 1) for i in range(n)]
        periodic = function.getPeriodic()
        d = periodic_spline(x, values) if periodic else natural_spline(x, values)
        t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
        return Spline1D(t(x), t(values), t(d), float(low), float(high), periodic)
    for kind, count in (
        (openmm.Discrete1DFunction, 1),
        (openmm.Discrete2DFunction, 2),
        (openmm.Discrete3DFunction, 3),
    ):
        if isinstance(function, kind):
            parameters = function.getFunctionParameters()
            values = np.asarray(parameters if count == 1 else parameters[-1], dtype=np.float64)
            sizes = (len(values),) if count == 1 else tuple(parameters[:count])
            return Table(torch.as_tensor(values), tuple(int(s) for s in sizes))
    raise ExpressionError(f"tabulated function {type(function).__name__} is not supported")


def arguments_of(function: Spline1D | Table) -> int:
    """How many arguments the tabulated function takes."""
    return 1 if isinstance(function, Spline1D) else len(function.sizes)


def check_tabulated(function: openmm.TabulatedFunction) -> str | None:
    """Why ``function`` cannot be compiled, or None."""
    supported = (
        openmm.Continuous1DFunction,
        openmm.Discrete1DFunction,
        openmm.Discrete2DFunction,
        openmm.Discrete3DFunction,
    )
    if not isinstance(function, supported):
        return f"tabulated function {type(function).__name__} is not supported"
    return None
