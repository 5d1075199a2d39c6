"""Convergence of MCMC chains: rank-normalised split-R̂ and state visits.

Chains started from dispersed points that have forgotten their starts look alike. The
rank-normalised split-R̂ of Vehtari, Gelman, Simpson, Carpenter, Bürkner, "Rank-
normalization, folding, and localization: an improved R̂ for assessing convergence of
MCMC", Bayesian Analysis 16, 2021 (arXiv 1903.08008) compares between- and within-chain
variance of the half-chains after replacing values by their normal scores (and does the
same for |x − median|, reporting the larger); ArviZ's ``rhat(method="rank")`` computes it.

An estimate from chains is trusted only if R̂ ≤ 1.01 for every series it uses (for
ΔF, the two state indicators) and every state it needs is visited in every group of
chains: a chain that never leaves its starting basin makes R̂ large, and a state no chain
reaches shows up only as a missing visit. With up to :data:`VISIT_GROUPS` chains each
chain is its own group. With more, the chains are cut into that many groups of
neighbouring chains: hundreds of short, well-mixed chains miss a rare state by chance (a
chain of n independent steps misses a state of probability p with probability (1 − p)ⁿ,
5 % for p = 0.8 % and n = 360), and a few chains stuck outside it among hundreds are
what R̂ of the indicator is for. An indicator constant over all chains has no R̂
(``None``).

Samplers without chains get the analogous checks (:func:`state_coverage`): independent
runs (SMC) must each put weight in every state, and independent weighted draws need a
Kish ESS of at least :data:`MIN_STATE_ESS` inside each state — with fewer, the
bootstrap or delta-method error of ln P_S is itself unreliable (and a state the draws
missed is invisible to it) — and a weight tail inside each state light enough for an
error bar (Pareto k̂ below its threshold, :mod:`boltzgen.metrics.pareto`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from torch import Tensor

from boltzgen.metrics.pareto import tail_is_reliable

RHAT_THRESHOLD = 1.01
VISIT_GROUPS = 8
"""Chains are cut into at most this many groups, each of which must visit every state."""
MIN_STATE_ESS = 10.0
"""Weighted draws need this Kish ESS inside a state before its probability gets an error bar."""


@dataclass(frozen=True)
class Convergence:
    """R̂ (the largest over the series; ``None`` if none has one) and the verdict.

    Attributes:
        rhat: max rank-normalised split-R̂ over the series, ``None`` if undefined.
        all_visited: every group of chains visits every state (indicators only;
            :func:`visits_every_state`).
        converged: ``all_visited`` and R̂ ≤ :data:`RHAT_THRESHOLD` (or undefined).
    """

    rhat: float | None
    all_visited: bool

    @property
    def converged(self) -> bool:
        return self.all_visited and (self.rhat is None or self.rhat <= RHAT_THRESHOLD)


def split_rhat(series: Tensor) -> float | None:
    """Rank-normalised split-R̂ of ``series: [T, C]`` (step-major chains), via ArviZ.

    A single chain is first cut into two halves (ArviZ needs two chains; it then splits
    each again). Returns ``None`` when it is undefined (a constant series, or fewer than
    8 steps).
    """
    values = np.asarray(series.detach().cpu().double().numpy())
    if values.ndim != 2:
        raise ValueError(f"series must have shape [T, C], got {list(values.shape)}")
    if values.shape[0] < 8 or np.ptp(values) == 0:
        return None
    if values.shape[1] == 1:
        half = values.shape[0] // 2
        values = np.stack([values[:half, 0], values[half : 2 * half, 0]], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz

        rhat = float(arviz.rhat(values.T, method="rank"))
    return rhat if math.isfinite(rhat) else None


def chain_convergence(series: Sequence[Tensor], indicators: Sequence[Tensor] = ()) -> Convergence:
    """Convergence of an estimate using ``series`` and state ``indicators``, each ``[T, C]``.

    R̂ is taken over every series and indicator, chain by chain; each indicator must be
    true at least once in every group of chains (:func:`visits_every_state`).
    """
    rhats = [split_rhat(s) for s in (*series, *indicators)]
    defined = [r for r in rhats if r is not None]
    visited = all(visits_every_state(ind) for ind in indicators)
    return Convergence(max(defined) if defined else None, visited)


def visits_every_state(indicator: Tensor, groups: int = VISIT_GROUPS) -> bool:
    """Whether ``indicator: [T, C, ...]`` is non-zero at least once in each of
    min(C, ``groups``) groups of neighbouring chains (each chain alone when C ≤ ``groups``)."""
    seen = (indicator.reshape(indicator.shape[0], indicator.shape[1], -1) != 0).any(dim=(0, 2))
    n_groups = min(seen.numel(), groups)
    bounds = torch.linspace(0, seen.numel(), n_groups + 1).round().long().tolist()
    return all(bool(seen[a:b].any()) for a, b in pairwise(bounds))


def state_coverage(log_weights: Tensor, masks: Sequence[Tensor], n_runs: int | None) -> bool:
    """Whether weighted draws sample every state in ``masks`` (each ``bool[n]``) enough.

    Each state needs a Kish ESS ≥ :data:`MIN_STATE_ESS` computed from the weights of the
    draws inside it. With ``n_runs`` (runs stored one after another, their weights on one
    scale) every run must also give each state positive weight: the between-run error then
    stands for the tail. Otherwise the tail of the weights inside must have Pareto k̂ below
    its threshold (:func:`boltzgen.metrics.pareto.tail_is_reliable`).

    Without the ESS floor, runs that each hold one or two particles of a rare state — a flow
    that barely reaches it — would pass, with an error bar far smaller than their error.
    """
    lw = log_weights.detach().to(torch.float64)
    for mask in masks:
        inside = torch.where(mask, lw, -math.inf)
        if not bool(torch.isfinite(inside).any()):
            return False
        w = torch.softmax(inside, dim=0)
        if float(1.0 / w.square().sum()) < MIN_STATE_ESS:
            return False
        if n_runs is not None:
            if not bool(torch.isfinite(inside.reshape(n_runs, -1)).any(dim=1).all()):
                return False
        elif not tail_is_reliable(inside):
            return False
    return True
