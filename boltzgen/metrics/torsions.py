"""Distances between torsion-angle distributions: T-W2 and the Ramachandran KL divergence.

**T-W2.** Torsion vectors θ ∈ [−π, π)^D (for peptides the backbone (φ, ψ) of every
residue) live on a torus, with the ground cost

    c(θ, θ') = Σ_d min(|Δ_d|, 2π − |Δ_d|)²,   Δ_d = (θ_d − θ'_d) mod 2π.

T-W2 is sqrt of the exact optimal-transport cost between two weighted empirical
distributions P = Σ_i a_i δ_{θ_i}, Q = Σ_j b_j δ_{θ'_j}:

    T-W2² = min_{π ≥ 0, π 1 = a, πᵀ 1 = b} Σ_ij π_ij c(θ_i, θ'_j).

The linear program is solved exactly by network simplex (POT's ``ot.emd2``: Bonneel
et al., "Displacement interpolation using Lagrangian mass transport", SIGGRAPH Asia 2011)
for any sizes and weights; for two unweighted sets of one size its optimum is a
permutation (Birkhoff–von Neumann), which the tests check against linear assignment.
This is the T-W2 of "Sequential Boltzmann generators" (Tan et al., arXiv 2502.18462),
with 10⁴ reference frames and at most 10⁴ samples.

Memory and time: the float64 cost matrix holds n·m numbers (800 MB at 10⁴ × 10⁴) and
network simplex keeps the transport plan and its arcs beside it: about 5 n·m float64 at
peak (4.3 GB at 10⁴ × 10⁴, measured) and ~40–50 s on one CPU core (dense linear
assignment took over ten times as long). Larger sets are subsampled uniformly without
replacement; weights stay attached to the kept samples (resampling by weight would add
noise to an exact distance).

**Backbone vectors.** A frame of a peptide with K residues that have both torsions is
the vector θ = (φ_1, ψ_1, …, φ_K, ψ_K) ∈ [−π, π)^{2K} (:func:`backbone_torsions`);
T-W2 compares these whole vectors, so correlations between residues count.

**Ramachandran KL.** With 2-D histograms p (reference) and q (samples) of (φ, ψ) on
``bins × bins`` equal cells of [−π, π)², KL(p ‖ q) = Σ_c p_c ln(p_c / q_c). An empty
sample cell under reference mass would make it infinite, so both histograms are
regularised as p̃ = (p + ε) / (1 + Kε) with K = bins² cells; identical histograms still
give exactly 0, and an empty cell costs about p_c ln(p_c / ε). A peptide has one
Ramachandran plot per residue; :func:`mean_ramachandran_kl` reports the mean of the K
per-residue divergences (a joint 2K-dimensional histogram would need 36^{2K} cells).
"""

from __future__ import annotations

import math

import numpy as np
import ot
import torch
from torch import Tensor

from boltzgen.metrics.weights import normalized_weights

_TWO_PI = 2.0 * math.pi
_CHUNK = 1 << 21  # pairwise differences held at once while building the cost matrix


def _angles(name: str, values: Tensor, log_weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """Angles ``[n, D]`` float64 and their normalised weights, zero-weight rows dropped."""
    theta = torch.as_tensor(values).detach().to(torch.float64).cpu()
    if theta.dim() == 1:
        theta = theta[:, None]
    if theta.dim() != 2 or theta.shape[0] == 0:
        raise ValueError(f"{name}: angles must have shape [n, D], got {list(theta.shape)}")
    if not torch.isfinite(theta).all():
        raise ValueError(f"{name}: angles contain NaN or inf")
    if log_weights is None:
        return theta, torch.full((theta.shape[0],), 1.0 / theta.shape[0], dtype=torch.float64)
    lw = torch.as_tensor(log_weights).detach().to(torch.float64).cpu()
    if lw.shape != theta.shape[:1]:
        raise ValueError(
            f"{name}: log-weights must have shape [{theta.shape[0]}], got {list(lw.shape)}"
        )
    w = normalized_weights(lw)
    keep = w > 0
    return theta[keep], w[keep] / w[keep].sum()


def _subsample(
    theta: Tensor, weights: Tensor, max_points: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """At most ``max_points`` rows drawn uniformly without replacement, weights renormalised."""
    if theta.shape[0] <= max_points:
        return theta, weights
    keep = torch.randperm(theta.shape[0], generator=generator)[:max_points]
    return theta[keep], weights[keep] / weights[keep].sum()


def torus_cost_matrix(a: Tensor, b: Tensor) -> np.ndarray:
    """Squared periodic distances C_ij = Σ_d min(|Δ_d|, 2π − |Δ_d|)² in float64.

    Args:
        a: ``[n, D]`` angles in radians (any range), ``b: [m, D]``.

    Returns:
        ``[n, m]`` float64 numpy array (n·m·8 bytes).
    """
    cost = np.empty((a.shape[0], b.shape[0]), dtype=np.float64)
    rows = max(1, _CHUNK // b.numel())
    for start in range(0, a.shape[0], rows):
        delta = torch.remainder(a[start : start + rows, None, :] - b[None], _TWO_PI)
        wrapped = torch.minimum(delta, _TWO_PI - delta)
        cost[start : start + rows] = wrapped.square().sum(-1).numpy()
    return cost


def _exact_ot_cost(cost: np.ndarray, a: Tensor, b: Tensor) -> float:
    """min_π Σ π_ij C_ij over couplings of the weights ``a: [n]`` and ``b: [m]`` (exact)."""
    iterations = max(100_000, 50 * cost.shape[0] * cost.shape[1])
    value, log = ot.emd2(a.numpy(), b.numpy(), cost, numItermax=iterations, log=True)
    if log["warning"] is not None:
        raise RuntimeError(f"torus_w2: exact transport did not converge ({log['warning']})")
    return float(value)


def torus_w2(
    reference: Tensor,
    samples: Tensor,
    sample_log_weights: Tensor | None = None,
    max_points: int = 10_000,
    generator: torch.Generator | None = None,
    reference_log_weights: Tensor | None = None,
) -> float:
    """T-W2: exact 2-Wasserstein distance on the torus between two sets of torsion vectors.

    Args:
        reference: ``[n, D]`` torsions in radians (e.g. (φ, ψ) of reference frames).
        samples: ``[m, D]`` torsions of the sampler's configurations.
        sample_log_weights: ``[m]`` log importance weights (``None``: uniform).
        max_points: each set is subsampled uniformly to at most this many points.
        generator: randomness of the subsampling; ``None`` uses a generator seeded 0.
        reference_log_weights: ``[n]`` log weights of the reference (``None``: uniform).

    Returns:
        T-W2 in radians. Samples with weight zero are dropped first (exact).

    Example:
        >>> torus_w2(torch.tensor([[3.0]]), torch.tensor([[-3.0]]))  # 2π − 6
        0.28318530717958623
    """
    if max_points < 1:
        raise ValueError(f"max_points must be positive, got {max_points}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    ref, ref_w = _angles("reference", reference, reference_log_weights)
    smp, smp_w = _angles("samples", samples, sample_log_weights)
    if ref.shape[1] != smp.shape[1]:
        raise ValueError(f"reference has {ref.shape[1]} angles per point, samples {smp.shape[1]}")
    ref, ref_w = _subsample(ref, ref_w, max_points, generator)
    smp, smp_w = _subsample(smp, smp_w, max_points, generator)
    cost = _exact_ot_cost(torus_cost_matrix(ref, smp), ref_w, smp_w)
    return math.sqrt(max(cost, 0.0))


def ramachandran_histogram(
    phi_psi: Tensor, log_weights: Tensor | None = None, bins: int = 36
) -> Tensor:
    """Weighted 2-D histogram of (φ, ψ) on ``bins × bins`` equal cells of [−π, π)².

    Angles are wrapped into [−π, π) first (so π and −π share a cell).

    Args:
        phi_psi: ``[n, 2]`` angles in radians.
        log_weights: ``[n]`` log weights (``None``: uniform).
        bins: cells per angle.

    Returns:
        ``[bins, bins]`` float64 probabilities summing to 1, indexed ``[φ cell, ψ cell]``.
    """
    theta, w = _angles("phi_psi", phi_psi, log_weights)
    if theta.shape[1] != 2:
        raise ValueError(f"phi_psi must have shape [n, 2], got {list(theta.shape)}")
    cell = torch.floor(torch.remainder(theta + math.pi, _TWO_PI) * (bins / _TWO_PI)).long()
    cell = cell.clamp(0, bins - 1)
    flat = torch.bincount(cell[:, 0] * bins + cell[:, 1], weights=w, minlength=bins * bins)
    return flat.reshape(bins, bins)


def ramachandran_kl(
    reference_phi_psi: Tensor,
    samples_phi_psi: Tensor,
    sample_log_weights: Tensor | None = None,
    bins: int = 36,
    eps: float = 1e-10,
    reference_log_weights: Tensor | None = None,
) -> float:
    """KL(reference ‖ samples) between regularised (φ, ψ) histograms, in nats.

    Args:
        reference_phi_psi: ``[n, 2]`` reference torsions in radians.
        samples_phi_psi: ``[m, 2]`` sampler torsions in radians.
        sample_log_weights: ``[m]`` log importance weights (``None``: uniform).
        bins: cells per angle (36: 10° cells).
        eps: mass added to every cell of both histograms before renormalising
            (see the module docstring); ``eps = 0`` gives the plain KL, possibly ``inf``.
        reference_log_weights: ``[n]`` log weights of the reference (``None``: uniform).

    Example:
        >>> ref = torch.tensor([[0.1, 0.1], [2.0, 2.0]])
        >>> ramachandran_kl(ref, ref)
        0.0
    """
    if bins < 1 or eps < 0:
        raise ValueError(f"need bins >= 1 and eps >= 0, got bins={bins}, eps={eps}")
    p = ramachandran_histogram(reference_phi_psi, reference_log_weights, bins)
    q = ramachandran_histogram(samples_phi_psi, sample_log_weights, bins)
    p, q = ((h + eps) / (1.0 + eps * h.numel()) for h in (p, q))
    support = p > 0
    return float((p[support] * (p[support] / q[support]).log()).sum())


def backbone_torsions(phi: Tensor, psi: Tensor) -> Tensor:
    """Per-frame backbone vectors (φ_1, ψ_1, …, φ_K, ψ_K) ``[n, 2K]`` from ``phi, psi: [n, K]``.

    Example:
        >>> backbone_torsions(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]]))
        tensor([[1., 3., 2., 4.]])
    """
    if phi.shape != psi.shape or phi.dim() != 2:
        raise ValueError(
            f"phi and psi must both have shape [n, K], got {list(phi.shape)}, {list(psi.shape)}"
        )
    return torch.stack([phi, psi], dim=2).reshape(phi.shape[0], -1)


def mean_ramachandran_kl(
    reference: Tensor,
    samples: Tensor,
    sample_log_weights: Tensor | None = None,
    bins: int = 36,
    eps: float = 1e-10,
) -> float:
    """Mean over residues of KL(reference ‖ samples) of each residue's (φ_k, ψ_k) histogram.

    Args:
        reference: ``[n, 2K]`` backbone vectors (:func:`backbone_torsions`).
        samples: ``[m, 2K]`` backbone vectors of the sampler's configurations.
        sample_log_weights: ``[m]`` log importance weights (``None``: uniform).
        bins: as in :func:`ramachandran_kl`.
        eps: as in :func:`ramachandran_kl`.
    """
    if reference.shape[1] != samples.shape[1] or reference.shape[1] % 2:
        raise ValueError(
            f"backbone vectors must have one even width, got {reference.shape[1]} "
            f"and {samples.shape[1]}"
        )
    residues = range(reference.shape[1] // 2)
    kls = [
        ramachandran_kl(
            reference[:, 2 * k : 2 * k + 2],
            samples[:, 2 * k : 2 * k + 2],
            sample_log_weights,
            bins,
            eps,
        )
        for k in residues
    ]
    return float(sum(kls) / len(kls))
