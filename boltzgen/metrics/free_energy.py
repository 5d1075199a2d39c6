"""Free-energy differences between named states, and log Z, with standard errors.

A state is a region of configuration space, given either as a callable
``x: [n, *event_shape] -> bool[n]`` (what ``system.states`` holds) or as a
precomputed boolean mask ``[n]``. With self-normalised weights w̃ (uniform for MCMC)

    P_S = Σ_i w̃_i 1_S(x_i),        ΔF_{B vs A} = −ln(P_B / P_A)   (in kT).

Standard errors:

* independent weighted draws (``samples.n_chains is None``): nonparametric bootstrap
  over samples (B. Efron, "Bootstrap methods: another look at the jackknife",
  Ann. Statist. 1979), each replicate recomputing the self-normalised ratio;
* MCMC chains: the delta method on the influence series
  g_i = n w̃_i (1_A(x_i)/P_A − 1_B(x_i)/P_B) (for uniform weights, 1_A/P_A − 1_B/P_B),
  so var(ΔF) ≈ var(g) τ_int(g) / n, with τ_int from Sokal's windowing
  (see :mod:`boltzgen.metrics.autocorrelation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from boltzgen.metrics.autocorrelation import integrated_time
from boltzgen.metrics.estimate import Estimate
from boltzgen.metrics.weights import log_z, normalized_weights
from boltzgen.records import WeightedSamples

State = Callable[[Tensor], Tensor] | Tensor
"""A state: a callable ``x -> bool[n]`` or a boolean mask ``[n]``."""

_BOOTSTRAP_BLOCK = 4_000_000  # resampled indices held in memory at once
_MAX_DEGENERATE = 0.1  # bootstrap replicates allowed to leave a state empty


def state_mask(samples: WeightedSamples, state: State) -> Tensor:
    """The boolean membership ``[n]`` of ``samples`` in ``state`` (callable or mask)."""
    mask = torch.as_tensor(state(samples.x) if callable(state) else state)
    if mask.shape != (len(samples),):
        raise ValueError(
            f"a state must give a mask of shape [{len(samples)}] (one entry per sample), "
            f"got {list(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise TypeError(f"a state must give a boolean mask, got dtype {mask.dtype}")
    return mask.to(samples.log_weights.device)


def state_probabilities(samples: WeightedSamples, *states: State) -> Tensor:
    """Self-normalised probabilities P_S = Σ_i w̃_i 1_S(x_i) of each state.

    Returns:
        ``[len(states)]`` float64; states may overlap and need not cover everything.
    """
    w = normalized_weights(samples.log_weights)
    return torch.stack([(w * state_mask(samples, s)).sum() for s in states])


def _delta_f(weight_a: Tensor, weight_b: Tensor) -> Tensor:
    """−ln(weight_b / weight_a), elementwise: +inf if only B is empty, NaN if both."""
    return weight_a.log() - weight_b.log()


def free_energy_difference(
    samples: WeightedSamples,
    state_a: State,
    state_b: State,
    n_bootstrap: int = 200,
    generator: torch.Generator | None = None,
) -> Estimate:
    """ΔF = −ln(P_B / P_A) in kT from weighted samples, with its standard error.

    Args:
        samples: weighted draws, or MCMC chains (``samples.n_chains`` set, step-major).
        state_a: state A, a callable ``x -> bool[n]`` or a boolean mask ``[n]``.
        state_b: state B, likewise.
        n_bootstrap: bootstrap replicates (independent draws only).
        generator: randomness of the bootstrap; ``None`` uses a generator seeded 0,
            so results are reproducible.

    Returns:
        ``Estimate(ΔF, stderr)``. If a state has probability zero the value is
        ``+inf`` (B empty), ``−inf`` (A empty) or NaN (both), with stderr ``inf``.

    Example:
        >>> s = WeightedSamples(torch.zeros(4, 1), torch.zeros(4), torch.zeros(4))
        >>> a = torch.tensor([True, False, False, False])
        >>> round(free_energy_difference(s, a, ~a).value, 6)  # −ln(3)
        -1.098612
    """
    w = normalized_weights(samples.log_weights)
    a = state_mask(samples, state_a).to(w.dtype)
    b = state_mask(samples, state_b).to(w.dtype)
    p_a, p_b = (w * a).sum(), (w * b).sum()
    value = float(_delta_f(p_a, p_b))
    if p_a == 0 or p_b == 0:
        return Estimate(value, math.inf)
    if samples.is_chain:
        influence = len(samples) * w * (a / p_a - b / p_b)
        return Estimate(value, _chain_stderr(samples.chains(influence)))
    return Estimate(value, _bootstrap_stderr(w * a, w * b, n_bootstrap, generator))


def _bootstrap_stderr(
    weight_a: Tensor, weight_b: Tensor, n_bootstrap: int, generator: torch.Generator | None
) -> float:
    """Bootstrap standard deviation of ln Σ w̃1_A − ln Σ w̃1_B over resampled indices.

    ``weight_a``/``weight_b``: ``[n]`` per-sample weight inside A and B. Replicates
    that leave a state empty are dropped; if more than 10% do (a state holding only
    ~2 effective samples) the error is ``inf``.
    """
    if n_bootstrap < 2:
        raise ValueError(f"n_bootstrap must be at least 2, got {n_bootstrap}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    n = weight_a.numel()
    block = max(1, _BOOTSTRAP_BLOCK // n)
    replicates = []
    for start in range(0, n_bootstrap, block):
        shape = (min(block, n_bootstrap - start), n)
        idx = torch.randint(n, shape, generator=generator, device=generator.device)
        idx = idx.to(weight_a.device)
        replicates.append(_delta_f(weight_a[idx].sum(dim=1), weight_b[idx].sum(dim=1)))
    values = torch.cat(replicates)
    finite = torch.isfinite(values)
    if finite.double().mean() < 1.0 - _MAX_DEGENERATE:
        return math.inf
    return float(values[finite].std())


def _chain_stderr(influence: Tensor) -> float:
    """Standard error of a mean-zero influence series ``[T, C]`` of correlated chains.

    Within chains: var(g) τ_int(g) / n. With C ≥ 4 chains also the spread of the
    chain means, var_c(ḡ_c) / C, and the larger of the two is returned: the windowed
    τ_int only sees correlations inside each chain (chain means are subtracted) and
    truncates the tail, so it underestimates when chains are shorter than ~50 τ or
    have not mixed between states; the between-chain spread captures those slow
    modes directly but is too noisy to trust with fewer than 4 chains.
    """
    n = influence.numel()
    variance = float(influence.square().mean()) * integrated_time(influence) / n
    n_chains = influence.shape[1]
    if n_chains >= 4:
        between = float(influence.mean(dim=0).var(correction=1)) / n_chains
        variance = max(variance, between)
    return math.sqrt(variance)


def log_partition_function(samples: WeightedSamples) -> Estimate:
    """log Z = log E_q[w] with its delta-method standard error (see :func:`log_z`).

    Meaningful when ``samples.log_weights`` are −u(x) − log q(x) for draws from a
    normalised q (a Boltzmann generator); MCMC samples carry no information on Z.
    """
    return Estimate(*log_z(samples.log_weights))
