"""Toy energies with exact answers: double wells, many wells, Gaussians, mixtures.

Each toy energy is defined directly in reduced units (temperature 1) and knows its
exact reference: ``log_z`` (log of ∫exp(−u)), ``interval_log_prob`` (log of the
probability that one coordinate lies in an interval) and ``sample_exact``. These
are what samplers are checked against.

* :class:`DoubleWell` — independent copies of the quartic double well
  u(x₁, x₂) = q₄x₁⁴ + q₂x₁² + q₁x₁ + ½k x₂². One copy with (¼, −3, 1, 1) is the
  double well of Noé, Olsson, Köhler, Wu, "Boltzmann generators", Science 2019;
  sixteen copies with (1, −6, −0.5, 1) are the 32-dimensional "many well" of
  Midgley et al., "Flow annealed importance sampling bootstrap", arXiv 2208.01893
  (2¹⁶ modes). Copies are independent, so log Z is a sum of 1-D integrals, done by
  adaptive quadrature, and exact samples come from the tabulated inverse CDF of x₁.
* :class:`CorrelatedGaussian` — u = ½(x−μ)ᵀΣ⁻¹(x−μ).
* :class:`GaussianMixture` — u = −log Σₖ πₖ N(x; μₖ, diag σₖ²) (normalised: log Z = 0).

At another temperature T the reduced energy is u_T = s·u with s = T_ref / T. For the
double wells and the Gaussian, s·u is again an energy of the same family (every
coefficient times s; the covariance divided by s), so :meth:`Energy.at_temperature`
returns that energy, with its exact ``log_z``, ``interval_log_prob`` and
``sample_exact``, sharing the original's evaluation counter. (exp(−s·u) of a mixture
is not a mixture: a tempered :class:`GaussianMixture` has no exact reference.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from scipy import integrate, special
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.registry import register_energy_kind


def _as_tensor(values: Sequence[float] | Tensor, dtype: torch.dtype) -> Tensor:
    return torch.as_tensor(values, dtype=dtype)


def _scale(energy: Energy, temperature: float) -> float:
    """s = T_energy / temperature, the factor of the reduced energy at ``temperature``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return energy.temperature / float(temperature)


def _as_view(tempered: Energy, original: Energy, temperature: float) -> Energy:
    """``tempered`` reduced at ``temperature``, charging ``original``'s counter."""
    tempered.temperature = float(temperature)
    tempered.counter = original.counter
    return tempered


@dataclass(frozen=True)
class QuarticWell:
    """u₁(x) = q4·x⁴ + q2·x² + q1·x: the double-well coordinate of :class:`DoubleWell`."""

    q4: float
    q2: float
    q1: float

    def __call__(self, x: np.ndarray | float) -> np.ndarray | float:
        return self.q4 * x**4 + self.q2 * x**2 + self.q1 * x

    @cached_property
    def minimum(self) -> float:
        """Lowest point of u₁ (the global minimum among the cubic's real roots)."""
        roots = np.roots([4 * self.q4, 0.0, 2 * self.q2, self.q1])
        real = roots[np.abs(roots.imag) < 1e-9].real
        return float(real[np.argmin(self(real))])

    @cached_property
    def support(self) -> tuple[float, float]:
        """An interval outside which exp(−(u₁ − min u₁)) < 1e-40."""
        u0 = self(self.minimum)
        r = 1.0
        while self(r) - u0 < 92.0 or self(-r) - u0 < 92.0:
            r *= 1.25
        return -r, r

    def log_integral(self, low: float = -math.inf, high: float = math.inf) -> float:
        """log ∫_low^high exp(−u₁(x)) dx by adaptive quadrature (shifted for stability)."""
        lo, hi = self.support
        low, high = max(low, lo), min(high, hi)
        if high <= low:
            return -math.inf
        u0 = self(self.minimum)
        breaks = [p for p in (self.minimum, 0.0) if low < p < high]
        value, _ = integrate.quad(
            lambda t: math.exp(-(self(t) - u0)),
            low,
            high,
            points=breaks or None,
            limit=200,
            epsabs=0.0,
            epsrel=1e-12,
        )
        return math.log(value) - u0 if value > 0 else -math.inf

    @cached_property
    def _inverse_cdf_table(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.support
        grid = np.linspace(lo, hi, 400_001)
        density = np.exp(-(self(grid) - self(self.minimum)))
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]))])
        return cdf / cdf[-1], grid

    def sample(self, n: int, generator: torch.Generator) -> np.ndarray:
        """``n`` draws of x ∝ exp(−u₁) by the inverse CDF on a 4·10⁵-point grid."""
        cdf, grid = self._inverse_cdf_table
        uniform = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
        return np.interp(uniform, cdf, grid)


@register_energy_kind("double_well")
class DoubleWell(Energy):
    """Independent copies of u(x₁, x₂) = q4·x₁⁴ + q2·x₁² + q1·x₁ + ½·k·x₂².

    ``x: [B, 2·n_copies]`` laid out as (x₁, x₂) pairs: coordinate 2i is the
    double-well direction of copy i, coordinate 2i+1 its harmonic direction.
    """

    def __init__(
        self,
        n_copies: int = 1,
        q4: float = 0.25,
        q2: float = -3.0,
        q1: float = 1.0,
        k: float = 1.0,
    ):
        if n_copies < 1 or q4 <= 0 or k <= 0:
            raise ValueError("DoubleWell needs n_copies ≥ 1, q4 > 0 and k > 0")
        super().__init__((2 * n_copies,), temperature=1.0)
        self.n_copies = int(n_copies)
        self.well = QuarticWell(float(q4), float(q2), float(q1))
        self.k = float(k)

    def _energy(self, x: Tensor) -> Tensor:
        x1, x2 = x[:, 0::2], x[:, 1::2]
        w = self.well
        return (w.q4 * x1**4 + w.q2 * x1**2 + w.q1 * x1 + 0.5 * self.k * x2**2).sum(dim=1)

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = x[:, 0::2], x[:, 1::2]
        w = self.well
        force = torch.empty_like(x)
        force[:, 0::2] = -(4 * w.q4 * x1**3 + 2 * w.q2 * x1 + w.q1)
        force[:, 1::2] = -self.k * x2
        return self._energy(x), force

    def at_temperature(self, temperature: float) -> Energy:
        """The same family with every coefficient times s = T / temperature (exact).

        u_T = s·u = s·q4·x₁⁴ + s·q2·x₁² + s·q1·x₁ + ½·(s·k)·x₂², so quadrature and
        sampling stay exact. Shares this energy's evaluation counter.
        """
        s = _scale(self, temperature)
        w = self.well
        tempered = DoubleWell(self.n_copies, s * w.q4, s * w.q2, s * w.q1, s * self.k)
        return _as_view(tempered, self, temperature)

    @property
    def minimum(self) -> Tensor:
        """The global minimum ``[2·n_copies]`` (every copy in its deeper well)."""
        m = torch.zeros(self.dim, dtype=torch.float64)
        m[0::2] = self.well.minimum
        return m

    @cached_property
    def log_z(self) -> float:
        """log ∫exp(−u) dx = n_copies · (log ∫exp(−u₁) dx₁ + ½ log(2π/k))."""
        per_copy = self.well.log_integral() + 0.5 * math.log(2 * math.pi / self.k)
        return self.n_copies * per_copy

    def interval_log_prob(self, coordinate: int, low: float, high: float) -> float:
        """log P(low < x[coordinate] < high) under exp(−u)/Z."""
        if not 0 <= coordinate < self.dim:
            raise ValueError(f"coordinate must be in [0, {self.dim}), got {coordinate}")
        if coordinate % 2 == 0:
            return self.well.log_integral(low, high) - self.well.log_integral()
        scale = math.sqrt(2.0 / self.k)
        mass = 0.5 * (special.erf(high / scale) - special.erf(low / scale))
        return math.log(mass) if mass > 0 else -math.inf

    def sample_exact(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` independent draws ``[n, 2·n_copies]`` from exp(−u)/Z."""
        x = torch.empty(n, self.dim, dtype=torch.float64)
        x1 = self.well.sample(n * self.n_copies, generator)
        x[:, 0::2] = torch.from_numpy(x1).reshape(n, self.n_copies)
        x2 = torch.randn(n, self.n_copies, generator=generator, dtype=torch.float64)
        x[:, 1::2] = x2 / math.sqrt(self.k)
        return x


class DoubleWell2D(DoubleWell):
    """The Boltzmann-generators double well: u = ¼x₁⁴ − 3x₁² + x₁ + ½x₂² (Noé et al. 2019)."""

    def __init__(self) -> None:
        super().__init__(n_copies=1, q4=0.25, q2=-3.0, q1=1.0, k=1.0)


class ManyWell(DoubleWell):
    """16 copies of u = x₁⁴ − 6x₁² − ½x₁ + ½x₂²: 32 dimensions, 2¹⁶ modes (Midgley et al. 2022)."""

    def __init__(self, n_copies: int = 16) -> None:
        super().__init__(n_copies=n_copies, q4=1.0, q2=-6.0, q1=-0.5, k=1.0)


@register_energy_kind("correlated_gaussian")
class CorrelatedGaussian(Energy):
    """u(x) = ½(x−μ)ᵀΣ⁻¹(x−μ) with Z = sqrt(det(2πΣ))."""

    def __init__(self, mean: Sequence[float] | Tensor, cov: Sequence[Sequence[float]] | Tensor):
        mean_t = _as_tensor(mean, torch.float64)
        cov_t = _as_tensor(cov, torch.float64)
        d = mean_t.shape[0]
        if mean_t.dim() != 1 or cov_t.shape != (d, d):
            raise ValueError(
                f"mean must be [D] and cov [D, D], got {list(mean_t.shape)}, {list(cov_t.shape)}"
            )
        super().__init__((d,), temperature=1.0)
        self.mean = mean_t
        self.cov = cov_t
        self.cholesky = torch.linalg.cholesky(cov_t)
        self.precision = torch.cholesky_inverse(self.cholesky)

    def _energy(self, x: Tensor) -> Tensor:
        r = x - self.mean.to(x)
        return 0.5 * torch.einsum("bi,ij,bj->b", r, self.precision.to(x), r)

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._energy(x), -(x - self.mean.to(x)) @ self.precision.to(x)

    def at_temperature(self, temperature: float) -> Energy:
        """The Gaussian with covariance Σ / s, s = T / temperature (exact; shared counter)."""
        s = _scale(self, temperature)
        return _as_view(CorrelatedGaussian(self.mean, self.cov / s), self, temperature)

    @property
    def log_z(self) -> float:
        return float(0.5 * self.dim * math.log(2 * math.pi) + self.cholesky.diagonal().log().sum())

    def interval_log_prob(self, coordinate: int, low: float, high: float) -> float:
        scale = math.sqrt(2.0 * float(self.cov[coordinate, coordinate]))
        mu = float(self.mean[coordinate])
        mass = 0.5 * (special.erf((high - mu) / scale) - special.erf((low - mu) / scale))
        return math.log(mass) if mass > 0 else -math.inf

    def sample_exact(self, n: int, generator: torch.Generator) -> Tensor:
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.mean + eps @ self.cholesky.T


@register_energy_kind("gaussian_mixture")
class GaussianMixture(Energy):
    """u(x) = −log Σₖ πₖ N(x; μₖ, diag σₖ²): a normalised density, so log Z = 0."""

    def __init__(
        self,
        means: Sequence[Sequence[float]] | Tensor,
        stds: Sequence[Sequence[float]] | Tensor,
        weights: Sequence[float] | Tensor | None = None,
    ):
        means_t = _as_tensor(means, torch.float64)
        stds_t = _as_tensor(stds, torch.float64)
        k, d = means_t.shape
        weights_t = (
            torch.full((k,), 1.0 / k, dtype=torch.float64)
            if weights is None
            else (_as_tensor(weights, torch.float64))
        )
        if stds_t.shape != (k, d) or weights_t.shape != (k,) or not bool((stds_t > 0).all()):
            raise ValueError("GaussianMixture needs means [K, D], stds [K, D] > 0, weights [K]")
        if not bool((weights_t > 0).all()):
            raise ValueError("GaussianMixture weights must be positive")
        super().__init__((d,), temperature=1.0)
        self.means, self.stds = means_t, stds_t
        self.weights = weights_t / weights_t.sum()

    def _energy(self, x: Tensor) -> Tensor:
        means, stds, w = (t.to(x) for t in (self.means, self.stds, self.weights))
        r = (x[:, None, :] - means) / stds
        log_n = -0.5 * (r * r).sum(-1) - stds.log().sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        return -torch.logsumexp(log_n + w.log(), dim=1)

    @property
    def log_z(self) -> float:
        return 0.0

    def interval_log_prob(self, coordinate: int, low: float, high: float) -> float:
        mu = self.means[:, coordinate].numpy()
        scale = math.sqrt(2.0) * self.stds[:, coordinate].numpy()
        mass = 0.5 * (special.erf((high - mu) / scale) - special.erf((low - mu) / scale))
        total = float((self.weights.numpy() * mass).sum())
        return math.log(total) if total > 0 else -math.inf

    def sample_exact(self, n: int, generator: torch.Generator) -> Tensor:
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[component] + self.stds[component] * eps
