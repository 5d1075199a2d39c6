"""The Metropolis–Hastings test: accept a proposal with probability min(1, α).

Metropolis, Rosenbluth, Rosenbluth, Teller, Teller, J. Chem. Phys. 21, 1087 (1953);
Hastings, Biometrika 57, 97 (1970). With target π and proposal density k,

    α(x → y) = π(y) k(x | y) / (π(x) k(y | x)),

and accepting y when log U < log α, U ~ U(0, 1), makes the kernel π-reversible. A NaN
log α (both points failed: inf − inf) is a rejection; log α = −inf is never accepted.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from boltzgen.kernels.noise import uniform


def _sanitized(log_alpha: Tensor) -> Tensor:
    return log_alpha.nan_to_num(nan=-math.inf, posinf=math.inf, neginf=-math.inf)


def acceptance_probability(log_alpha: Tensor) -> Tensor:
    """min(1, exp(log α)) ``[B]``; 0 for a NaN log α."""
    return _sanitized(log_alpha).clamp(max=0.0).exp()


def accept(log_alpha: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Decisions log U < log α ``bool[B]`` (one uniform per row) and min(1, α) ``[B]``."""
    log_alpha = _sanitized(log_alpha)
    accepted = uniform(log_alpha, generator).log() < log_alpha
    return accepted, log_alpha.clamp(max=0.0).exp()
