"""The random draws of the kernels, each from an explicit ``torch.Generator``.

Draws are made on the generator's device and then moved to the configurations', so a
CPU generator drives kernels on any device and the same seed gives the same numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor


def standard_normal(like: Tensor, generator: torch.Generator) -> Tensor:
    """ξ ~ N(0, I) with the shape, dtype and device of ``like``."""
    z = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=generator.device)
    return z.to(like.device)


def uniform(like: Tensor, generator: torch.Generator) -> Tensor:
    """U ~ U[0, 1) with the shape, dtype and device of ``like``."""
    u = torch.rand(like.shape, generator=generator, dtype=like.dtype, device=generator.device)
    return u.to(like.device)
