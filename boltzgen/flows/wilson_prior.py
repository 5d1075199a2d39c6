"""An exactly sampled prior for U(1) gauge flows: the Wilson action at a coupling β₀.

A gauge-equivariant flow (:mod:`boltzgen.flows.gauge`) may start from the Wilson
distribution at a smaller coupling β₀ instead of the uniform (Haar) one, so that it only
has to carry the field from β₀ to the target β. Field-transformation HMC then runs in a
latent space where the pulled-back action is close to the β₀ action, whose topology moves
freely (a prior nearer the target; the flow of Foreman et al., arXiv 2112.01586, starts
from Haar).

**Exact sampling in two dimensions.** On the L × L torus (V = L² sites) the links θ ↦
(gauge angles α, plaquettes P, holonomies h₀, h₁) is a linear bijection modulo 2π with a
constant Jacobian: V − 1 gauge angles, V plaquettes with the one constraint Σ_x P(x) = 0
(each link enters two plaquettes with opposite signs), and two holonomies make 2V. The
Haar measure on the links is therefore uniform in (α, P, h), and

    p_β₀(θ) ∝ exp(β₀ Σ_x cos P(x))

makes the plaquette angles independent von Mises(0, β₀) variables conditioned on
Σ_x P(x) ≡ 0 (mod 2π), with α and h uniform. The plaquettes are drawn by rejection: V − 1
independent von Mises draws, the last one −Σ (wrapped), accepted with probability
exp(β₀(cos P_V − 1)) (acceptance ≈ I₀(β₀)e^{−β₀}), which is exact. Links follow in the
axial gauge θ₀(a, b) = 0 for a < L − 1, then a uniform gauge transformation.

**Normalisation** (character expansion, e^{β cos P} = Σ_n I_n(β) e^{inP}):
ln ∫_{[0, 2π)^{2V}} e^{β₀ Σ cos P} dθ = 2V ln 2π + ln Σ_n I_n(β₀)^V.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import ive, logsumexp
from scipy.stats import vonmises
from torch import Tensor

from boltzgen.flows.base import Prior
from boltzgen.flows.gauge import TWO_PI, UniformAnglePrior, plaquettes

MAX_CHARACTER = 64


def wilson_log_z(length: int, beta: float) -> float:
    """ln ∫ exp(β Σ_x cos P(x)) dθ over the 2V link angles of the L × L torus.

    The energy's ``u1_exact(L, β).log_z`` is the same number (tested); flows sit on the
    energies' floor and may not import them, so the one-line sum is written here."""
    volume = length * length
    n = np.arange(-MAX_CHARACTER, MAX_CHARACTER + 1)
    log_i = np.log(ive(n, beta)) + beta
    return 2 * volume * math.log(TWO_PI) + float(logsumexp(volume * log_i))


def _wrap(x: np.ndarray) -> np.ndarray:
    return np.remainder(x + math.pi, TWO_PI) - math.pi


def constrained_plaquettes(
    n: int, volume: int, beta: float, rng: np.random.Generator
) -> np.ndarray:
    """``[n, V]`` unwrapped plaquette angles, von Mises(0, β) each given Σ ≡ 0 (mod 2π),
    lifted so that their sum is exactly 0 (the last one takes the 2πQ)."""
    out = np.empty((0, volume))
    while len(out) < n:
        free = vonmises.rvs(beta, size=(2 * (n - len(out)) + 8, volume - 1), random_state=rng)
        free = _wrap(free)
        closing = -free.sum(1, keepdims=True)
        keep = rng.random(len(free)) < np.exp(beta * (np.cos(closing[:, 0]) - 1.0))
        lifted = np.concatenate([free, closing], axis=1)
        out = np.concatenate([out, lifted[keep]])
    return out[:n]


def links_from_plaquettes(p: np.ndarray, h0: np.ndarray, h1: np.ndarray, length: int) -> np.ndarray:
    """``[n, 2, L, L]`` links of plaquettes ``p: [n, L, L]`` (summing to 0) and holonomies
    ``h0, h1: [n]``, in the axial gauge θ₀(a, b) = 0 for a < L − 1 (see the module)."""
    n = len(p)
    theta = np.zeros((n, 2, length, length))
    theta[:, 1, 1:, :] = np.cumsum(p[:, :-1, :], axis=1)
    theta[:, 1, :, 0] += h1[:, None]
    columns = p.sum(axis=1)
    theta[:, 0, -1, 1:] = -np.cumsum(columns[:, :-1], axis=1)
    theta[:, 0, -1, :] += h0[:, None]
    return theta


class WilsonPrior(Prior):
    """Links ``[2L²]`` (flat, like the gauge flows) drawn exactly from exp(β₀ Σ cos P).

    Example:
        >>> prior = WilsonPrior(8, 2.0)
        >>> z = prior.sample(16, torch.Generator().manual_seed(0))   # [16, 128]
    """

    def __init__(self, length: int, beta: float, dtype: torch.dtype = torch.float64):
        super().__init__()
        if length < 2 or not beta > 0:
            raise ValueError(f"need L ≥ 2 and β₀ > 0, got L = {length}, β₀ = {beta}")
        self.length, self.beta = int(length), float(beta)
        self.dim = 2 * self.length**2
        self.log_z = wilson_log_z(self.length, self.beta)
        self.register_buffer("_anchor", torch.zeros((), dtype=dtype))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        length = self.length
        p = constrained_plaquettes(n, length * length, self.beta, rng)
        h = rng.uniform(0.0, TWO_PI, size=(2, n))
        theta = links_from_plaquettes(p.reshape(n, length, length), h[0], h[1], length)
        alpha = rng.uniform(0.0, TWO_PI, size=(n, length, length))
        theta[:, 0] += alpha - np.roll(alpha, -1, axis=1)
        theta[:, 1] += alpha - np.roll(alpha, -1, axis=2)
        z = torch.from_numpy(np.remainder(theta, TWO_PI).reshape(n, self.dim))
        return z.to(dtype=self._anchor.dtype, device=self._anchor.device)

    def log_prob(self, z: Tensor) -> Tensor:
        """β₀ Σ_x cos P(x) − ln Z(β₀), the density on [0, 2π)^{2V}."""
        theta = z.reshape(-1, 2, self.length, self.length)
        return self.beta * torch.cos(plaquettes(theta)).sum((-2, -1)) - self.log_z


def gauge_prior(length: int, beta: float | None, dtype: torch.dtype = torch.float64) -> Prior:
    """The latent density of a U(1) gauge flow on the L × L torus: Haar (``beta`` ``None``)
    or the Wilson action at ``beta``."""
    if beta is None:
        return UniformAnglePrior(2 * length * length, dtype=dtype)
    return WilsonPrior(length, beta, dtype=dtype)
