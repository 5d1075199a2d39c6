"""Bonded terms: HarmonicBondForce, HarmonicAngleForce and PeriodicTorsionForce.

Forms (OpenMM user guide, "Standard Forces"), energies in kJ/mol:

* bond:    ``E = ½ k (r - r₀)²``, r = |x_j - x_i| (nm), k in kJ/mol/nm².
* angle:   ``E = ½ k (θ - θ₀)²``, θ the angle at the middle atom (rad), k in kJ/mol/rad².
* torsion: ``E = k (1 + cos(n φ - φ₀))``, φ the dihedral of four atoms, zero when the
  outer atoms are cis, with the IUPAC sign, ``φ = atan2(|b₂| b₁·(b₂×b₃),
  (b₁×b₂)·(b₂×b₃))`` for the bond vectors ``b₁ = x₂-x₁``, ``b₂ = x₃-x₂``, ``b₃ = x₄-x₃``.

Gradients are analytic: for the angle θ = atan2(|u×v|, u·v) between ``u = x₁-x₂`` and
``v = x₃-x₂``, ``∂θ/∂u = (u·v u/|u|² - v)/|u×v|``; for the dihedral, with
``m = b₁×b₂`` and ``n = b₂×b₃`` (Blondel & Karplus, J. Comput. Chem. 17, 1132 (1996)),
``∂φ/∂b₁ = |b₂| m/|m|²``, ``∂φ/∂b₃ = |b₂| n/|n|²`` and
``∂φ/∂b₂ = -(b₁·b₂) m/(|m|²|b₂|) - (b₂·b₃) n/(|n|²|b₂|)``.

A force whose ``usesPeriodicBoundaryConditions()`` is true takes minimum images of its
bond vectors.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openmm
import torch
from openmm import unit
from torch import Tensor

from boltzgen.energies.forcefield.geometry import (
    BoxVectors,
    Frame,
    displacements,
    squared_norm,
)
from boltzgen.energies.forcefield.terms import Term, magnitude


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Dot products over the component dimension: ``[M, 3, B]`` × 2 → ``[M, B]``."""
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


def _cross(a: Tensor, b: Tensor) -> Tensor:
    """Cross products over the component dimension of ``[M, 3, B]`` tensors."""
    return torch.stack(
        [
            a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
            a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
            a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0],
        ],
        dim=1,
    )


def _times(scalar: Tensor, vector: Tensor) -> Tensor:
    return scalar[:, None, :] * vector


def _vectors(positions: Tensor, atoms: list[Tensor], box: BoxVectors | None) -> list[Tensor]:
    """Bond vectors ``X[atoms[k+1]] - X[atoms[k]]: [M, 3, B]`` along each tuple."""
    return [displacements(positions, a, b, box) for a, b in itertools.pairwise(atoms)]


def _scatter(positions: Tensor, atoms: list[Tensor], vector_gradients: list[Tensor]) -> Tensor:
    """``dU/dX: [N, 3, B]`` from the gradients of the bond vectors of :func:`_vectors`."""
    gradient = torch.zeros_like(positions)
    for k, g in enumerate(vector_gradients):
        gradient = gradient.index_add(0, atoms[k + 1], g).index_add(0, atoms[k], -g)
    return gradient


def bonds_kernel(
    positions: Tensor,
    atoms: list[Tensor],
    parameters: tuple[Tensor, Tensor],
    box: BoxVectors | None,
    with_gradient: bool,
) -> tuple[Tensor, Tensor | None]:
    """Energy ``[B]`` of ``Σ ½ k (r - r₀)²`` and, if asked, ``dU/dX: [N, 3, B]`` (a
    kernel). ``atoms`` = [i, j], ``parameters`` = (r₀, k) as ``[M, 1]``."""
    length, k = parameters
    (d,) = _vectors(positions, atoms, box)
    r = torch.sqrt(squared_norm(d))
    stretch = r - length
    energy = 0.5 * (k * stretch * stretch).sum(0)
    if not with_gradient:
        return energy, None
    return energy, _scatter(positions, atoms, [_times(k * stretch / r, d)])


def angles_kernel(
    positions: Tensor,
    atoms: list[Tensor],
    parameters: tuple[Tensor, Tensor],
    box: BoxVectors | None,
    with_gradient: bool,
) -> tuple[Tensor, Tensor | None]:
    """Energy ``[B]`` of ``Σ ½ k (θ - θ₀)²`` and, if asked, ``dU/dX: [N, 3, B]`` (a
    kernel). ``atoms`` = [i, j, k] (vertex j), ``parameters`` = (θ₀, k) as ``[M, 1]``."""
    theta0, k = parameters
    b1, b2 = _vectors(positions, atoms, box)
    u, v = -b1, b2  # from the vertex to the outer atoms
    cosine_part, cross = _dot(u, v), _cross(u, v)
    sine_part = torch.sqrt(_dot(cross, cross))
    delta = torch.atan2(sine_part, cosine_part) - theta0
    energy = 0.5 * (k * delta * delta).sum(0)
    if not with_gradient:
        return energy, None
    scale = k * delta / sine_part
    gu = _times(scale, _times(cosine_part / _dot(u, u), u) - v)
    gv = _times(scale, _times(cosine_part / _dot(v, v), v) - u)
    return energy, _scatter(positions, atoms, [-gu, gv])


def torsions_kernel(
    positions: Tensor,
    atoms: list[Tensor],
    parameters: tuple[Tensor, Tensor, Tensor],
    box: BoxVectors | None,
    with_gradient: bool,
) -> tuple[Tensor, Tensor | None]:
    """Energy ``[B]`` of ``Σ k (1 + cos(n φ - φ₀))`` and, if asked, ``dU/dX: [N, 3, B]``
    (a kernel). ``atoms`` = [i, j, k, l], ``parameters`` = (n, φ₀, k) as ``[M, 1]``."""
    periodicity, phase, k = parameters
    b1, b2, b3 = _vectors(positions, atoms, box)
    m, n = _cross(b1, b2), _cross(b2, b3)
    length = torch.sqrt(_dot(b2, b2))
    angle = periodicity * torch.atan2(length * _dot(b1, n), _dot(m, n)) - phase
    energy = (k * (1.0 + torch.cos(angle))).sum(0)
    if not with_gradient:
        return energy, None
    d_phi = -k * periodicity * torch.sin(angle)
    mm, nn = _dot(m, m), _dot(n, n)
    g1 = _times(d_phi * length / mm, m)
    g3 = _times(d_phi * length / nn, n)
    g2 = -_times(d_phi * _dot(b1, b2) / (mm * length), m) - _times(
        d_phi * _dot(b2, b3) / (nn * length), n
    )
    return energy, _scatter(positions, atoms, [g1, g2, g3])


@dataclass(frozen=True)
class HarmonicBonds(Term):
    """``E = Σ ½ k (r - r₀)²`` over bonds (i, j); r₀ in nm, k in kJ/mol/nm².

    ``atoms`` is ``[2, M]`` (i, j of every bond).
    """

    atoms: Tensor
    length: Tensor
    k: Tensor
    periodic: bool

    def energy(self, frame: Frame) -> Tensor:
        parameters = (self.length[:, None], self.k[:, None])
        return _run(frame, bonds_kernel, self.atoms, parameters, self.periodic)


@dataclass(frozen=True)
class HarmonicAngles(Term):
    """``E = Σ ½ k (θ - θ₀)²`` over angles (i, j, k) at j; θ₀ in rad, k in kJ/mol/rad².

    ``atoms`` is ``[3, M]`` (i, j, k of every angle).
    """

    atoms: Tensor
    theta0: Tensor
    k: Tensor
    periodic: bool

    def energy(self, frame: Frame) -> Tensor:
        parameters = (self.theta0[:, None], self.k[:, None])
        return _run(frame, angles_kernel, self.atoms, parameters, self.periodic)


@dataclass(frozen=True)
class PeriodicTorsions(Term):
    """``E = Σ k (1 + cos(n φ - φ₀))`` over torsions (i, j, k, l); φ₀ in rad, k in kJ/mol.

    ``atoms`` is ``[4, M]`` (i, j, k, l of every torsion); ``periodicity`` holds n.
    """

    atoms: Tensor
    periodicity: Tensor
    phase: Tensor
    k: Tensor
    periodic: bool

    def energy(self, frame: Frame) -> Tensor:
        parameters = (self.periodicity[:, None], self.phase[:, None], self.k[:, None])
        return _run(frame, torsions_kernel, self.atoms, parameters, self.periodic)


def _run(
    frame: Frame, kernel: Callable[..., Any], atoms: Tensor, parameters: tuple, periodic: bool
) -> Tensor:
    energy, gradient = frame.run(
        kernel,
        frame.positions,
        list(atoms),
        parameters,
        frame.box_vectors(periodic),
        frame.with_gradient,
    )
    frame.add_gradient(gradient)
    return energy


_KJ = unit.kilojoule_per_mole


def _index(columns: list[list[int]]) -> Tensor:
    """``[len(columns), M]`` atom indices."""
    return torch.tensor(columns, dtype=torch.long).reshape(len(columns), -1)


def _column(rows: list, c: int, in_unit: unit.Unit) -> Tensor:
    return torch.tensor([magnitude(r[c], in_unit) for r in rows], dtype=torch.float64)


def harmonic_bonds(force: openmm.HarmonicBondForce) -> list[Term]:
    """The :class:`HarmonicBonds` of ``force`` (none if it has no bonds)."""
    rows = [force.getBondParameters(b) for b in range(force.getNumBonds())]
    if not rows:
        return []
    atoms = _index([[r[c] for r in rows] for c in range(2)])
    length = _column(rows, 2, unit.nanometer)
    k = _column(rows, 3, _KJ / unit.nanometer**2)
    return [HarmonicBonds(atoms, length, k, force.usesPeriodicBoundaryConditions())]


def harmonic_angles(force: openmm.HarmonicAngleForce) -> list[Term]:
    """The :class:`HarmonicAngles` of ``force`` (none if it has no angles)."""
    rows = [force.getAngleParameters(a) for a in range(force.getNumAngles())]
    if not rows:
        return []
    atoms = _index([[r[c] for r in rows] for c in range(3)])
    theta0 = _column(rows, 3, unit.radian)
    k = _column(rows, 4, _KJ / unit.radian**2)
    return [HarmonicAngles(atoms, theta0, k, force.usesPeriodicBoundaryConditions())]


def periodic_torsions(force: openmm.PeriodicTorsionForce) -> list[Term]:
    """The :class:`PeriodicTorsions` of ``force`` (none if it has no torsions)."""
    rows = [force.getTorsionParameters(t) for t in range(force.getNumTorsions())]
    if not rows:
        return []
    atoms = _index([[r[c] for r in rows] for c in range(4)])
    periodicity = torch.tensor([float(r[4]) for r in rows], dtype=torch.float64)
    phase = _column(rows, 5, unit.radian)
    k = _column(rows, 6, _KJ)
    periodic = force.usesPeriodicBoundaryConditions()
    return [PeriodicTorsions(atoms, periodicity, phase, k, periodic)]
