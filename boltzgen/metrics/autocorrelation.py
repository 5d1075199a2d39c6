"""Autocorrelation of MCMC output and the integrated autocorrelation time.

For a stationary series with autocorrelation ρ(t), the variance of its mean over n
correlated samples is σ² τ_int / n with τ_int = 1 + 2 Σ_{t≥1} ρ(t), so n / τ_int
samples are "effective". The sum is truncated at a window M chosen automatically as
the smallest M with M ≥ c·τ̂(M) (A. Sokal, "Monte Carlo methods in statistical
mechanics: foundations and new algorithms", 1996 Cargèse lectures; also
Goodman & Weare / emcee, arXiv 1202.3665).

Series are ``[T]`` (one chain) or ``[T, C]`` (C chains of T steps, as
``WeightedSamples.chains`` returns them). Each chain's own mean is subtracted and
the autocovariances are averaged over chains — unless the exact mean is known (e.g.
⟨Q⟩ = 0 for a topological charge, by parity) and passed as ``mean``. Chains stuck at
different values then show up as correlation that never decays (τ_int of the order of
the run length: frozen), instead of as constant chains with no fluctuation (τ_int = 1).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _as_chains(series: Tensor) -> Tensor:
    """``series`` as a float64 ``[T, C]`` tensor."""
    x = torch.as_tensor(series).detach().to(torch.float64)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"series must have shape [T] or [T, C], got {list(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("series contains NaN or inf values: an autocorrelation needs finite data")
    return x


def autocovariance(series: Tensor, mean: float | None = None) -> Tensor:
    """Chain-averaged autocovariance γ(t) = (1/C) Σ_c (1/T) Σ_s δx_{s,c} δx_{s+t,c}.

    δx = x − (its chain's mean, or the known ``mean``); the 1/T normalisation (not
    1/(T−t)) keeps γ positive semi-definite. Computed by FFT, zero-padded to avoid
    wrap-around.

    Args:
        series: ``[T]`` or ``[T, C]``.
        mean: the exact mean of the observable, if known; ``None``: each chain's own.

    Returns:
        ``[T]`` autocovariance at lags 0 … T−1.
    """
    x = _as_chains(series)
    t = x.shape[0]
    dx = x - (x.mean(dim=0) if mean is None else float(mean))
    size = 1 << (2 * t - 1).bit_length()
    f = torch.fft.rfft(dx, n=size, dim=0)
    acov = torch.fft.irfft(f * f.conj(), n=size, dim=0)[:t]
    return acov.mean(dim=1) / t


def autocorrelation(series: Tensor, mean: float | None = None) -> Tensor:
    """Normalised autocorrelation ρ(t) = γ(t) / γ(0), averaged over chains.

    Args:
        series: ``[T]`` or ``[T, C]``.
        mean: the exact mean, if known (see :func:`autocovariance`).

    Returns:
        ``[T]`` with ρ(0) = 1. A series that is constant within every chain has no
        fluctuation to correlate: ρ = (1, 0, 0, …).
    """
    acov = autocovariance(series, mean)
    if acov[0] <= 0:
        rho = torch.zeros_like(acov)
        rho[0] = 1.0
        return rho
    return acov / acov[0]


def integrated_time(series: Tensor, c: float = 5.0, mean: float | None = None) -> float:
    """Integrated autocorrelation time τ_int = 1 + 2 Σ_{t=1}^{M} ρ(t), Sokal windowing.

    M is the smallest lag with M ≥ c·τ̂(M); if no lag qualifies (a series shorter
    than about c·τ) the whole series is summed and the result is a lower bound.

    τ_int is reported as at least 1: an anticorrelated series (true τ_int < 1) is
    counted as no better than independent draws, which keeps ESS ≤ n and error bars
    conservative. A series that is constant within every chain gives 1.0.

    Args:
        series: ``[T]`` or ``[T, C]``.
        c: window factor; 5 is Sokal's choice for roughly exponential decay.
        mean: the exact mean, if known (see :func:`autocovariance`); chains frozen at
            different values then give τ_int of the order of T instead of 1.
    """
    rho = autocorrelation(series, mean)
    taus = 2.0 * torch.cumsum(rho, dim=0) - 1.0
    lags = torch.arange(rho.numel(), dtype=rho.dtype, device=rho.device)
    ok = lags >= c * taus
    window = int(ok.nonzero()[0]) if ok.any() else rho.numel() - 1
    return max(1.0, float(taus[window]))


def mcmc_ess(series: Tensor, c: float = 5.0) -> float:
    """Effective sample size T·C / τ_int of an observable's chains.

    Args:
        series: ``[T]`` or ``[T, C]``.
        c: Sokal window factor, as in :func:`integrated_time`.
    """
    n = _as_chains(series).numel()
    return n / integrated_time(series, c)
