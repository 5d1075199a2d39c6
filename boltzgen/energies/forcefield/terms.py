"""The Term contract: one compiled OpenMM force, evaluated on a :class:`Frame`.

A term maps a frame (positions ``X: [N, 3, B]`` in nm) to potential energies ``[B]``
in kJ/mol. If the frame asks for a gradient, the term also adds ``dU/dX`` — by hand,
from the same intermediates as the energy — so that forces cost one pass. Without a
gradient the energy is a plain torch expression that autograd can differentiate. The
arithmetic lives in pure kernel functions that the frame runs eagerly or compiled
(:mod:`~boltzgen.energies.forcefield.kernels`).

Terms are frozen dataclasses of tensors (parameters, index lists) and plain numbers;
:func:`move` casts a list of them to a device and dtype, keeping tensors that several
terms share shared.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

import torch
from openmm import unit
from torch import Tensor

from boltzgen.energies.forcefield.geometry import Frame


@dataclass(frozen=True)
class Term(abc.ABC):
    """A compiled force: ``energy(frame) -> [B]`` kJ/mol (and ``dU/dX`` into the frame)."""

    @abc.abstractmethod
    def energy(self, frame: Frame) -> Tensor:
        """Energies ``[B]`` in kJ/mol; adds ``dU/dX`` to ``frame`` if it has a gradient."""


def magnitude(value: Any, in_unit: unit.Unit) -> float:
    """The number of ``in_unit`` in an OpenMM quantity (plain numbers pass through)."""
    if unit.is_quantity(value):
        return float(value.value_in_unit(in_unit))
    return float(value)


def move(terms: list[Term], device: torch.device | str, dtype: torch.dtype) -> list[Term]:
    """``terms`` with floating tensors cast to ``dtype`` and every tensor on ``device``.

    Objects shared between terms (e.g. one :class:`PairList`) stay shared.
    """
    memo: dict[int, Any] = {}
    return [_move(term, torch.device(device), dtype, memo) for term in terms]


def _move(value: Any, device: torch.device, dtype: torch.dtype, memo: dict[int, Any]) -> Any:
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, Tensor):
        moved = value.to(device, dtype) if value.is_floating_point() else value.to(device)
    elif isinstance(value, (tuple, list)):
        moved = type(value)(_move(item, device, dtype, memo) for item in value)
    elif isinstance(value, dict):
        moved = {name: _move(item, device, dtype, memo) for name, item in value.items()}
    elif is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _move(getattr(value, f.name), device, dtype, memo) for f in fields(value)
        }
        moved = replace(value, **changes)
    else:
        moved = value
    memo[key] = moved
    return moved
