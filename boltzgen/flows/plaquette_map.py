"""An analytic field transformation of 2-D U(1) links: every plaquette's marginal from β₀ to β.

Under the Wilson action exp(β Σ_x cos P(x)) on the L × L torus the plaquette angles are
independent von Mises(0, β) variables up to the one constraint Σ_x P(x) = 0 (see
:mod:`boltzgen.flows.wilson_prior`). The circle map

    h = F_β⁻¹ ∘ F_β₀,    F_κ(p) = (p + π)/2π + (1/π) Σ_{n≥1} (I_n(κ)/I₀(κ)) sin(np)/n

(F_κ the von Mises distribution function on (−π, π]) carries von Mises(β₀) to von Mises(β),
so that, with f_κ(p) = e^{κ cos p}/(2π I₀(κ)) the density,

    ln h′(p) = ln f_β₀(p) − ln f_β(h(p)),    β cos h(p) + ln h′(p) = β₀ cos p + const.

:class:`PlaquetteMarginalMap` applies h to every plaquette and shifts all of them back by
the mean displacement, so that they still sum to zero: with p(x) the wrapped plaquettes,
g = h − id and m = (1/V) Σ_x g(p(x)),

    P′(x) = P(x) + D(x),    D(x) = g(p(x)) − m,    i.e. P′(x) ≡ h(p(x)) − m (mod 2π),

realised on the links by the co-exact field θ′ = θ + curl*ψ with (curl curl*) ψ = D
(curl curl* is the lattice Laplacian 4 − shifts on the dual sites, solved by FFT; D sums
to zero). Gauge angles and holonomies are untouched. In the coordinates (P(x) for x ≠ x₀,
gauge, holonomies) — a linear bijection of the links with a constant Jacobian — the
Jacobian is diag(h′) minus a rank-one term, and the matrix determinant lemma gives

    log|det ∂θ′/∂θ| = Σ_x ln h′(p(x)) + ln((1/V) Σ_x 1/h′(p(x))).

The inverse solves the scalar equation m + (1/V) Σ_x [h⁻¹(q_x) − q_x] = 0, q_x = p′(x) + m
(wrapped), whose left side increases with m, by Newton's method, then p(x) = h⁻¹(q_x).

The map is gauge and translation equivariant. Pulled back through it, the Wilson action at
β becomes the Wilson action at β₀ plus a global term of the common shift m, which is of
order V^{−1/2} per plaquette — what field-transformation HMC (Foreman et al., arXiv
2112.01586) needs of a flow where a plaquette crosses π and the topological charge changes:
the latent barrier there is about 2β₀ instead of 2β. No parameters are learned: it is the
map a flow trained from a Wilson prior at β₀ (:mod:`boltzgen.flows.wilson_prior`) has to
approximate, written down because in two dimensions the plaquettes are independent but for
their sum. Accuracy: h is computed from the distribution functions in float64, whose tails
near ±π hold about e^{−2κ} of the mass, so the round trip loses digits there as β grows
(1e-10 at β = 6, 1e-5 at β = 12).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import ive
from torch import Tensor

from boltzgen.flows.base import Flatten, Flow, Sequential
from boltzgen.flows.gauge import TWO_PI, plaquettes

GRID = 8192
NEWTON_STEPS = 6
MAX_TERMS = 400


def _ratios(kappa: float) -> np.ndarray:
    """I_n(κ)/I₀(κ) for n = 1 … until they fall below 1e-18 (the CDF's Fourier weights)."""
    n = np.arange(1, MAX_TERMS + 1)
    ratios = ive(n, kappa) / ive(0, kappa)
    keep = int(np.argmax(ratios < 1e-18)) if (ratios < 1e-18).any() else MAX_TERMS
    return ratios[: max(keep, 1)]


class VonMisesCDF:
    """F_κ, its density and its inverse on (−π, π], in float64."""

    def __init__(self, kappa: float):
        if not kappa > 0:
            raise ValueError(f"need κ > 0, got {kappa}")
        self.kappa = float(kappa)
        ratios = _ratios(self.kappa)
        self.weights = torch.from_numpy(ratios / (math.pi * np.arange(1, len(ratios) + 1)))
        self.orders = torch.arange(1, len(ratios) + 1, dtype=torch.float64)
        self.log_norm = math.log(TWO_PI * ive(0, self.kappa))
        self.grid = torch.linspace(-math.pi, math.pi, GRID + 1, dtype=torch.float64)
        self.grid_cdf = self(self.grid)

    def __call__(self, p: Tensor) -> Tensor:
        orders, weights = self.orders.to(p.device), self.weights.to(p.device)
        series = (torch.sin(p[..., None] * orders) * weights).sum(-1)
        return (p + math.pi) / TWO_PI + series

    def log_density(self, p: Tensor) -> Tensor:
        """ln f_κ(p) = κ(cos p − 1) − ln(2π I₀(κ) e^{−κ})."""
        return self.kappa * (torch.cos(p) - 1) - self.log_norm

    def inverse(self, u: Tensor) -> Tensor:
        """p with F_κ(p) = u: linear interpolation on a grid, then Newton inside the cell."""
        grid, grid_cdf = self.grid.to(u.device), self.grid_cdf.to(u.device)
        index = torch.searchsorted(grid_cdf, u.clamp(0, 1)).clamp(1, GRID)
        lo, hi = grid[index - 1], grid[index]
        c_lo, c_hi = grid_cdf[index - 1], grid_cdf[index]
        p = lo + (hi - lo) * ((u - c_lo) / (c_hi - c_lo)).clamp(0, 1)
        for _ in range(NEWTON_STEPS):
            p = (p - (self(p) - u) / self.log_density(p).exp()).clamp(lo, hi)
        return p


class _Transport(torch.autograd.Function):
    """y = F_b⁻¹(F_a(p)), with dy/dp = f_a(p)/f_b(y)."""

    @staticmethod
    def forward(ctx, p: Tensor, source: VonMisesCDF, target: VonMisesCDF) -> Tensor:
        y = target.inverse(source(p))
        ctx.save_for_backward(p, y)
        ctx.cdfs = (source, target)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        p, y = ctx.saved_tensors
        source, target = ctx.cdfs
        return grad * (source.log_density(p) - target.log_density(y)).exp(), None, None


def transport(p: Tensor, source: VonMisesCDF, target: VonMisesCDF) -> tuple[Tensor, Tensor]:
    """y = F_target⁻¹(F_source(p)) of wrapped angles ``p`` (float64) and ln dy/dp."""
    y = _Transport.apply(p, source, target)
    return y, source.log_density(p) - target.log_density(y)


def _wrap(p: Tensor) -> Tensor:
    return torch.remainder(p + math.pi, TWO_PI) - math.pi


class PlaquetteMarginalMap(Flow):
    """Links ``[B, 2L²]`` → links: every plaquette's marginal carried from β₀ to β.

    Example:
        >>> flow = PlaquetteMarginalMap(8, prior_beta=4.0, beta=6.0)
        >>> x, logdet = flow(z)        # z: [B, 128] from WilsonPrior(8, 4.0)
    """

    def __init__(self, length: int, prior_beta: float, beta: float):
        super().__init__()
        if length < 2:
            raise ValueError(f"need L ≥ 2, got {length}")
        self.length, self.prior_beta, self.beta = int(length), float(prior_beta), float(beta)
        self.source, self.target = VonMisesCDF(prior_beta), VonMisesCDF(beta)
        k = TWO_PI * torch.arange(self.length, dtype=torch.float64) / self.length
        laplacian = 4 - 2 * torch.cos(k)[:, None] - 2 * torch.cos(k)[None, :]
        laplacian[0, 0] = 1.0  # the zero mode: D sums to zero, ψ̂(0) is set to 0
        self.register_buffer("_laplacian", laplacian, persistent=False)

    def _shift(self, d: Tensor) -> Tensor:
        """curl*ψ ``[B, 2, L, L]`` with (curl curl*)ψ = ``d`` ``[B, L, L]`` (Σ d = 0)."""
        spectrum = torch.fft.fft2(d) / self._laplacian
        spectrum[..., 0, 0] = 0
        psi = torch.fft.ifft2(spectrum).real
        return torch.stack([psi - psi.roll(1, -1), psi.roll(1, -2) - psi], dim=1)

    def _links(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        theta = theta.reshape(-1, 2, self.length, self.length).to(torch.float64)
        return theta, _wrap(plaquettes(theta))

    @staticmethod
    def _log_det(log_slope: Tensor) -> Tensor:
        mean_inverse = torch.logsumexp(-log_slope, (-2, -1)) - math.log(log_slope[0].numel())
        return log_slope.sum((-2, -1)) + mean_inverse

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        theta, p = self._links(z)
        y, log_slope = transport(p, self.source, self.target)
        g = y - p
        out = theta + self._shift(g - g.mean((-2, -1), keepdim=True))
        return out.reshape(z.shape[0], -1).to(z.dtype), self._log_det(log_slope).to(z.dtype)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        theta, p_new = self._links(x)
        m = torch.zeros(theta.shape[0], 1, 1, dtype=torch.float64, device=theta.device)
        with torch.no_grad():
            for _ in range(NEWTON_STEPS * 4):
                q = _wrap(p_new + m)
                p, log_slope = transport(q, self.target, self.source)
                residual = m + (p - q).mean((-2, -1), keepdim=True)
                m = m - residual / log_slope.exp().mean((-2, -1), keepdim=True)
        q = _wrap(p_new + m)
        p, log_slope = transport(q, self.target, self.source)
        out = theta - self._shift(q - p - m)
        return out.reshape(x.shape[0], -1).to(x.dtype), self._log_det(-log_slope).neg().to(x.dtype)


def plaquette_marginal_flow(length: int, prior_beta: float, beta: float) -> Sequential:
    """:class:`PlaquetteMarginalMap` ending in ``[B, 2, L, L]`` links, like the gauge flows."""
    return after_plaquette_map(Sequential(Flatten((2, length, length))), length, prior_beta, beta)


def after_plaquette_map(
    flow: Sequential, length: int, prior_beta: float, beta: float
) -> Sequential:
    """The layers of ``flow`` preceded by :class:`PlaquetteMarginalMap` (learned couplings
    that only have to correct the analytic map)."""
    return Sequential(PlaquetteMarginalMap(length, prior_beta, beta), *flow.layers)
