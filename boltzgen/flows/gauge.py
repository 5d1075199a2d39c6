"""Gauge-equivariant coupling flows for U(1) lattice gauge theory in two dimensions.

Kanwar, Albergo, Boyda, Cranmer, Hackett, Racanière, Rezende, Shanahan, "Equivariant
flow-based sampling for lattice gauge theory", arXiv 2003.06413, as in the tutorial
(arXiv 2101.08176, §"U(1) gauge theory"). Links ``θ: [B, 2, L, L]`` (flat ``[B, 2L²]``
like every :class:`~boltzgen.flows.base.Flow`); plaquettes
P(x) = θ_0(x) + θ_1(x+0̂) − θ_0(x+1̂) − θ_1(x).

A layer updates the links of one direction μ on the stripe x_ν ≡ o (mod 4), ν = 1 − μ.
Each such link ℓ lies in exactly one *active* plaquette P_ℓ = P(x) (with sign σ = +1 for
μ = 0, −1 for μ = 1) that holds no other updated link; its other plaquette (stripe o − 1,
*passive*) moves by the opposite amount, and the plaquettes on the stripes
x_ν ≡ o + 1, o + 2 hold no updated link (*frozen*). With p = P_ℓ mod 2π and an invertible
map h of the circle whose parameters come from a circular CNN of (cos, sin) of the
frozen plaquettes,

    θ_ℓ' = θ_ℓ + σ (h(p) + t − p),    log|det ∂θ'/∂θ| = Σ_ℓ log h'(p_ℓ),

with a conditioned rotation t, since ∂θ_ℓ'/∂θ_ℓ = h'(p) and the Jacobian is triangular.
Plaquettes are gauge invariant, so the update commutes with gauge transformations and,
with a uniform (Haar) prior on the links, the model density is gauge invariant.
Two families of circle maps h (``transform``):

* ``"ncp"`` — the tutorial's mixture of K non-compact projections,

      h(p) = (1/K) Σ_k g_{s_k}(p),    g_s(p) = 2 atan(e^{s} tan(p/2)),
      g_s'(p) = 1 / (e^{−s} cos²(p/2) + e^{s} sin²(p/2)),

  inverted by bisection (h is increasing from 0 to 2π on [0, 2π));
* ``"spline"`` — a circular rational-quadratic spline with K bins on [0, 2π)
  (Rezende et al., "Normalizing flows on tori and spheres", arXiv 2002.02428;
  :func:`boltzgen.flows.circular.circular_rq_spline`), with an analytic inverse.

As in the tutorial the conditioner has no output bound (no final tanh): the scales s
and the rotation t range over the real line. Layers cycle μ = 0, 1 and o = 0 … 3; each
starts as the identity (zero last convolution), except that a mixture of K ≥ 2 NCPs
starts with its scales spread over [−δ, δ] (:func:`spread_ncp_scales`): from equal
scales the K components receive equal gradients and stay equal, one NCP in effect.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from boltzgen.flows.base import Flatten, Flow, Prior, Sequential
from boltzgen.flows.circular import circular_rq_spline_elementwise
from boltzgen.flows.lattice import Activation, conv_net_channels

TWO_PI = 2 * math.pi
BISECTION_STEPS = 64
NCP_SPREAD = 0.5
CircleTransform = Literal["ncp", "spline"]


def plaquettes(theta: Tensor) -> Tensor:
    """P(x) of ``theta: [B, 2, L, L]``: ``[B, L, L]`` (unwrapped)."""
    t0, t1 = theta[:, 0], theta[:, 1]
    return t0 + t1.roll(-1, -2) - t0.roll(-1, -1) - t1


def stripe(length: int, nu: int, offset: int) -> Tensor:
    """``bool[L, L]``: sites with x_ν ≡ offset (mod 4)."""
    hit = torch.arange(length) % 4 == offset % 4
    return hit[:, None].expand(length, length) if nu == 0 else hit[None, :].expand(length, length)


def ncp_mixture(p: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """(1/K) Σ_k g_{s_k}(p) and its log-derivative, ``p: [...]``, ``s: [..., K]``."""
    half = p[..., None] / 2
    g = torch.remainder(2 * torch.atan(s.exp() * torch.tan(half)), TWO_PI)
    log_dg = -torch.log((-s).exp() * torch.cos(half) ** 2 + s.exp() * torch.sin(half) ** 2)
    return g.mean(-1), torch.logsumexp(log_dg, -1) - math.log(s.shape[-1])


def ncp_mixture_inverse(y: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """p with (1/K) Σ_k g_{s_k}(p) = y ∈ [0, 2π) by bisection, and log h'(p)."""
    low, high = torch.zeros_like(y), torch.full_like(y, TWO_PI)
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        below = ncp_mixture(middle, s)[0] < y
        low, high = torch.where(below, middle, low), torch.where(below, high, middle)
    p = 0.5 * (low + high)
    return p, ncp_mixture(p, s)[1]


def circle_spline(p: Tensor, params: Tensor, inverse: bool = False) -> tuple[Tensor, Tensor]:
    """A circular RQ spline on [0, 2π) (``params: [..., 3K]``) and log|dh/dp| (of h⁻¹)."""
    x = (p - math.pi).clamp(-math.pi, math.pi)
    y, log_d = circular_rq_spline_elementwise(x, params, inverse)
    return y + math.pi, log_d


def spread_ncp_scales(net: nn.Module, n_components: int, spread: float = NCP_SPREAD) -> None:
    """Start the K NCP scales of ``net``'s last convolution at linspace(−δ, δ, K).

    h(p) = (1/K) Σ_k g_{s_k}(p) is symmetric in the components, so if they start equal
    (a zero last convolution) every gradient step moves them alike and the mixture stays
    a single NCP, whose best fit to a von Mises plaquette density at β = 2 is about
    0.06 nats per plaquette (two components: 0.005). Distinct starting biases break the
    symmetry; the map starts near, not at, the identity (g_{−s} is the inverse of g_s).
    """
    if n_components < 2:
        return
    last = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        scales = torch.linspace(-spread, spread, n_components, dtype=last.bias.dtype)
        last.bias[:n_components] = scales


def n_circle_params(transform: CircleTransform, n_components: int) -> int:
    """Conditioner outputs per plaquette for the circle map, without the rotation."""
    if transform not in ("ncp", "spline") or n_components < 1:
        raise ValueError(
            f"need transform 'ncp' or 'spline' and K ≥ 1, got {transform!r}, K = {n_components}"
        )
    return n_components if transform == "ncp" else 3 * n_components


class GaugeEquivariantCoupling(Flow):
    """One plaquette-conditioned update of the links of direction μ on stripe o (mod 4).

    Args:
        length: L, a multiple of 4.
        mu: direction of the updated links.
        offset: o, the stripe x_ν ≡ o (mod 4) of the updated links.
        net: conditioner ``[B, 2, L, L] → [B, P + 1, L, L]`` (P circle-map parameters,
            see :func:`n_circle_params`, then a rotation).
        transform: the circle map, ``"ncp"`` or ``"spline"``.
    """

    def __init__(
        self, length: int, mu: int, offset: int, net: nn.Module, transform: CircleTransform = "ncp"
    ):
        super().__init__()
        if length % 4:
            raise ValueError(f"gauge-equivariant couplings need L divisible by 4, got {length}")
        n_circle_params(transform, 1)
        self.length, self.mu, self.sign = int(length), int(mu), 1.0 if mu == 0 else -1.0
        self.transform = transform
        nu = 1 - mu
        dtype = next(net.parameters()).dtype
        sites = stripe(length, nu, offset).flatten().nonzero()[:, 0]
        self.register_buffer("sites", sites)
        self.register_buffer("links", self.mu * length * length + sites)
        frozen = stripe(length, nu, offset + 1) | stripe(length, nu, offset + 2)
        self.register_buffer("frozen", frozen.to(dtype))
        self.net = net

    def _conditioner(self, plaq: Tensor) -> tuple[Tensor, Tensor]:
        """Circle-map parameters ``[B, A, P]`` and rotations ``[B, A]`` of the active sites."""
        features = torch.stack([torch.cos(plaq), torch.sin(plaq)], 1) * self.frozen
        out = self.net(features).flatten(2)[:, :, self.sites]
        return out[:, :-1].transpose(1, 2), out[:, -1]

    def _circle(self, p: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        if self.transform == "spline":
            return circle_spline(p, params, inverse)
        if inverse:
            return ncp_mixture_inverse(p, params)
        return ncp_mixture(p, params)

    def _active(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Wrapped plaquettes, their active values ``[B, A]`` and the conditioner's output."""
        plaq = torch.remainder(plaquettes(theta.reshape(-1, 2, self.length, self.length)), TWO_PI)
        params, t = self._conditioner(plaq)
        return plaq.flatten(1)[:, self.sites], params, t

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        flat = z.reshape(z.shape[0], -1)
        p, params, t = self._active(flat)
        h, log_dh = self._circle(p, params, inverse=False)
        x = flat.index_add(1, self.links, self.sign * (h + t - p))
        return x.reshape(z.shape), log_dh.sum(-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        flat = x.reshape(x.shape[0], -1)
        p_new, params, t = self._active(flat)
        target = torch.remainder(p_new - t, TWO_PI)
        p, log_dh = self._circle(target, params, inverse=True)
        if self.transform == "spline":
            log_dh = -log_dh
        z = flat.index_add(1, self.links, -self.sign * (target + t - p))
        return z.reshape(x.shape), -log_dh.sum(-1)


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
    n_components: int = 2,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    transform: CircleTransform = "ncp",
    activation: Activation = "leaky_relu",
    kernel_size: int = 3,
) -> Sequential:
    """The tutorial's U(1) flow: layers cycling μ = 0, 1 and o = 0 … 3, then ``[B, 2, L, L]``.

    ``n_components``: K, mixture components (``"ncp"``) or spline bins (``"spline"``).
    ``activation``: the conditioners' (``"leaky_relu"``, the tutorial's, or ``"silu"``).
    ``kernel_size``: odd width of the conditioners' circular convolutions (the tutorial's
    3; a wider one lets each layer see farther frozen plaquettes).

    Smoothness: field-transformation HMC integrates the force of the pulled-back action
    U(z) = u(f(z)) − log|det ∂f/∂z|, which contains ∂f/∂z. The leapfrog energy error is
    O(ε²) only where that force is continuous along the trajectory. With ``"ncp"`` and
    ``"silu"`` f is infinitely differentiable (the choice of the public code of Foreman
    et al., arXiv 2112.01586: mixtures of NCPs, SiLU conditioners). LeakyReLU
    conditioners make ∂f/∂z jump where a hidden unit changes sign, and circular RQ
    splines are only C¹ (h″ jumps at the knots, so log h′ has kinks); each crossing of
    such a surface costs an O(ε) energy error, so ΔH falls only like ε and step-size
    adaptation drives ε far down.
    """
    generator = torch.Generator().manual_seed(seed)
    n_out = n_circle_params(transform, n_components) + 1
    layers: list[Flow] = []
    for k in range(n_layers):
        net = conv_net_channels(
            2, n_out, hidden, n_hidden_layers, kernel_size, dtype, generator, False, activation
        )
        if transform == "ncp":
            spread_ncp_scales(net, n_components)
        layers.append(GaugeEquivariantCoupling(length, k % 2, (k // 2) % 4, net, transform))
    return Sequential(*layers, Flatten((2, length, length)))
