"""Importance weights: self-normalisation, Kish effective sample size and log Z.

A Boltzmann generator draws x ~ q and weighs it by w(x) = exp(−u(x)) / q(x), i.e.
``log_weights = −u(x) − log q(x)`` (Noé et al., "Boltzmann generators", Science 2019,
arXiv 1812.01729). Everything here takes those unnormalised log-weights ``[n]``,
works in float64 and is invariant to adding a constant to them (except :func:`log_z`,
which estimates exactly that constant). A configuration with energy ``+inf`` has
log-weight ``−inf`` and weight 0; it still counts in ``n``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _checked(log_weights: Tensor) -> Tensor:
    """``log_weights`` as a float64 vector, rejecting NaN and +inf entries."""
    lw = torch.as_tensor(log_weights).detach().to(torch.float64)
    if lw.dim() != 1 or lw.numel() == 0:
        raise ValueError(f"log_weights must be a non-empty vector [n], got shape {list(lw.shape)}")
    if torch.isnan(lw).any() or (lw == math.inf).any():
        raise ValueError(
            "log_weights contain NaN or +inf: check the energies and log q of the samples "
            "(a failed configuration must have energy +inf, i.e. log-weight -inf)"
        )
    return lw


def normalized_weights(log_weights: Tensor) -> Tensor:
    """Self-normalised importance weights w̃_i = exp(log w_i) / Σ_j exp(log w_j).

    Computed as a softmax, so log-weights of any magnitude are fine; entries that are
    ``−inf`` (energy ``+inf``) get weight exactly 0.

    Args:
        log_weights: ``[n]`` unnormalised log importance weights.

    Returns:
        ``[n]`` float64 weights summing to 1.

    Raises:
        ValueError: if every log-weight is ``−inf`` (no sample has positive weight),
            or any is NaN or ``+inf``.

    Example:
        >>> normalized_weights(torch.tensor([0.0, float("-inf"), 0.0])).tolist()
        [0.5, 0.0, 0.5]
    """
    lw = _checked(log_weights)
    if not torch.isfinite(lw).any():
        raise ValueError(
            f"all {lw.numel()} log-weights are -inf: no sample has positive weight "
            "(every energy is +inf?)"
        )
    return torch.softmax(lw, dim=0)


def kish_ess(log_weights: Tensor) -> float:
    """Kish effective sample size (Σ w)² / Σ w² = 1 / Σ w̃².

    Between 1 (one sample carries all the weight) and n (uniform weights).

    Args:
        log_weights: ``[n]`` unnormalised log importance weights.

    Example:
        >>> round(kish_ess(torch.tensor([1.0, 2.0, 3.0]).log()), 6)  # 36 / 14
        2.571429
    """
    w = normalized_weights(log_weights)
    return float(1.0 / (w * w).sum())


def ess_fraction(log_weights: Tensor) -> float:
    """Kish ESS fraction (Σ w)² / (n Σ w²), in (0, 1]; the figure papers report.

    Args:
        log_weights: ``[n]`` unnormalised log importance weights of samples drawn from
            the model (zero-weight samples count in ``n``).
    """
    return kish_ess(log_weights) / log_weights.shape[0]


def log_z(log_weights: Tensor) -> tuple[float, float]:
    """Importance-sampling estimate of log Z and its delta-method standard error.

    With log w = −u(x) − log q(x) and x ~ q, Z = E_q[w], so

        log Ẑ = log( (1/n) Σ_i w_i ),
        se(log Ẑ) ≈ se(w̄) / w̄ = sqrt(s²_w / n) / w̄,

    with s²_w the unbiased sample variance of the weights. Both are computed after
    factoring out max_i log w_i, so nothing overflows.

    Args:
        log_weights: ``[n]`` log importance weights (their constant matters here).

    Returns:
        ``(log Ẑ, se)``. If every weight is zero the estimate is ``(−inf, inf)``;
        with a single sample the standard error is ``inf``.
    """
    lw = _checked(log_weights)
    n = lw.numel()
    shift = lw.max()
    if shift == -math.inf:
        return -math.inf, math.inf
    w = torch.exp(lw - shift)
    mean = w.mean()
    se = math.inf if n < 2 else float(w.var(correction=1).div(n).sqrt() / mean)
    return float(shift + mean.log()), se


def batch_ess(log_w: Tensor) -> float:
    """Kish ESS of log-weights ``[n]``: 0 if every weight is 0, NaN if any is NaN or +inf.

    Unlike :func:`kish_ess` it never raises, for progress reports.
    """
    log_w = log_w.detach()
    if bool(torch.isnan(log_w).any()) or bool((log_w == math.inf).any()):
        return math.nan
    if not bool(torch.isfinite(log_w).any()):
        return 0.0
    return kish_ess(log_w)


def weight_summary(log_w: Tensor, u: Tensor) -> dict[str, float | int]:
    """ESS, ESS fraction, log Z with its standard error and the failed-sample count."""
    ess = batch_ess(log_w)
    value, se = (math.nan, math.nan) if math.isnan(ess) else log_z(log_w)
    return {
        "ess": ess,
        "ess_fraction": ess / log_w.shape[0],
        "log_z": value,
        "log_z_se": se,
        "n_nonfinite": int((~torch.isfinite(u)).sum()),
    }
