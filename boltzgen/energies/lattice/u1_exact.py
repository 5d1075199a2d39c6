"""Exact answers of 2D U(1) lattice gauge theory with the Wilson action on an L×L torus.

With S = −β Σ_P cos θ_P over the V = L² plaquettes and the character expansion
e^{β cos φ} = Σ_n I_n(β) e^{inφ}, integrating every link over the circle forces all
plaquettes into the same representation n on the torus, so (links measured by dθ/2π)

    Z = Σ_n I_n(β)^V,    ⟨cos θ_P⟩ = Σ_n I_n^V (I_n'/I_n) / Σ_n I_n^V,  I_n' = (I_{n−1}+I_{n+1})/2.

The topological charge Q = Σ_P θ̃_P / 2π (θ̃_P the plaquette angle wrapped to [−π, π))
enters through a θ-term: the wrapped plaquette weight e^{β cos φ + iϑφ/2π} expands as
Σ_n f_n(ϑ) e^{inφ} with f_n(ϑ) = (1/π)∫_0^π e^{β cos φ} cos(νφ) dφ, ν = n − ϑ/2π, so
Z(ϑ) = Σ_n f_n(ϑ)^V = Σ_Q Z_Q e^{iϑQ} and ⟨Q²⟩ = −Z''(0)/Z(0) (Gauss–Legendre quadrature
for f_n and its ν-derivatives; f_n(0) = I_n(β)). Sums run in log space over the n
that carry weight above e^{−60}. See e.g. Kanwar et al., "Equivariant flow-based sampling
for lattice gauge theory", arXiv 2003.06413, and Albergo et al., arXiv 2101.08176, where
these are the exact values the flows are compared with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

QUADRATURE_NODES = 256
WEIGHT_CUTOFF = 60.0
"""Representations n whose weight is below e^{−60} of the largest are dropped."""


@dataclass(frozen=True)
class U1Solution:
    """ln Z (links over [−π, π), Lebesgue measure), ⟨cos θ_P⟩ and ⟨Q²⟩."""

    log_z: float
    plaquette: float
    q2: float


def _representations(beta: float, volume: int) -> np.ndarray:
    """The n with (V − 2)(ln I_n − ln I_0) > −WEIGHT_CUTOFF (ln I_n decreases in |n|).

    ⟨Q²⟩ weighs ∂²f_n by I_n^{V−1} and (∂f_n)² by I_n^{V−2}; the order derivatives of
    f_n decay only like 1/n, so the cut uses the exponent V − 2.
    """
    n = 0
    log_i0 = math.log(special.ive(0, beta))
    while (volume - 2) * (log_i0 - math.log(max(special.ive(n + 1, beta), 1e-300))) < WEIGHT_CUTOFF:
        n += 1
    return np.arange(-n, n + 1)


def _f_and_derivatives(beta: float, nu: np.ndarray) -> tuple[np.ndarray, ...]:
    """e^{−β}·(f, ∂_ν f, ∂²_ν f) with f(ν) = (1/π)∫_0^π e^{β cos φ} cos(νφ) dφ."""
    x, w = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
    phi = 0.5 * math.pi * (x + 1.0)
    weight = 0.5 * w * np.exp(beta * (np.cos(phi) - 1.0))
    arg = nu[:, None] * phi[None, :]
    f = (weight * np.cos(arg)).sum(1)
    df = -(weight * phi * np.sin(arg)).sum(1)
    d2f = -(weight * phi**2 * np.cos(arg)).sum(1)
    return f, df, d2f


def u1_exact(length: int, beta: float) -> U1Solution:
    """Exact ln Z, ⟨cos θ_P⟩ and ⟨Q²⟩ of the L×L torus at coupling β."""
    if length < 2 or not beta > 0:
        raise ValueError(f"need L >= 2 and β > 0, got L = {length}, β = {beta}")
    volume = length * length
    n = _representations(beta, volume)
    log_i = np.log(special.ive(n, beta)) + beta
    log_terms = volume * log_i
    top = log_terms.max()
    p = np.exp(log_terms - top)
    p /= p.sum()
    log_z = top + math.log(np.exp(log_terms - top).sum()) + 2 * volume * math.log(2 * math.pi)
    di = 0.5 * (special.ive(n - 1, beta) + special.ive(n + 1, beta)) / special.ive(n, beta)
    f, df, d2f = _f_and_derivatives(beta, n.astype(np.float64))
    # d/dϑ = −(1/2π) d/dν, so f_ϑ'/f = −(df/f)/2π and f_ϑ''/f = (d2f/f)/4π²
    g1, g2 = df / f, d2f / f
    z2 = volume * (volume - 1) * g1**2 + volume * g2
    return U1Solution(
        float(log_z), float((p * di).sum()), float(-(p * z2).sum()) / (4 * math.pi**2)
    )
