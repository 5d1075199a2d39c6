"""Gauge-equivariant coupling flows for U(1) lattice gauge theory in two dimensions.

Kanwar, Albergo, Boyda, Cranmer, Hackett, Racanière, Rezende, Shanahan, "Equivariant
flow-based sampling for lattice gauge theory", arXiv 2003.06413, as in the tutorial
(arXiv 2101.08176, §"U(1) gauge theory"). Links ``θ: [B, 2, L, L]`` (flat ``[B, 2L²]``
like every :class:`~boltzgen.flows.base.Flow`); plaquettes
P(x) = θ_0(x) + θ_1(x+0̂) − θ_0(x+1̂) − θ_1(x).

A layer updates the links of one direction μ on the stripe x_ν ≡ o (mod 4), ν = 1 − μ.
Each such link ℓ lies in exactly one *active* plaquette P_ℓ = P(x) (with sign σ = +1 for
μ = 0, −1 for μ = 1) that holds no other updated link; the plaquettes on the stripes
x_ν ≡ o + 1, o + 2 hold none at all (*frozen*). With p = P_ℓ mod 2π and an invertible
map h of the circle whose parameters come from a circular CNN of (cos, sin) of the
frozen plaquettes,

    θ_ℓ' = θ_ℓ + σ (h(p) − p),    log|det ∂θ'/∂θ| = Σ_ℓ log h'(p_ℓ),

since ∂θ_ℓ'/∂θ_ℓ = h'(p) and the Jacobian is triangular. Plaquettes are gauge
invariant, so the update commutes with gauge transformations and, with a uniform
(Haar) prior on the links, the model density is gauge invariant. h is the tutorial's
mixture of non-compact projections followed by a rotation,

    h(p) = (1/K) Σ_k g_{s_k}(p) + t,    g_s(p) = 2 atan(e^{s} tan(p/2)),
    g_s'(p) = 1 / (e^{−s} cos²(p/2) + e^{s} sin²(p/2)),

inverted by bisection (h − t is increasing from 0 to 2π on [0, 2π)). Layers cycle
μ = 0, 1 and o = 0 … 3; each starts as the identity (s = t = 0: zero last convolution).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from boltzgen.flows.base import Flatten, Flow, Prior, Sequential
from boltzgen.flows.lattice import conv_net_channels

TWO_PI = 2 * math.pi
BISECTION_STEPS = 64


def plaquettes(theta: Tensor) -> Tensor:
    """P(x) of ``theta: [B, 2, L, L]``: ``[B, L, L]`` (unwrapped)."""
    t0, t1 = theta[:, 0], theta[:, 1]
    return t0 + t1.roll(-1, -2) - t0.roll(-1, -1) - t1


def stripe(length: int, nu: int, offset: int) -> Tensor:
    """``bool[L, L]``: sites with x_ν ≡ offset (mod 4)."""
    hit = torch.arange(length) % 4 == offset % 4
    return hit[:, None].expand(length, length) if nu == 0 else hit[None, :].expand(length, length)


def ncp_mixture(p: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """(1/K) Σ_k g_{s_k}(p) and its log-derivative, ``p: [B, L, L]``, ``s: [B, K, L, L]``."""
    half = p[:, None] / 2
    g = torch.remainder(2 * torch.atan(s.exp() * torch.tan(half)), TWO_PI)
    log_dg = -torch.log((-s).exp() * torch.cos(half) ** 2 + s.exp() * torch.sin(half) ** 2)
    return g.mean(1), torch.logsumexp(log_dg, 1) - math.log(s.shape[1])


class GaugeEquivariantCoupling(Flow):
    """One plaquette-conditioned update of the links of direction μ on stripe o (mod 4).

    Args:
        length: L, a multiple of 4.
        mu: direction of the updated links.
        offset: o, the stripe x_ν ≡ o (mod 4) of the updated links.
        net: conditioner ``[B, 2, L, L] → [B, K + 1, L, L]`` (K mixture scales, a rotation).
    """

    def __init__(self, length: int, mu: int, offset: int, net: nn.Module):
        super().__init__()
        if length % 4:
            raise ValueError(f"gauge-equivariant couplings need L divisible by 4, got {length}")
        self.length, self.mu, self.sign = int(length), int(mu), 1.0 if mu == 0 else -1.0
        nu = 1 - mu
        dtype = next(net.parameters()).dtype
        self.register_buffer("active", stripe(length, nu, offset).to(dtype))
        frozen = stripe(length, nu, offset + 1) | stripe(length, nu, offset + 2)
        self.register_buffer("frozen", frozen.to(dtype))
        self.net = net

    def _circle_map(self, plaq: Tensor) -> tuple[Tensor, Tensor]:
        features = torch.stack([torch.cos(plaq), torch.sin(plaq)], 1) * self.frozen
        out = self.net(features)
        return out[:, :-1], out[:, -1]

    def _update(self, theta: Tensor, delta: Tensor) -> Tensor:
        shift = torch.zeros_like(theta)
        shift[:, self.mu] = self.sign * self.active * delta
        return theta + shift

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        theta = z.reshape(-1, 2, self.length, self.length)
        p = torch.remainder(plaquettes(theta), TWO_PI)
        s, t = self._circle_map(p)
        h, log_dh = ncp_mixture(p, s)
        x = self._update(theta, h + t - p)
        return x.reshape(z.shape), (self.active * log_dh).sum(dim=(-2, -1))

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        theta = x.reshape(-1, 2, self.length, self.length)
        p_new = plaquettes(theta)
        s, t = self._circle_map(torch.remainder(p_new, TWO_PI))
        target = torch.remainder(p_new - t, TWO_PI)
        low, high = torch.zeros_like(target), torch.full_like(target, TWO_PI)
        for _ in range(BISECTION_STEPS):
            middle = 0.5 * (low + high)
            below = ncp_mixture(middle, s)[0] < target
            low, high = torch.where(below, middle, low), torch.where(below, high, middle)
        p = 0.5 * (low + high)
        h, log_dh = ncp_mixture(p, s)
        z = self._update(theta, -(h + t - p))
        return z.reshape(x.shape), -(self.active * log_dh).sum(dim=(-2, -1))


class UniformAnglePrior(Prior):
    """Independent uniform angles on [0, 2π): the Haar measure of U(1) links."""

    def __init__(self, dim: int, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.dim = int(dim)
        self.register_buffer("_anchor", torch.zeros((), dtype=dtype))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(n, self.dim, generator=generator, dtype=self._anchor.dtype)
        return TWO_PI * u.to(self._anchor.device)

    def log_prob(self, z: Tensor) -> Tensor:
        """−D log 2π for every z (the density of the torus; z is read modulo 2π)."""
        return torch.full(z.shape[:1], -self.dim * math.log(TWO_PI), dtype=z.dtype, device=z.device)


def make_gauge_flow(
    length: int,
    n_layers: int = 16,
    hidden: int = 8,
    n_hidden_layers: int = 2,
    n_mixture: int = 2,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> Sequential:
    """The tutorial's U(1) flow: layers cycling μ = 0, 1 and o = 0 … 3, then ``[B, 2, L, L]``."""
    generator = torch.Generator().manual_seed(seed)
    layers: list[Flow] = []
    for k in range(n_layers):
        net = conv_net_channels(2, n_mixture + 1, hidden, n_hidden_layers, 3, dtype, generator)
        layers.append(GaugeEquivariantCoupling(length, k % 2, (k // 2) % 4, net))
    return Sequential(*layers, Flatten((2, length, length)))
