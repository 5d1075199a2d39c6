"""Distances between a sampler's distribution and a reference: energy W2 (E-W2).

In one dimension optimal transport is monotone, so the squared 2-Wasserstein distance
between distributions with quantile functions Q_P and Q_Q is

    W2²(P, Q) = ∫_0^1 (Q_P(s) − Q_Q(s))² ds.

For weighted empirical distributions both quantile functions are step functions
that jump where the cumulative weights of the sorted values cross a level; merging
the two sets of levels splits (0, 1] into intervals on which both are constant, which
makes the integral an exact finite sum for any sizes and weights. E-W2 as used for
Boltzmann generators (e.g. "Sequential Boltzmann generators", Tan et al.,
arXiv 2502.18462) is this distance between reference and sample reduced energies.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from boltzgen.metrics.weights import normalized_weights


def _finite_weighted(
    name: str, values: Tensor, log_weights: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Values ``[n]`` and their normalised weights, with ``+inf`` values and values of
    zero weight dropped.

    Dropping a value whose weight is zero is exact (and keeps the rounding of a cumulative
    sum from lending a level near 1 to a zero-weight outlier); if dropped ``+inf`` values
    carried weight (unweighted samples that hit an overlap) a warning gives the count.
    """
    v = torch.as_tensor(values).detach().to(torch.float64)
    lw = torch.zeros_like(v) if log_weights is None else torch.as_tensor(log_weights)
    lw = lw.detach().to(device=v.device, dtype=torch.float64)
    if v.dim() != 1 or lw.shape != v.shape:
        raise ValueError(
            f"{name}: energies and log-weights must be vectors of one length, "
            f"got shapes {list(v.shape)} and {list(lw.shape)}"
        )
    if torch.isnan(v).any() or (v == -math.inf).any():
        raise ValueError(f"{name}: energies contain NaN or -inf; only +inf (overlap) is allowed")
    infinite = v == math.inf
    carried = int((infinite & (lw > -math.inf)).sum())
    if carried:
        warnings.warn(
            f"energy_w2: dropped {carried} of {v.numel()} {name} energies that are +inf "
            "but carry weight; the distance ignores them",
            stacklevel=3,
        )
    if bool(infinite.all()):
        raise ValueError(f"{name}: every energy is +inf, there is no distribution to compare")
    w = normalized_weights(lw[~infinite])
    massive = w > 0
    return v[~infinite][massive], w[massive]


def _cumulative(values: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Sorted ``values`` and the cumulative distribution F at each of them."""
    order = torch.argsort(values)
    cdf = torch.cumsum(weights[order], dim=0)
    return values[order], cdf / cdf[-1]


def _quantiles(sorted_values: Tensor, cumulative: Tensor, levels: Tensor) -> Tensor:
    """Empirical quantile function Q(s) = min{v : F(v) ≥ s} at ``levels``."""
    idx = torch.searchsorted(cumulative, levels).clamp(max=sorted_values.numel() - 1)
    return sorted_values[idx]


def wasserstein_2_1d(a: Tensor, b: Tensor, a_weights: Tensor, b_weights: Tensor) -> float:
    """Exact W2 between 1-D weighted empirical distributions.

    Args:
        a: ``[n]`` values, ``a_weights: [n]`` non-negative weights summing to 1.
        b: ``[m]`` values, ``b_weights: [m]`` non-negative weights summing to 1.
    """
    a_sorted, a_cdf = _cumulative(a, a_weights)
    b_sorted, b_cdf = _cumulative(b, b_weights)
    levels = torch.sort(torch.cat([a_cdf, b_cdf]).clamp(0.0, 1.0)).values
    levels[-1] = 1.0
    widths = torch.diff(levels, prepend=levels.new_zeros(1))
    midpoints = levels - 0.5 * widths
    gap = _quantiles(a_sorted, a_cdf, midpoints) - _quantiles(b_sorted, b_cdf, midpoints)
    return math.sqrt(float((widths * gap.square()).sum()))


def energy_w2(
    reference: Tensor,
    samples: Tensor,
    sample_log_weights: Tensor | None = None,
    reference_log_weights: Tensor | None = None,
) -> float:
    """E-W2: the 2-Wasserstein distance between reference and sample energy distributions.

    Args:
        reference: ``[m]`` reduced energies of reference configurations (e.g. long MD).
        samples: ``[n]`` reduced energies of the sampler's configurations.
        sample_log_weights: ``[n]`` log importance weights of ``samples``
            (``None``: uniform, i.e. the unreweighted sample distribution).
        reference_log_weights: ``[m]`` log weights of the reference (``None``: uniform).

    Returns:
        W2 in kT. Energies equal to ``+inf`` are dropped before comparing; when they
        carried weight a ``UserWarning`` reports how many.

    Example:
        >>> energy_w2(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0]))
        2.0
    """
    ref, ref_w = _finite_weighted("reference", reference, reference_log_weights)
    smp, smp_w = _finite_weighted("sample", samples, sample_log_weights)
    return wasserstein_2_1d(ref, smp.to(ref.device), ref_w, smp_w.to(ref.device))
