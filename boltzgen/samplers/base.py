"""The sampler protocol: anything that draws configurations and says what it cost."""

from __future__ import annotations

from typing import Protocol

import torch

from boltzgen.records import WeightedSamples


class Sampler(Protocol):
    """Anything that draws configurations of a target and says what it cost."""

    def sample(self, n: int, generator: torch.Generator) -> WeightedSamples:
        """Draw ``n`` weighted samples using only ``generator`` for randomness."""
        ...
