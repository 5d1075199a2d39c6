"""Pareto k̂: how heavy the upper tail of importance weights is, and whether their error
bars can be trusted.

Importance weights w = p/q whose upper tail falls off like a generalised Pareto
distribution with shape k have a finite variance only for k < 1/2 and a finite mean only
for k < 1. Vehtari, Simpson, Gelman, Yao, Gabry, "Pareto smoothed importance sampling",
JMLR 25 (2024), arXiv 1507.02646, fit k to the largest M = min(n/5, 3√n) weights (ArviZ's
``psislw`` does the fit); n draws are too few for any estimate unless
k̂ < 1 − 1/log₁₀ n, and their *smoothed* estimates stay usable up to k̂ = 0.7.

boltzgen's error bars come from the raw weights (bootstrap, delta method). Those rest on
the central limit theorem, i.e. on a finite variance, so an error bar is given only while

    k̂ < min(1 − 1/log₁₀ n, 1/2).

Above it the reported standard error is too small: the draws that dominate the estimate
have mostly not been drawn yet. Example: x ~ N(0, 1) weighted towards N(0, σ²) has
k = 1 − 1/σ² (σ² = 2: k = 1/2, the weights' variance just infinite).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor

MAX_PARETO_K = 0.5
"""Upper bound of the k̂ threshold for an error bar from raw weights (finite variance)."""


def pareto_k(log_weights: Tensor) -> float | None:
    """The fitted Pareto shape k̂ of the upper tail of the weights ``exp(log_weights)``.

    Args:
        log_weights: ``[n]`` log importance weights (any constant offset; ``−inf`` entries
            are draws of weight zero and are left out).

    Returns:
        k̂, or ``None`` when the tail cannot be fitted: fewer than five distinct weights
        above the tail's cut (fewer than about 25 draws of positive weight, or weights that
        are all equal — no tail at all).
    """
    lw = torch.as_tensor(log_weights).detach().to(torch.float64)
    lw = lw[torch.isfinite(lw)].numpy()
    if lw.size == 0 or np.ptp(lw) == 0.0:
        return None
    import arviz

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, k = arviz.psislw(lw - lw.max())
    k = float(k)
    return k if math.isfinite(k) else None


def pareto_k_threshold(n: int) -> float:
    """The largest k̂ at which ``n`` raw-weighted draws still get an error bar:
    min(1 − 1/log₁₀ n, 1/2) (Vehtari et al. 2024, §3, and a finite variance)."""
    if n <= 10:
        return -math.inf
    return min(1.0 - 1.0 / math.log10(n), MAX_PARETO_K)


def tail_is_reliable(log_weights: Tensor, k: float | None = None) -> bool:
    """Whether the weights' tail allows a trusted error bar: k̂ below
    :func:`pareto_k_threshold` of the draws of positive weight, or no tail to fit.

    ``k``: k̂ of these weights when already fitted (:func:`pareto_k`); fitted here otherwise.
    """
    lw = torch.as_tensor(log_weights).detach()
    if k is None:
        k = pareto_k(lw)
    n = int(torch.isfinite(lw).sum())
    return k is None or k < pareto_k_threshold(n)
