"""Umbrella windows and their MBAR analysis: ΔF between intervals of s, with honest errors.

Window k biases the target by b_k(s) = k_s (1 − cos(s − s_k)) for a periodic s (a
torsion) or ½ k_s (s − s_k)² otherwise (Torrie & Valleau, J. Comput. Phys. 23, 187, 1977).
The unbiased u(x_n) is common to every window's potential at sample n, so it cancels
from MBAR (Shirts & Chodera, J. Chem. Phys. 129, 124105, 2008; arXiv 0801.1426): the
``[K + 1, N]`` matrix of reduced potentials is b_k(s_n) for the windows plus a row of
zeros for the unbiased target, which has no samples. ΔF_{B vs A} = −ln(P_B / P_A) is
MBAR's perturbation to the target restricted to B and to A.

**Error bars.** Window k's series (its wrapped deviation s − s_k, C chains pooled) is
subsampled every ⌈g_k⌉ steps, g_k its statistical inefficiency (Chodera et al., J. Chem.
Theory Comput. 3, 26, 2007), so MBAR's analytic stderr may treat the kept samples as
independent. The C chains of a window are independent, so the delete-one-group
jackknife over G = min(C, 16) groups of chains (Efron & Stein 1981) measures the error
without that assumption. **The reported stderr is the larger of the two**; the estimates
of the run's first and second halves are kept beside them as a drift check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

JACKKNIFE_GROUPS = 16

DRIFT_Z = 3.0
"""Halves whose ΔF differ by more than this many standard errors of their difference mark
the estimate unconverged (each half's error is about √2 times the run's)."""

Bounds = tuple[tuple[float, float], ...]
"""The intervals ``((low_a, high_a), (low_b, high_b))`` of s of the states A and B."""


def in_interval(s: Tensor, low: float, high: float) -> Tensor:
    """``bool``: low < s < high, wrapping through ±π when low > high (as ``PhiInterval``)."""
    above, below = s > low, s < high
    return above & below if low <= high else above | below


@dataclass(frozen=True)
class Windows:
    """K umbrella windows: centres ``[K]`` (float64), one spring, the period of s."""

    centres: Tensor
    spring: float
    period: float | None

    def deviation(self, s: Tensor, centres: Tensor) -> Tensor:
        """s − s_k, wrapped into (−period/2, period/2] for a periodic s."""
        d = s - centres
        if self.period is None:
            return d
        return torch.remainder(d + 0.5 * self.period, self.period) - 0.5 * self.period

    def bias(self, s: Tensor, centres: Tensor) -> Tensor:
        """b(s) against ``centres`` broadcast with s (reduced units)."""
        if self.period is None:
            return 0.5 * self.spring * (s - centres).square()
        return self.spring * (1.0 - torch.cos(s - centres))

    def matrix(self, s: Tensor) -> Tensor:
        """``[K, N]``: b_k(s_n) of every window on every sample ``s: [N]``."""
        return self.bias(s[None, :], self.centres[:, None])


@dataclass(frozen=True)
class WindowSamples:
    """Kept samples, flat ``[N]``: s, and the window, chain and step each came from."""

    s: Tensor
    window: Tensor
    chain: Tensor
    step: Tensor

    def where(self, keep: Tensor) -> WindowSamples:
        return WindowSamples(self.s[keep], self.window[keep], self.chain[keep], self.step[keep])


def window_strides(s: Tensor, windows: Windows, max_samples: int) -> list[int]:
    """⌈g_k⌉ per window of ``s: [T, K, C]``, all scaled up by one factor if more than
    ``max_samples`` samples would enter MBAR (its cost grows with K·N)."""
    # pymbar is loaded on first use: its import takes a second and prints a banner
    from boltzgen.metrics.mbar import statistical_inefficiency

    d = windows.deviation(s, windows.centres[None, :, None])
    strides = [math.ceil(statistical_inefficiency(d[:, k])) for k in range(s.shape[1])]
    kept = sum(s.shape[0] * s.shape[2] / g for g in strides)
    factor = max(1, math.ceil(kept / max_samples))
    return [g * factor for g in strides]


def subsample(s: Tensor, strides: list[int]) -> WindowSamples:
    """Every ``strides[k]``-th step of window k of ``s: [T, K, C]``, all its chains."""
    parts = []
    for k, stride in enumerate(strides):
        steps = torch.arange(0, s.shape[0], stride)
        values = s[steps, k]  # [T_k, C]
        chain = torch.arange(s.shape[2]).expand_as(values)
        parts.append((values, torch.full_like(chain, k), chain, steps[:, None].expand_as(values)))
    return WindowSamples(*(torch.cat([p[i].reshape(-1) for p in parts]) for i in range(4)))


def solve_mbar(samples: WindowSamples, windows: Windows, initial: Any = None) -> Any:
    """pymbar's MBAR over the K windows plus the unbiased target (last state, no samples).

    ``initial``: f_k to start from (a solution on more samples converges in few steps).
    """
    import pymbar

    k = len(windows.centres)
    zeros = torch.zeros(1, samples.s.numel(), dtype=torch.float64)
    u_kn = torch.cat([windows.matrix(samples.s), zeros]).numpy()
    n_k = np.append(np.bincount(samples.window.numpy(), minlength=k), 0)
    return pymbar.MBAR(u_kn, n_k, initial_f_k=initial)


def region_difference(mbar: Any, s: Tensor, bounds: Bounds) -> tuple[float, float]:
    """ΔF_{B vs A} = −ln(P_B / P_A) in the target and MBAR's stderr (Shirts & Chodera
    eq. D.11): the target restricted to A and to B as perturbed states."""
    a, b = (in_interval(s, low, high).numpy() for low, high in bounds)
    if not a.any() or not b.any():
        return (math.inf if a.any() else -math.inf if b.any() else math.nan), math.inf
    restricted = np.stack([np.where(a, 0.0, np.inf), np.where(b, 0.0, np.inf)])
    result = mbar.compute_perturbed_free_energies(restricted)
    return float(result["Delta_f"][0, 1]), float(result["dDelta_f"][0, 1])


def _value(samples: WindowSamples, windows: Windows, bounds: Bounds, initial: Any) -> float:
    return region_difference(solve_mbar(samples, windows, initial), samples.s, bounds)[0]


def chain_jackknife(
    samples: WindowSamples, windows: Windows, bounds: Bounds, initial: Any = None
) -> float:
    """Delete-one-group jackknife error over G = min(C, 16) groups of chains:
    se² = (G − 1)/G Σ_g (ΔF_(−g) − ΔF_(·))², chain c in group c mod G."""
    n = min(int(samples.chain.max()) + 1, JACKKNIFE_GROUPS)
    group = samples.chain % n
    values = torch.tensor(
        [_value(samples.where(group != g), windows, bounds, initial) for g in range(n)]
    )
    return math.sqrt((n - 1) / n * float((values - values.mean()).square().sum()))


@dataclass(frozen=True)
class UmbrellaEstimate:
    """ΔF_{B vs A} in kT with the reported ``stderr`` = max(``stderr_mbar``,
    ``stderr_jackknife``), the estimates of the run's two halves and the strides."""

    value: float
    stderr: float
    stderr_mbar: float
    stderr_jackknife: float | None
    first_half: float
    second_half: float
    strides: list[int]

    @property
    def drift_z(self) -> float:
        """|first half − second half| / (2 · stderr): the halves' difference in units of
        its standard error (each half has about √2 · stderr)."""
        return abs(self.first_half - self.second_half) / (2.0 * self.stderr)

    @property
    def converged(self) -> bool:
        """No drift between the halves beyond :data:`DRIFT_Z` standard errors."""
        return self.drift_z <= DRIFT_Z


def umbrella_free_energy(
    samples: WindowSamples, windows: Windows, bounds: Bounds, strides: list[int], mbar: Any = None
) -> UmbrellaEstimate:
    """ΔF_{B vs A} from the subsampled ``samples`` (``mbar``: their solution if solved)."""
    mbar = mbar if mbar is not None else solve_mbar(samples, windows)
    value, stderr_mbar = region_difference(mbar, samples.s, bounds)
    n_chains = int(samples.chain.max()) + 1
    jackknife = chain_jackknife(samples, windows, bounds, mbar.f_k) if n_chains >= 4 else None
    middle = (int(samples.step.max()) + 1) / 2
    halves = [
        _value(samples.where(part), windows, bounds, mbar.f_k)
        for part in (samples.step < middle, samples.step >= middle)
    ]
    stderr = max(stderr_mbar, jackknife if jackknife is not None else 0.0)
    return UmbrellaEstimate(value, stderr, stderr_mbar, jackknife, *halves, strides)


def free_energy_profile(mbar: Any, s: Tensor, edges: Tensor) -> Tensor:
    """F(s) in kT on the bins ``edges: [M + 1]`` (minimum 0; +inf for empty bins), by the
    MBAR weights in the unbiased target (the last state) of every sample ``s: [N]``."""
    weights = torch.as_tensor(mbar.weights()[:, -1])
    which = torch.bucketize(s, edges[1:-1])
    p = torch.zeros(len(edges) - 1, dtype=torch.float64).index_add_(0, which, weights)
    f = -p.log()
    return f - f[torch.isfinite(f)].min()
