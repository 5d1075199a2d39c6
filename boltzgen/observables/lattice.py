"""Observables of lattice configurations.

Per-configuration series (``[B]``) whose expectation (or variance) is the observable:

* ``plaquette`` — ⟨cos θ_P⟩, the mean over plaquettes of U(1) links ``θ: [B, 2, L, L]``.
* ``q2`` — ⟨Q²⟩, Q = Σ_P θ̃_P / 2π with θ̃_P wrapped to [−π, π) (an integer on the torus).
* ``two_point_susceptibility`` — χ₂ = Σ_x G_c(x) = V(⟨M²⟩ − ⟨M⟩²) of a scalar field
  ``φ: [B, L, L]`` with M = Σ_x φ(x)/V: the *variance* of y = Σ_x φ(x)/√V
  (G_c as in the tutorial, arXiv 2101.08176, eq. 37).
* ``two_point_susceptibility_symmetric`` — the same χ₂ for an action even in φ (φ⁴ without
  an external field), where ⟨M⟩ = 0 exactly: χ₂ = V⟨M²⟩, the *mean* of y². It is blind to
  the sign of M, so in the ordered phase a chain that stays in one sign sector (HMC flips it
  ever more rarely as V grows) still estimates it, where the variance about the pooled mean
  needs the chains to share the two sectors equally.
* ``field_abs_magnetization`` — ⟨|M|⟩ of a scalar field.
* :func:`binder_cumulant` — U₄ = 1 − ⟨M⁴⟩/(3⟨M²⟩²) of a series of magnetisations, the
  finite-size probe of a critical point (a ratio of moments, not a per-sample series).
* ``spin_energy_density`` and ``spin_abs_magnetization`` — the Ising model's ⟨H⟩/N and
  ⟨|Σ s_i|⟩/N from its Gaussian (Hubbard–Stratonovich) field x, averaged exactly over the
  spins given x, P(s_i = +1 | x) = σ(2x_i) (see :mod:`boltzgen.energies.lattice.ising`):
  E[s_i s_j | x] = tanh x_i tanh x_j, and the law of Σ s_i given x is the Poisson binomial
  computed by recursion over the sites. Conditioning removes the spin noise.

A card names them as ``observables: {result_name: kind}`` (the kinds are listed in
:mod:`boltzgen.observables.kinds`), e.g. ``observables: {plaquette: plaquette, q2: q2}``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def plaquette_angles(theta: Tensor) -> Tensor:
    """θ_P(x) = θ_0(x) + θ_1(x+0̂) − θ_0(x+1̂) − θ_1(x) of ``theta: [B, 2, L, L]``."""
    t0, t1 = theta[:, 0], theta[:, 1]
    return t0 + t1.roll(-1, -2) - t0.roll(-1, -1) - t1


def wrap(angle: Tensor) -> Tensor:
    """``angle`` wrapped into [−π, π)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def plaquette(theta: Tensor) -> Tensor:
    """Mean cos θ_P over the plaquettes: ``[B]``."""
    return torch.cos(plaquette_angles(theta)).mean(dim=(-2, -1))


def topological_charge(theta: Tensor) -> Tensor:
    """Q = Σ_P wrap(θ_P) / 2π: ``[B]``, integer up to rounding."""
    return wrap(plaquette_angles(theta)).sum(dim=(-2, -1)) / (2 * math.pi)


def q2(theta: Tensor) -> Tensor:
    """Q²: ``[B]``."""
    return topological_charge(theta) ** 2


def scaled_magnetization(phi: Tensor) -> Tensor:
    """y = Σ_x φ(x)/√V, whose variance is χ₂ = Σ_x G_c(x): ``[B]``."""
    return phi.sum(dim=(-2, -1)) / math.sqrt(phi.shape[-1] * phi.shape[-2])


def squared_scaled_magnetization(phi: Tensor) -> Tensor:
    """y² = (Σ_x φ(x))²/V, whose mean is χ₂ when ⟨M⟩ = 0 by the symmetry φ ↦ −φ: ``[B]``."""
    return scaled_magnetization(phi).square()


def binder_cumulant(m: Tensor) -> Tensor:
    """U₄ = 1 − ⟨M⁴⟩ / (3⟨M²⟩²) over the last axis of magnetisations ``m: [..., n]``.

    0 when M is Gaussian (the symmetric phase, volume large against the correlation
    length), 2/3 when M = ±m₀ (the ordered phase). Plotted against a coupling, the curves
    of several L cross at the critical point, where U₄ tends to a universal value
    (Binder, Z. Phys. B 43, 119 (1981); ≈ 0.61 for the 2D Ising class on the torus).
    """
    m2 = m.square().mean(dim=-1)
    return 1.0 - m.pow(4).mean(dim=-1) / (3.0 * m2.square())


def field_abs_magnetization(phi: Tensor) -> Tensor:
    """|M| = |Σ_x φ(x)| / V: ``[B]``."""
    return phi.mean(dim=(-2, -1)).abs()


def spin_energy_density(x: Tensor) -> Tensor:
    """E[H/N | x] = −(1/N) Σ_⟨ij⟩ tanh x_i tanh x_j for the Ising field ``x: [B, L, L]``."""
    t = torch.tanh(x)
    return -(t * (t.roll(-1, -1) + t.roll(-1, -2))).mean(dim=(-2, -1))


def spin_abs_magnetization(x: Tensor) -> Tensor:
    """E[|Σ_i s_i| / N | x] with independent P(s_i = +1) = σ(2x_i): ``[B]``.

    The number of up spins has the Poisson-binomial law, built site by site:
    P_{k+1}(j) = P_k(j)(1 − p_k) + P_k(j − 1) p_k.
    """
    p = torch.sigmoid(2.0 * x).flatten(1)
    n = p.shape[1]
    law = torch.zeros(p.shape[0], n + 1, dtype=p.dtype)
    law[:, 0] = 1.0
    for site in range(n):
        up = p[:, site : site + 1]
        law = law * (1 - up) + torch.nn.functional.pad(law[:, :-1], (1, 0)) * up
    ups = torch.arange(n + 1, dtype=p.dtype)
    return (law * (2 * ups - n).abs()).sum(1) / n
