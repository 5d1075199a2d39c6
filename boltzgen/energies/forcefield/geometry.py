"""Batched positions in the atoms-first layout, periodic boxes, pair lists and frames.

Every term of the force field works on positions ``X: [N, 3, B]`` (nm): atoms first,
then the Cartesian component, then the batch. Gathering the atoms of a list of
pairs (``X[j] - X[i]``) then copies contiguous rows, and every per-pair quantity is a
``[P, B]`` tensor whose inner, contiguous dimension is the batch, which elementwise
code vectorises over (on CPU and GPU alike).

The functions here are pure, so that they can run inside fused kernels
(:mod:`~boltzgen.energies.forcefield.kernels`): :func:`displacements` gathers pair
vectors (minimum images in a periodic box) and :func:`scatter_pairs` turns per-pair
gradients back into per-atom ones. A :class:`Frame` carries one batch through the
terms and sums their gradients ``dU/dX``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from boltzgen.energies.forcefield.kernels import EAGER, Kernels

BoxVectors = tuple[tuple[float, float, float], ...]
"""Box vectors a, b, c (nm) in OpenMM's reduced triclinic form."""


def atoms_first(x: Tensor) -> Tensor:
    """``x: [B, N, 3]`` → ``X: [N, 3, B]`` (a contiguous copy)."""
    return x.permute(1, 2, 0).contiguous()


def batch_first(X: Tensor) -> Tensor:
    """``X: [N, 3, B]`` → ``x: [B, N, 3]`` (a contiguous copy)."""
    return X.permute(2, 0, 1).contiguous()


def minimum_image(d: Tensor, vectors: BoxVectors) -> Tensor:
    """Minimum images of displacements ``d: [P, 3, B]`` (nm) in a reduced triclinic box.

    ``a = (a_x, 0, 0)``, ``b = (b_x, b_y, 0)``, ``c = (c_x, c_y, c_z)``; subtracts
    ``c·round(d_z/c_z)``, then ``b·round(d_y/b_y)``, then ``a·round(d_x/a_x)``, as
    OpenMM does. The box enters as plain numbers: no host-to-device copy.
    """
    components = [d[:, 0], d[:, 1], d[:, 2]]
    for k in (2, 1, 0):
        vector = vectors[k]
        shift = torch.round(components[k] / vector[k])
        for c in range(k + 1):
            if vector[c] != 0.0:
                components[c] = components[c] - vector[c] * shift
    return torch.stack(components, dim=1)


@dataclass(frozen=True)
class Box:
    """A periodic box; ``vectors`` in OpenMM's reduced triclinic form (nm)."""

    vectors: BoxVectors

    @property
    def volume(self) -> float:
        """a_x · b_y · c_z in nm³."""
        return self.vectors[0][0] * self.vectors[1][1] * self.vectors[2][2]


def displacements(positions: Tensor, i: Tensor, j: Tensor, box: BoxVectors | None) -> Tensor:
    """``X[j] - X[i]: [P, 3, B]`` (nm), minimum images if ``box`` is given."""
    d = positions[j] - positions[i]
    return d if box is None else minimum_image(d, box)


def squared_norm(d: Tensor) -> Tensor:
    """``|d|²: [P, B]`` of vectors ``d: [P, 3, B]``."""
    return d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]


def scatter_pairs(positions: Tensor, i: Tensor, j: Tensor, gradient: Tensor) -> Tensor:
    """Per-atom ``dU/dX: [N, 3, B]`` from ``dU/dd: [P, 3, B]`` of ``d = X[j] - X[i]``."""
    return torch.zeros_like(positions).index_add(0, j, gradient).index_add(0, i, -gradient)


@dataclass(frozen=True)
class PairList:
    """Pairs ``(i[p], j[p])`` of atoms, ``i, j: [P]`` (int64), displacement ``X[j] - X[i]``."""

    i: Tensor
    j: Tensor

    def __len__(self) -> int:
        return int(self.i.shape[0])

    @staticmethod
    def all_pairs(n: int) -> PairList:
        """Every pair i < j of ``n`` atoms, in row-major order."""
        index = torch.triu_indices(n, n, offset=1)
        return PairList(index[0].contiguous(), index[1].contiguous())


class Frame:
    """One batch ``X: [N, 3, B]`` (nm) on its way through the terms of a force field.

    Args:
        positions: ``X: [N, 3, B]`` in nm.
        box: the periodic box, or None.
        with_gradient: collect ``dU/dX`` (kJ/mol/nm) from the terms.
        kernels: how the terms' kernels run (eagerly by default).
    """

    def __init__(
        self,
        positions: Tensor,
        box: Box | None,
        with_gradient: bool,
        kernels: Kernels = EAGER,
    ):
        self.positions = positions
        self.box = box
        self.with_gradient = with_gradient
        self.kernels = kernels
        self._gradient: Tensor | None = None

    def run(self, kernel: Callable[..., Any], *args: Any) -> Any:
        """``kernel(*args)``, eagerly or compiled (see :class:`Kernels`)."""
        return self.kernels(kernel, *args)

    def box_vectors(self, periodic: bool) -> BoxVectors | None:
        """The box vectors for a periodic term, None for a non-periodic one."""
        if not periodic:
            return None
        if self.box is None:
            raise ValueError("a periodic term needs a box, but this force field has none")
        return self.box.vectors

    def add_gradient(self, gradient: Tensor | None) -> None:
        """``dU/dX += gradient`` (``[N, 3, B]``, kJ/mol/nm); None adds nothing."""
        if gradient is None:
            return
        self._gradient = gradient if self._gradient is None else self._gradient + gradient

    def gradient_kj(self) -> Tensor:
        """``dU/dX: [N, 3, B]`` (kJ/mol/nm) summed over the terms."""
        if self._gradient is None:
            return torch.zeros_like(self.positions)
        return self._gradient
