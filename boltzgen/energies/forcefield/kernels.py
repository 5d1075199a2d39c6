"""Running the elementwise kernels of the terms, eagerly or fused by ``torch.compile``.

Each term does its arithmetic in pure functions of tensors and plain numbers — the
*kernels* (e.g. :func:`~boltzgen.energies.forcefield.gbsa.descreening`) — and keeps the
gathers and scatters outside them. Eagerly, every elementwise operation of a kernel is
one pass over ``[P, B]`` tensors; ``torch.compile`` fuses a kernel into one loop (CPU)
or one kernel launch (GPU), which is several times faster. A force field uses its
compiled kernels wherever the positions do not require grad; autograd through the
energy runs the kernels eagerly, so that it can differentiate to any order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class Kernels:
    """Calls kernels eagerly, or (``compile=True``) through ``torch.compile``.

    Each kernel is compiled on its first call and recompiled, as ``torch.compile``
    does, for new dtypes or constant arguments, and once for a new batch size (after
    which the batch size is dynamic).
    """

    def __init__(self, compile: bool = False):
        self.compile = compile
        self._compiled: dict[Callable[..., Any], Callable[..., Any]] = {}

    def __call__(self, kernel: Callable[..., Any], *args: Any) -> Any:
        if not self.compile:
            return kernel(*args)
        compiled = self._compiled.get(kernel)
        if compiled is None:
            compiled = self._compiled[kernel] = torch.compile(kernel, fullgraph=True)
        return compiled(*args)


EAGER = Kernels(compile=False)
"""Kernels run eagerly (the default)."""
