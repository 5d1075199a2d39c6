"""Step-size adaptation by dual averaging (Hoffman & Gelman, arXiv 1111.4246, Algorithm 5).

During warm-up the step size ε is tuned toward a target mean acceptance probability;
afterwards the averaged iterate ε̄ is frozen, so the sampling kernel is fixed and keeps
detailed balance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DualAveragingState:
    """Dual-averaging iterates (Hoffman & Gelman 2014, Algorithm 5), shaped like ε.

    Attributes:
        log_step: log ε_t, the step size used at the next warm-up step.
        log_step_avg: log ε̄_t, the averaged iterate used after warm-up.
        h_bar: H̄_t, running average of (target − acceptance).
        mu: μ = log(10 ε₀), the point the iterates shrink toward.
        count: t, the number of updates so far.
    """

    log_step: Tensor
    log_step_avg: Tensor
    h_bar: Tensor
    mu: Tensor
    count: int


@dataclass(frozen=True)
class DualAveraging:
    """Step-size adaptation toward a target mean acceptance probability δ.

        H̄_t = (1 − 1/(t + t₀)) H̄_{t−1} + (δ − α_t) / (t + t₀)
        log ε_t = μ − √t / γ · H̄_t
        log ε̄_t = t^(−κ) log ε_t + (1 − t^(−κ)) log ε̄_{t−1}

    (Hoffman & Gelman, "The No-U-Turn Sampler", arXiv 1111.4246, Algorithm 5 and §3.2.1;
    defaults γ = 0.05, t₀ = 10, κ = 0.75 from there.)
    """

    target: float = 0.8
    gamma: float = 0.05
    t0: float = 10.0
    kappa: float = 0.75

    def init(self, step_size: Tensor) -> DualAveragingState:
        """Start from ε₀ = ``step_size`` (``[]`` or ``[C]``)."""
        log_eps = step_size.log()
        zero = torch.zeros_like(log_eps)
        return DualAveragingState(log_eps, zero, zero, log_eps + math.log(10.0), 0)

    def update(self, state: DualAveragingState, acceptance_prob: Tensor) -> DualAveragingState:
        """One update with the acceptance probability α_t (``[]`` shared, or ``[C]``)."""
        t = state.count + 1
        w = 1.0 / (t + self.t0)
        h_bar = (1.0 - w) * state.h_bar + w * (self.target - acceptance_prob)
        log_step = state.mu - math.sqrt(t) / self.gamma * h_bar
        eta = t ** (-self.kappa)
        log_step_avg = eta * log_step + (1.0 - eta) * state.log_step_avg
        return DualAveragingState(log_step, log_step_avg, h_bar, state.mu, t)
