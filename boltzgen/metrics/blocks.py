"""Block averages of correlated series: means and free-energy differences with errors.

A series of T correlated steps (one chain ``[T]`` or C chains ``[T, C]``, step-major as
``WeightedSamples.chains`` returns them) is cut into J contiguous blocks of steps
(sizes ⌊T/J⌋ or ⌈T/J⌉, no step dropped; each block spans all chains). Once blocks are
much longer than the integrated autocorrelation time their means are nearly independent,
so for the mean x̄

    se(x̄)² ≈ s²(m_1, …, m_J) / J,

with m_j the block means and s² their sample variance (Flyvbjerg & Petersen, "Error
estimates on averages of correlated data", J. Chem. Phys. 91, 461, 1989). With J = 20
the standard error itself is uncertain by about 1/sqrt(2(J − 1)) ≈ 16%.

For a free-energy difference ΔF = −ln(P_B / P_A), a nonlinear function of two means,
the error comes from the delete-one-block jackknife (Künsch, "The jackknife and the
bootstrap for general stationary observations", Ann. Statist. 17, 1217, 1989):

    ΔF_(j) = ln S_A^(−j) − ln S_B^(−j),    se² = (J − 1)/J Σ_j (ΔF_(j) − mean_j ΔF_(j))²,

where S_S^(−j) is the (self-normalised) weight in state S outside block j.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from boltzgen.metrics.estimate import Estimate
from boltzgen.metrics.free_energy import State, state_mask
from boltzgen.metrics.weights import normalized_weights
from boltzgen.records import WeightedSamples


def _block_sums(series: Tensor, n_blocks: int) -> tuple[Tensor, Tensor]:
    """Sums and element counts ``[J]`` of ``series: [T, C]`` over J contiguous step blocks."""
    if n_blocks < 2 or series.shape[0] < n_blocks:
        raise ValueError(
            f"need 2 <= n_blocks <= T steps, got n_blocks={n_blocks} for T={series.shape[0]}"
        )
    blocks = torch.tensor_split(series, n_blocks, dim=0)
    sums = torch.stack([b.sum() for b in blocks])
    counts = torch.tensor([b.numel() for b in blocks], dtype=series.dtype)
    return sums, counts


def block_average(series: Tensor, n_blocks: int = 20) -> Estimate:
    """Mean of a correlated series with its block standard error (Flyvbjerg & Petersen).

    Args:
        series: ``[T]`` (one chain) or ``[T, C]`` (C chains, step-major).
        n_blocks: J, the number of blocks; blocks must be much longer than τ_int.

    Returns:
        ``Estimate(mean of all T·C values, s(m_j) / sqrt(J))``.

    Example:
        >>> block_average(torch.arange(40.0), n_blocks=4).value
        19.5
    """
    x = torch.as_tensor(series).detach().to(torch.float64)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2 or x.numel() == 0:
        raise ValueError(f"series must have shape [T] or [T, C], got {list(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("series contains NaN or inf values: a block average needs finite data")
    sums, counts = _block_sums(x, n_blocks)
    means = sums / counts
    return Estimate(float(x.mean()), float(means.std(correction=1)) / math.sqrt(n_blocks))


def block_free_energy_difference(
    samples: WeightedSamples, state_a: State, state_b: State, n_blocks: int = 20
) -> Estimate:
    """ΔF = −ln(P_B / P_A) in kT from a trajectory, with a block-jackknife standard error.

    Meant for MD and MCMC output (``samples.n_chains`` set, step-major); independent
    draws are treated as one chain in their stored order. Importance weights, if any,
    are used (self-normalised).

    Args:
        samples: the trajectory (``x: [T·C, ...]``).
        state_a: state A, a callable ``x -> bool[n]`` or a boolean mask ``[n]``.
        state_b: state B, likewise.
        n_blocks: J, the number of blocks of steps (each much longer than τ_int).

    Returns:
        ``Estimate(ΔF, stderr)``; the value uses all samples. If a state is never visited
        the value is ``+inf`` (B), ``−inf`` (A) or NaN (both) with stderr ``inf``; if all
        of a state's weight lies in one block the stderr is ``inf`` too (the blocks say
        nothing about how often it is visited).
    """
    w = normalized_weights(samples.log_weights)
    a = state_mask(samples, state_a).to(w.dtype)
    b = state_mask(samples, state_b).to(w.dtype)
    s_a, _ = _block_sums(samples.chains(w * a), n_blocks)
    s_b, _ = _block_sums(samples.chains(w * b), n_blocks)
    total_a, total_b = s_a.sum(), s_b.sum()
    value = float(total_a.log() - total_b.log())
    leave_out = (total_a - s_a).clamp_min(0).log() - (total_b - s_b).clamp_min(0).log()
    if not torch.isfinite(leave_out).all():
        return Estimate(value, math.inf)
    spread = (leave_out - leave_out.mean()).square().sum()
    return Estimate(value, math.sqrt(float(spread) * (n_blocks - 1) / n_blocks))
