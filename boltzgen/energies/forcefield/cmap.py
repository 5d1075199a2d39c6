"""CMAPTorsionForce: bicubic correction maps over pairs of dihedrals, as OpenMM builds them.

A map of size n holds energies ``E[i + n j]`` at ``φ = 2π i/n``, ``ψ = 2π j/n``
(MacKerell et al., J. Comput. Chem. 25, 1400 (2004)). OpenMM's construction
(``CMAPTorsionForceImpl::calcMapDerivatives``), reproduced operation by operation:

1. ∂E/∂φ at the knots from periodic cubic splines along φ at each fixed ψ; ∂E/∂ψ from
   splines along ψ; the cross derivative ∂²E/∂φ∂ψ from splines of ∂E/∂ψ along φ
   (:func:`~boltzgen.energies.forcefield.tabulated.periodic_spline`);
2. for each patch [φ_i, φ_{i+1}] × [ψ_j, ψ_{j+1}], the 16 bicubic coefficients
   ``c_{kl}`` of ``E = Σ_{k,l} c_{kl} u^k v^l`` (u, v ∈ [0, 1] across the patch) from the
   corner values and derivatives (scaled by the patch width δ = 2π/n) through the
   standard 16 × 16 bicubic-interpolation matrix (Press et al., Numerical Recipes,
   §3.6).

A torsion's angles are the PeriodicTorsionForce dihedrals shifted into [0, 2π);
its patch is ``s = min(⌊φ/δ⌋, n−1)``, ``u = φ/δ − s`` (likewise t, v for ψ). Forces
are the autograd gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import openmm
import torch
from torch import Tensor

from boltzgen.energies.forcefield.custom import AutogradTerm, dihedral
from boltzgen.energies.forcefield.geometry import BoxVectors
from boltzgen.energies.forcefield.tabulated import periodic_spline, spline_derivative
from boltzgen.energies.forcefield.terms import Term

_WEIGHTS = np.array(
    [
        [1, 0, -3, 2, 0, 0, 0, 0, -3, 0, 9, -6, 2, 0, -6, 4],
        [0, 0, 0, 0, 0, 0, 0, 0, 3, 0, -9, 6, -2, 0, 6, -4],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, -6, 0, 0, -6, 4],
        [0, 0, 3, -2, 0, 0, 0, 0, 0, 0, -9, 6, 0, 0, 6, -4],
        [0, 0, 0, 0, 1, 0, -3, 2, -2, 0, 6, -4, 1, 0, -3, 2],
        [0, 0, 0, 0, 0, 0, 0, 0, -1, 0, 3, -2, 1, 0, -3, 2],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -3, 2, 0, 0, 3, -2],
        [0, 0, 0, 0, 0, 0, 3, -2, 0, 0, -6, 4, 0, 0, 3, -2],
        [0, 1, -2, 1, 0, 0, 0, 0, 0, -3, 6, -3, 0, 2, -4, 2],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 3, -6, 3, 0, -2, 4, -2],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -3, 3, 0, 0, 2, -2],
        [0, 0, -1, 1, 0, 0, 0, 0, 0, 0, 3, -3, 0, 0, -2, 2],
        [0, 0, 0, 0, 0, 1, -2, 1, 0, -2, 4, -2, 0, 1, -2, 1],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, -1, 2, -1, 0, 1, -2, 1],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, -1, 0, 0, -1, 1],
        [0, 0, 0, 0, 0, 0, -1, 1, 0, 0, 2, -2, 0, 0, -1, 1],
    ],
    dtype=np.float64,
).reshape(-1)
"""OpenMM's ``wt`` table, flat: coefficient k = Σ_m wt[k + 16 m] rhs[m]."""


def _derivatives_along_rows(grid: np.ndarray, size: int) -> np.ndarray:
    """d/d(first angle) of ``grid[i + size j]`` by periodic splines at each fixed j."""
    x = [i * 2 * math.pi / size for i in range(size + 1)]
    out = np.empty(size * size)
    for j in range(size):
        y = [float(grid[i + size * j]) for i in range(size)] + [float(grid[size * j])]
        deriv = periodic_spline(x, y)
        for i in range(size):
            out[i + size * j] = spline_derivative(x, y, deriv, x[i])
    return out


def _derivatives_along_columns(grid: np.ndarray, size: int) -> np.ndarray:
    """d/d(second angle) of ``grid[i + size j]`` by periodic splines at each fixed i."""
    x = [i * 2 * math.pi / size for i in range(size + 1)]
    out = np.empty(size * size)
    for i in range(size):
        y = [float(grid[i + size * j]) for j in range(size)] + [float(grid[i])]
        deriv = periodic_spline(x, y)
        for j in range(size):
            out[i + size * j] = spline_derivative(x, y, deriv, x[j])
    return out


def map_coefficients(size: int, energy: np.ndarray) -> np.ndarray:
    """``[size², 16]``: the bicubic coefficients of patch ``s + size t`` (kJ/mol)."""
    energy = np.asarray(energy, dtype=np.float64)
    d1 = _derivatives_along_rows(energy, size)
    d2 = _derivatives_along_columns(energy, size)
    d12 = _derivatives_along_rows(d2, size)
    delta = 2 * math.pi / size
    weights = _WEIGHTS.reshape(16, 16)  # weights[m, k] = wt[k + 16 m]
    coefficients = np.empty((size * size, 16))
    for i in range(size):
        for j in range(size):
            ni, nj = (i + 1) % size, (j + 1) % size
            corners = [i + j * size, ni + j * size, ni + nj * size, i + nj * size]
            rhs = np.concatenate(
                [energy[corners], d1[corners] * delta, d2[corners] * delta, d12[corners] * delta**2]
            )
            coefficients[i + j * size] = [
                sum(weights[m, k] * rhs[m] for m in range(16)) for k in range(16)
            ]
    return coefficients


def bicubic(coefficients: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """``Σ_{k,l} c[..., 4k + l] u^k v^l`` for ``c: [M, B, 16]``, ``u, v: [M, B]``."""
    energy = torch.zeros_like(u)
    for k in range(3, -1, -1):
        row = (
            (coefficients[..., 4 * k + 3] * v + coefficients[..., 4 * k + 2]) * v
            + coefficients[..., 4 * k + 1]
        ) * v + coefficients[..., 4 * k]
        energy = u * energy + row
    return energy


@dataclass(frozen=True)
class CMAPTorsions(AutogradTerm):
    """Correction-map torsion pairs: ``atoms`` ``[8, M]``, ``patches`` ``[sum sizes², 16]``,
    each torsion's map ``offset`` (first patch) and ``size`` ``[M]``."""

    atoms: Tensor
    offset: Tensor
    size: Tensor
    patches: Tensor
    uses_pbc: bool

    def potential(self, positions: Tensor, box: BoxVectors | None) -> Tensor:
        points = [positions[index] for index in self.atoms]
        size = self.size[:, None].to(positions.dtype)
        delta = 2 * math.pi / size
        steps = []
        for first in (0, 4):
            angle = dihedral(*points[first : first + 4], box) + 2 * math.pi
            angle = torch.where(angle >= 2 * math.pi, angle - 2 * math.pi, angle)
            scaled = angle / delta
            patch = torch.minimum(torch.floor(scaled.detach()), size - 1)
            steps.append((patch, scaled - patch))
        (s, u), (t, v) = steps
        index = self.offset[:, None] + (s + self.size[:, None] * t).long()
        return bicubic(self.patches[index], u, v).sum(0)


def cmap_torsions(force: openmm.CMAPTorsionForce) -> list[Term]:
    """Compile a CMAPTorsionForce (none if it has no torsions)."""
    if force.getNumTorsions() == 0:
        return []
    tables, offsets, sizes, start = [], [], [], 0
    for k in range(force.getNumMaps()):
        size, energy = force.getMapParameters(k)
        energy = np.asarray(
            [
                e.value_in_unit(openmm.unit.kilojoule_per_mole) if openmm.unit.is_quantity(e) else e
                for e in energy
            ]
            if not openmm.unit.is_quantity(energy)
            else energy.value_in_unit(openmm.unit.kilojoule_per_mole),
            dtype=np.float64,
        )
        tables.append(map_coefficients(size, energy))
        offsets.append(start)
        sizes.append(size)
        start += size * size
    rows = [force.getTorsionParameters(k) for k in range(force.getNumTorsions())]
    maps = [r[0] for r in rows]
    return [
        CMAPTorsions(
            torch.tensor([list(r[1:9]) for r in rows], dtype=torch.long).T.contiguous(),
            torch.tensor([offsets[m] for m in maps], dtype=torch.long),
            torch.tensor([sizes[m] for m in maps], dtype=torch.long),
            torch.as_tensor(np.concatenate(tables)),
            force.usesPeriodicBoundaryConditions(),
        )
    ]
