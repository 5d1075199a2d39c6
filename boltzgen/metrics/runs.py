"""Error bars from independent runs (samples correlated within a run): log Z, ΔF, observables.

A sampler that resamples (SMC) leaves its final particles correlated, so errors that
treat them as independent draws are too small. With R independent runs stored run after
run (``samples.n_runs = R``, equal blocks), each run's weights carrying its own
estimate Ẑ_r of Z, the runs are i.i.d. replicates and every error comes from their spread.

* log Z: log Ẑ = log (1/R) Σ_r Ẑ_r (Ẑ stays unbiased), and by the delta method
  se(log Ẑ) = sd_r(Ẑ_r / Ẑ) / √R.
* ΔF = −ln(P_B / P_A) from the pooled, self-normalised weights w̃; with
  a_r = Σ_{i ∈ r} w̃_i 1_A(x_i) (and b_r likewise), P_A = Σ_r a_r, the ratio estimator's
  influence per run g_r = R (a_r / P_A − b_r / P_B) gives se(ΔF) = sd_r(g_r) / √R.
* an observable E[f] = Σ_i w̃_i f_i: g_r = R Σ_{i ∈ r} w̃_i (f_i − E[f]) likewise
  (:func:`runs_stderr`, used by :func:`~boltzgen.metrics.observables.observable_estimate`).

With few runs the sample standard deviation is itself noisy: (estimate − truth) / se
follows Student's t with R − 1 degrees of freedom, not a normal. Every error here is
multiplied by t_{R−1, 0.975} / z_{0.975}, so that ±2 se covers about 95 % as it would
for a normal error (R = 8: ×1.21). With a single run the error is ``inf``.
"""

from __future__ import annotations

import math

import torch
from scipy import stats
from torch import Tensor

from boltzgen.metrics.estimate import Estimate
from boltzgen.metrics.free_energy import State, state_mask
from boltzgen.metrics.weights import normalized_weights
from boltzgen.records import WeightedSamples


def t_factor(n_runs: int) -> float:
    """t_{R−1, 0.975} / z_{0.975}: widens a standard error from R runs to normal coverage."""
    if n_runs < 2:
        return math.inf
    return float(stats.t.ppf(0.975, n_runs - 1) / stats.norm.ppf(0.975))


def _spread(values: Tensor) -> float:
    """t-widened standard error of the mean of ``values: [R]`` (``inf`` when R < 2)."""
    r = values.numel()
    if r < 2:
        return math.inf
    return t_factor(r) * float(values.std(correction=1)) / math.sqrt(r)


def runs_log_z(run_log_z: Tensor) -> Estimate:
    """log Ẑ = log mean_r Ẑ_r from per-run estimates ``run_log_z: [R]``, with its error.

    Example:
        >>> est = runs_log_z(torch.tensor([0.0, 0.0, 0.0]))
        >>> est.value, est.stderr
        (0.0, 0.0)
    """
    lz = torch.as_tensor(run_log_z, dtype=torch.float64)
    if lz.dim() != 1 or lz.numel() == 0:
        raise ValueError(f"run_log_z must be a non-empty vector [R], got shape {list(lz.shape)}")
    if not bool(torch.isfinite(lz).any()):
        return Estimate(-math.inf, math.inf)
    value = torch.logsumexp(lz, dim=0) - math.log(lz.numel())
    return Estimate(float(value), _spread(torch.exp(lz - value)))


def samples_runs_log_z(samples: WeightedSamples) -> Estimate:
    """:func:`runs_log_z` of ``samples.info["run_log_z"]`` (unclipped), else of the weights."""
    if "run_log_z" in samples.info:
        return runs_log_z(torch.tensor(samples.info["run_log_z"], dtype=torch.float64))
    blocks = _run_blocks(samples, samples.log_weights.to(torch.float64))
    return runs_log_z(blocks.logsumexp(dim=1) - math.log(blocks.shape[1]))


def runs_stderr(samples: WeightedSamples, terms: Tensor) -> float:
    """Error of a linearised estimate from its ``terms: [n]`` (c_i = w̃_i ψ_i, summing to
    zero) grouped by run: g_r = R Σ_{i∈r} c_i, se = sd_r(g_r) / √R, t-widened."""
    return _spread(samples.n_runs * _run_blocks(samples, terms).sum(dim=1))


def _run_blocks(samples: WeightedSamples, values: Tensor) -> Tensor:
    """``values: [n]`` as ``[R, n / R]``, one row per run."""
    if samples.n_runs is None:
        raise ValueError("the samples carry no runs (n_runs is None)")
    return values.reshape(samples.n_runs, -1)


def runs_free_energy_difference(
    samples: WeightedSamples, state_a: State, state_b: State
) -> Estimate:
    """ΔF = −ln(P_B / P_A) in kT from pooled runs, with the between-run error.

    Args:
        samples: R runs (``samples.n_runs``), stored run after run.
        state_a: state A, a callable ``x -> bool[n]`` or a boolean mask ``[n]``.
        state_b: state B, likewise.

    Returns:
        ``Estimate(ΔF, stderr)``; ``±inf``/NaN with stderr ``inf`` if a state is empty.
    """
    w = normalized_weights(samples.log_weights)
    a = _run_blocks(samples, w * state_mask(samples, state_a)).sum(dim=1)
    b = _run_blocks(samples, w * state_mask(samples, state_b)).sum(dim=1)
    p_a, p_b = a.sum(), b.sum()
    value = float(p_a.log() - p_b.log())
    if p_a == 0 or p_b == 0:
        return Estimate(value, math.inf)
    influence = a.numel() * (a / p_a - b / p_b)
    return Estimate(value, _spread(influence))
