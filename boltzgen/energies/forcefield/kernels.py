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

import importlib.util
import os
import shutil
import warnings
from collections.abc import Callable
from typing import Any

import torch

_NOTED: set[str] = set()


def note_once(message: str) -> None:
    """Warn with ``message`` once per process."""
    if message not in _NOTED:
        _NOTED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def compiler_available(device: torch.device) -> bool:
    """Whether ``torch.compile`` can generate code for ``device``: Triton on a GPU, a C++
    compiler (``$CXX``, g++, c++ or clang++) on CPU."""
    if device.type == "cuda":
        return importlib.util.find_spec("triton") is not None
    candidates = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    return any(c and shutil.which(c) for c in candidates)


class Kernels:
    """Calls kernels eagerly, or (``compile=True``) through ``torch.compile``.

    Each kernel is compiled on its first call and recompiled, as ``torch.compile``
    does, for new dtypes or constant arguments, and once for a new batch size (after
    which the batch size is dynamic). If compiling fails, the kernels run eagerly from
    then on, with a one-line note.
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
        try:
            return compiled(*args)
        except Exception as error:
            self.compile = False
            note_once(
                f"TorchForceField: torch.compile failed ({type(error).__name__}); "
                "running the kernels eagerly"
            )
            return kernel(*args)


EAGER = Kernels(compile=False)
"""Kernels run eagerly (the default)."""
