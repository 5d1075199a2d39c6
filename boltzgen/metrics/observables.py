"""Expectations and variances of observables with standard errors and τ_int.

For a statistic θ = E_p[f] (or Var_p[f]) estimated from samples with self-normalised
weights w_i (uniform for MCMC), the influence series is ψ_i = f_i − θ (for the variance,
ψ_i = (f_i − f̄)² − θ). Chains (step-major, ``samples.n_chains``): se² = γ_ψ(0)·τ_int(ψ)/n
with τ_int by Sokal's window (:mod:`boltzgen.metrics.autocorrelation`). Independent
weighted draws: se² = Σ_i w_i² ψ_i² (the delta method for self-normalised importance
sampling, Owen, "Monte Carlo theory, methods and examples", ch. 9), τ_int undefined.
R independent runs of correlated particles (``samples.n_runs``, e.g. SMC, whose resampled
particles share ancestors): the same terms summed per run, g_r = R Σ_{i∈r} w_i ψ_i, and se
from the spread of the g_r (:func:`boltzgen.metrics.runs.runs_stderr`, t-widened, as for
log Z and ΔF of runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from boltzgen.metrics.autocorrelation import integrated_time
from boltzgen.metrics.runs import runs_stderr
from boltzgen.metrics.weights import normalized_weights
from boltzgen.records import WeightedSamples


@dataclass(frozen=True)
class ObservableEstimate:
    """A statistic, its standard error and the integrated autocorrelation time of its
    influence series (``None`` for independent draws)."""

    value: float
    stderr: float
    tau_int: float | None


def observable_estimate(
    samples: WeightedSamples, values: Tensor, statistic: str = "mean"
) -> ObservableEstimate:
    """E[f] (``statistic="mean"``) or Var[f] (``"variance"``) of ``values: [n]``."""
    if statistic not in ("mean", "variance"):
        raise ValueError(f"statistic must be 'mean' or 'variance', got {statistic!r}")
    f = values.detach().to(torch.float64)
    w = normalized_weights(samples.log_weights).to(torch.float64)
    keep = w > 0
    if not torch.isfinite(f[keep]).all():
        return ObservableEstimate(math.nan, math.inf, None)
    f = torch.where(keep, f, torch.zeros_like(f))
    mean = (w * f).sum()
    if statistic == "mean":
        value, influence = mean, f - mean
    else:
        value = (w * (f - mean) ** 2).sum()
        influence = (f - mean) ** 2 - value
    if samples.is_chain:
        # The influence has pooled mean zero: measured about it (not about each chain's
        # own mean), chains stuck at different values count as slow, not as exact.
        tau = integrated_time(samples.chains(influence), mean=0.0)
        variance = float(influence.square().mean()) * tau / len(f)
        return ObservableEstimate(float(value), math.sqrt(variance), tau)
    if samples.n_runs is not None:
        return ObservableEstimate(float(value), runs_stderr(samples, w * influence), None)
    return ObservableEstimate(float(value), float((w * influence).square().sum().sqrt()), None)
