"""Does a generator miss mass that held-out equilibrium frames show? A per-state BAR check.

Importance sampling from a flow q estimates the weight of a state B,

    Z_B = ∫_B p̃ = E_q[1_B w],   w = p̃ / q,

from the draws alone. Where q is far too small on part of B, the draws almost never
land there, the weights that would carry that mass are never drawn, and the estimate
comes out low — while the draws' own diagnostics (Kish ESS, the Pareto k̂ of their
weights) look fine, because they only see the draws there are.

Frames y ~ p of a reference (PT, umbrella sampling) are drawn where p is, so they
see it. Bennett's acceptance ratio (C. H. Bennett, J. Comput. Phys. 22, 245 (1976);
M. R. Shirts et al., Phys. Rev. Lett. 91, 140601 (2003)) between q and p restricted to
B uses both: with reduced works W_F = −ln w(x) for draws x ∈ B and W_R = ln w(y) for
frames y ∈ B it gives Δf = −ln(Z_B / Q_B), Q_B = ∫_B q the flow's mass in B (the share
of the draws there), so

    ln Z_B^BAR = ln Q_B − Δf.

BAR needs only the frames' distribution *inside* B, never their share of B, so the
reference's own basin populations do not enter. ``gap = ln Z_B^BAR − ln Z_B^IS`` well
above its standard error says the draws miss mass in B; ΔF from the BAR values is then
the better estimate (scored against the same frames, it is a check, not a method).

Standard errors: a delete-one-block jackknife over ``blocks`` contiguous blocks of the
frames (reference frames are correlated in time) and, separately, of the draws (which
also re-estimates Q_B), the two variances added.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import logsumexp
from torch import Tensor

from boltzgen.metrics.estimate import Estimate

GAP_SIGMAS = 3.0
"""A gap beyond this many standard errors (and beyond ``GAP_FLOOR``) counts as missed mass."""

GAP_FLOOR = 0.1
"""A gap below this (nats) never counts as missed mass, however small the error."""


@dataclass(frozen=True)
class StateCheck:
    """One state: ln Z_B from the draws alone and by BAR with the frames.

    ``log_z_bar`` and ``stderr`` are ``None`` when the state holds no frame or no draw of
    finite weight.
    ``frames_beyond_draws`` is the share of the state's frames whose log weight exceeds
    every draw's there: how much of B lies where the draws never reached.
    """

    log_z_draws: float
    log_z_bar: float | None
    stderr: float | None
    n_draws: int
    n_frames: int
    frames_beyond_draws: float | None

    @property
    def gap(self) -> float | None:
        """ln Z_B^BAR − ln Z_B^IS: how much mass (in nats) the draws alone miss."""
        return None if self.log_z_bar is None else self.log_z_bar - self.log_z_draws

    @property
    def misses_mass(self) -> bool:
        """Whether the gap exceeds ``GAP_SIGMAS`` standard errors and ``GAP_FLOOR``."""
        gap, stderr = self.gap, self.stderr
        if gap is None or stderr is None:
            return False
        return gap > max(GAP_SIGMAS * stderr, GAP_FLOOR)


@dataclass(frozen=True)
class HeldOutCheck:
    """Per-state checks, and ΔF from the BAR values with a joint jackknife error."""

    states: dict[str, StateCheck]
    _replicates: dict[str, tuple[np.ndarray, np.ndarray]]

    def free_energy(self, a: str, b: str) -> Estimate | None:
        """ΔF_{b vs a} = ln Z_a − ln Z_b (kT) from the BAR values; ``None`` if either is."""
        za, zb = self.states[a].log_z_bar, self.states[b].log_z_bar
        if za is None or zb is None:
            return None
        frames = self._replicates[a][0] - self._replicates[b][0]
        draws = self._replicates[a][1] - self._replicates[b][1]
        return Estimate(za - zb, math.sqrt(_jackknife_var(frames) + _jackknife_var(draws)))


def held_out_check(
    draw_log_weights: Tensor,
    frame_log_weights: Tensor,
    draw_states: Mapping[str, Tensor],
    frame_states: Mapping[str, Tensor],
    blocks: int = 20,
) -> HeldOutCheck:
    """Compare each state's ln Z from the draws with BAR between draws and frames.

    Args:
        draw_log_weights: ``[n]`` ln w = −u − ln q of independent draws x ~ q.
        frame_log_weights: ``[m]`` ln w of equilibrium frames y ~ p, same u and q, in
            time order (blocks are contiguous).
        draw_states: boolean masks ``[n]`` of the draws, per state name.
        frame_states: boolean masks ``[m]`` of the frames, for the same names.
        blocks: jackknife blocks (≥ 2) of the frames and, separately, of the draws.
    """
    if blocks < 2:
        raise ValueError(f"blocks must be ≥ 2, got {blocks}")
    if set(draw_states) != set(frame_states):
        raise ValueError("draw_states and frame_states must name the same states")
    lw = draw_log_weights.detach().to(torch.float64).cpu().numpy()
    lf = frame_log_weights.detach().to(torch.float64).cpu().numpy()
    if not (np.isfinite(lf).all()):
        raise ValueError(
            "some frames have a non-finite log weight: they lie outside the flow's support, "
            "so its estimates miss that mass entirely"
        )
    draw_blocks = np.array_split(np.arange(len(lw)), min(blocks, len(lw)))
    frame_blocks = np.array_split(np.arange(len(lf)), min(blocks, len(lf)))
    states, replicates = {}, {}
    for name, draw_mask in draw_states.items():
        d = draw_mask.detach().cpu().numpy().astype(bool)
        f = frame_states[name].detach().cpu().numpy().astype(bool)
        if d.shape != lw.shape or f.shape != lf.shape:
            raise ValueError(f"state {name!r}: masks must match the draws and the frames")
        inside = lw[d & np.isfinite(lw)]
        log_z_draws = float(logsumexp(inside)) - math.log(len(lw)) if inside.size else -math.inf
        value = _bar_log_z(lw, d, lf, f) if d.any() and f.any() else math.nan
        if not math.isfinite(value):  # no draw or no frame in the state, or no finite weight
            states[name] = StateCheck(log_z_draws, None, None, int(d.sum()), int(f.sum()), None)
            continue
        by_frames = np.array([_bar_log_z(lw, d, lf, _without(f, b)) for b in frame_blocks])
        by_draws = np.array([_bar_log_z(*_drop(lw, d, b), lf, f) for b in draw_blocks])
        stderr = math.sqrt(_jackknife_var(by_frames) + _jackknife_var(by_draws))
        beyond = float((lf[f] > inside.max()).mean()) if inside.size else 1.0
        states[name] = StateCheck(log_z_draws, value, stderr, int(d.sum()), int(f.sum()), beyond)
        replicates[name] = (by_frames, by_draws)
    return HeldOutCheck(states, replicates)


def _bar_log_z(lw: np.ndarray, d: np.ndarray, lf: np.ndarray, f: np.ndarray) -> float:
    """ln Z_B = ln Q_B − Δf, Δf from BAR between q and p restricted to the state."""
    inside = lw[d]
    inside = inside[np.isfinite(inside)]
    frames = lf[f]
    if inside.size == 0 or frames.size == 0:
        return math.nan
    from pymbar import other_estimators  # loaded on first use: a slow import with a banner

    shift = float(logsumexp(inside)) - math.log(inside.size)  # IS ln(Z_B / Q_B): centres the works
    result = other_estimators.bar(-(inside - shift), frames - shift, compute_uncertainty=False)
    share = inside.size / len(lw)  # Q_B of the draws with p̃ > 0 (the rest add nothing to Z_B)
    return math.log(share) + shift - float(result["Delta_f"])


def _without(mask: np.ndarray, block: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[block] = False
    return out


def _drop(lw: np.ndarray, d: np.ndarray, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.ones(len(lw), dtype=bool)
    keep[block] = False
    return lw[keep], d[keep]


def _jackknife_var(replicates: np.ndarray) -> float:
    r = np.asarray(replicates, dtype=float)
    r = r[np.isfinite(r)]
    if r.size < 2:
        return math.inf
    return float((r.size - 1) / r.size * ((r - r.mean()) ** 2).sum())
