"""Translation-equivariant coupling flows for scalar lattice fields (periodic L×L).

The architecture of Albergo, Kanwar, Shanahan, "Flow-based generative models for Markov
chain Monte Carlo in lattice field theory", arXiv 1904.12072, as in the tutorial
(Albergo et al., "Introduction to normalizing flows for lattice field theory", arXiv
2101.08176, §"Affine coupling layers"): each layer splits the sites by a checkerboard
mask m (m = 1 frozen, m = 0 updated, alternating between layers) and maps

    φ' = m⊙φ + (1 − m)⊙(φ·e^{s(m⊙φ)} + t(m⊙φ)),    log|det ∂φ'/∂φ| = Σ_x (1 − m(x)) s(x),

where (s, t) come from a small convolutional network of the frozen sites with circular
padding (3×3 kernels, LeakyReLU, a final tanh). Convolutions with circular padding
commute with lattice translations, and the checkerboard is invariant under the
translations that keep x₀ + x₁ even, so the model density is invariant under that
subgroup (and the prior, i.i.d. N(0, 1) per site, under all of them).

:class:`CheckerboardSplineCoupling` replaces the affine map of the updated sites by a
monotone rational-quadratic spline with linear tails (Durkan et al., "Neural Spline
Flows", arXiv 1906.04087), φ' = g(φ; θ(m⊙φ)) on [−B, B] and the identity outside,
log|det| = Σ_x (1 − m(x)) log g'(φ(x)); its conditioner has no final tanh.

Layers act on flat vectors ``[B, L·L]`` like every :class:`~boltzgen.flows.base.Flow`;
:func:`make_lattice_flow` ends with :class:`~boltzgen.flows.base.Flatten` to ``[B, L, L]``.
Each layer starts as the identity (zero last convolution).
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
from torch import Tensor, nn

from boltzgen.flows.base import Flatten, Flow, Sequential
from boltzgen.flows.splines import n_spline_params, rq_spline_forward, rq_spline_inverse

ScalarTransform = Literal["affine", "spline"]
Activation = Literal["leaky_relu", "silu"]
ACTIVATIONS: dict[str, type[nn.Module]] = {"leaky_relu": nn.LeakyReLU, "silu": nn.SiLU}


def checkerboard_mask(length: int, parity: int) -> Tensor:
    """``[L, L]`` float mask, 1 where (x₀ + x₁ + parity) is even (the frozen sites)."""
    index = torch.arange(length)
    return ((index[:, None] + index[None, :] + parity) % 2 == 0).to(torch.float64)


def conv_net_channels(
    n_in: int,
    n_out: int,
    hidden: int,
    n_hidden_layers: int,
    kernel_size: int,
    dtype: torch.dtype,
    generator: torch.Generator,
    final_tanh: bool = True,
    activation: Activation = "leaky_relu",
) -> nn.Sequential:
    """Conv ``[B, n_in, L, L] → [B, n_out, L, L]``: circular padding, activation, final tanh.

    Hidden kernels start U(±1/√fan_in) from ``generator``; the last convolution is zero.
    ``final_tanh=False`` leaves the last convolution's output unbounded. ``activation``:
    ``"leaky_relu"`` (the tutorial's, piecewise linear: the network's Jacobian jumps
    where a unit changes sign) or ``"silu"`` (x·σ(x), smooth; Elfwing et al., arXiv
    1702.03118), which a flow needs when its Jacobian enters a force — HMC on the
    pulled-back action (:class:`~boltzgen.samplers.flow_mcmc.FlowHMC`).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    widths = [n_in] + [hidden] * n_hidden_layers + [n_out]
    layers: list[nn.Module] = []
    last = len(widths) - 2
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        conv = nn.Conv2d(
            a, b, kernel_size, padding=kernel_size // 2, padding_mode="circular", dtype=dtype
        )
        bound = (a * kernel_size**2) ** -0.5
        with torch.no_grad():
            conv.weight.uniform_(-bound, bound, generator=generator)
            conv.bias.uniform_(-bound, bound, generator=generator)
            if i == last:
                conv.weight.zero_()
                conv.bias.zero_()
        layers.append(conv)
        if i < last:
            layers.append(ACTIVATIONS[activation]())
        elif final_tanh:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def conv_net(
    hidden: int,
    n_hidden_layers: int,
    kernel_size: int,
    dtype: torch.dtype,
    generator: torch.Generator,
    activation: Activation = "leaky_relu",
) -> nn.Sequential:
    """The scalar-field conditioner ``[B, 1, L, L] → [B, 2, L, L]`` (scale and shift)."""
    return conv_net_channels(
        1, 2, hidden, n_hidden_layers, kernel_size, dtype, generator, True, activation
    )


class CheckerboardAffineCoupling(Flow):
    """An affine coupling of the sites of one checkerboard colour, conditioned on the other.

    Args:
        length: L.
        parity: 0 or 1, which colour is frozen.
        net: the conditioner ``[B, 1, L, L] → [B, 2, L, L]`` (see :func:`conv_net`).
    """

    def __init__(self, length: int, parity: int, net: nn.Module):
        super().__init__()
        self.length = int(length)
        dtype = next(net.parameters()).dtype
        self.register_buffer("mask", checkerboard_mask(length, parity).to(dtype))
        self.net = net

    def _scale_shift(self, frozen: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(frozen[:, None])
        active = 1.0 - self.mask
        return active * out[:, 0], active * out[:, 1]

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        field = z.reshape(-1, self.length, self.length)
        frozen = self.mask * field
        s, t = self._scale_shift(frozen)
        x = frozen + (1.0 - self.mask) * field * s.exp() + t
        return x.reshape(z.shape), s.sum(dim=(-2, -1))

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        field = x.reshape(-1, self.length, self.length)
        frozen = self.mask * field
        s, t = self._scale_shift(frozen)
        z = frozen + (1.0 - self.mask) * (field - t) * (-s).exp()
        return z.reshape(x.shape), -s.sum(dim=(-2, -1))


class CheckerboardSplineCoupling(Flow):
    """A spline coupling of the sites of one checkerboard colour, conditioned on the other.

    The updated sites map by a rational-quadratic spline with K bins on [−B, B] and
    linear (identity) tails; its 3K − 1 parameters per site come from the conditioner.

    Args:
        length: L.
        parity: 0 or 1, which colour is frozen.
        net: the conditioner ``[B, 1, L, L] → [B, 3K − 1, L, L]``.
        tail_bound: B.
    """

    def __init__(self, length: int, parity: int, net: nn.Module, tail_bound: float = 4.0):
        super().__init__()
        self.length, self.tail_bound = int(length), float(tail_bound)
        dtype = next(net.parameters()).dtype
        mask = checkerboard_mask(length, parity)
        self.register_buffer("mask", mask.to(dtype))
        self.register_buffer("sites", (mask.flatten() == 0).nonzero()[:, 0])
        self.net = net

    def _transform(self, field: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        flat = field.reshape(field.shape[0], -1)
        frozen = (self.mask * field.reshape(-1, self.length, self.length))[:, None]
        params = self.net(frozen).flatten(2)[:, :, self.sites].transpose(1, 2)
        spline = rq_spline_inverse if inverse else rq_spline_forward
        y, logdet = spline(flat[:, self.sites], params, self.tail_bound)
        index = self.sites.expand(flat.shape[0], -1)
        return flat.scatter(1, index, y).reshape(field.shape), logdet

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(z, inverse=False)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(x, inverse=True)


def _coupling(
    length: int,
    parity: int,
    transform: ScalarTransform,
    conditioner: tuple[int, int, int],
    n_bins: int,
    tail_bound: float,
    dtype: torch.dtype,
    generator: torch.Generator,
    activation: Activation,
) -> Flow:
    hidden, n_hidden_layers, kernel_size = conditioner
    if transform == "affine":
        net = conv_net(hidden, n_hidden_layers, kernel_size, dtype, generator, activation)
        return CheckerboardAffineCoupling(length, parity, net)
    n_out = n_spline_params(n_bins)
    net = conv_net_channels(
        1, n_out, hidden, n_hidden_layers, kernel_size, dtype, generator, False, activation
    )
    return CheckerboardSplineCoupling(length, parity, net, tail_bound)


def make_lattice_flow(
    length: int,
    n_layers: int = 16,
    hidden: int = 8,
    n_hidden_layers: int = 2,
    kernel_size: int = 3,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    transform: ScalarTransform = "affine",
    n_bins: int = 8,
    tail_bound: float = 4.0,
    activation: Activation = "leaky_relu",
) -> Sequential:
    """The tutorial's flow: ``n_layers`` checkerboard couplings, then ``[B, L, L]``.

    The tutorial's φ⁴ model has 16 affine layers with two hidden convolutions of 8
    channels; ``transform="spline"`` uses K = ``n_bins`` spline bins on ±``tail_bound``.
    ``activation``: the conditioners' (``"leaky_relu"``, the tutorial's, or ``"silu"``).
    """
    if length % 2 or n_layers < 1:
        raise ValueError(f"need an even L and n_layers ≥ 1, got L = {length}, {n_layers}")
    if transform not in ("affine", "spline"):
        raise ValueError(f"transform must be 'affine' or 'spline', got {transform!r}")
    generator = torch.Generator().manual_seed(seed)
    conditioner = (hidden, n_hidden_layers, kernel_size)
    layers = [
        _coupling(
            length, k % 2, transform, conditioner, n_bins, tail_bound, dtype, generator, activation
        )
        for k in range(n_layers)
    ]
    return Sequential(*layers, Flatten((length, length)))


_GEOMETRY = ("mask", "sites", "links", "frozen")
"""Buffers of the lattice couplings, rebuilt from L (never loaded from another L)."""


def load_at_any_volume(flow: Sequential, state: dict[str, Tensor]) -> None:
    """Load the parameters ``state`` of a lattice flow trained on any L into ``flow``.

    For the scalar-field flows here and the gauge flows of :mod:`boltzgen.flows.gauge`:
    the conditioners are circular convolutions and the masks repeat with period 2
    (checkerboards) or 4 (gauge stripes), so the same weights define a flow on every L
    the masks fit, translation-equivariant (and gauge-equivariant) there too. Only the
    parameters move; the buffers (masks, updated sites) are the geometry of ``flow``'s own
    L. A flow trained on a small lattice thus starts, or replaces, training on a large one
    (Del Debbio, Marsh Rossney & Wilson, arXiv 2105.12481; Abbott et al., arXiv
    2211.07541). On a field that repeats a small lattice's field in both directions, the
    moved flow repeats the small flow's output and its log-determinant is (L/L_small)²
    times the small flow's (``tests/flows/test_gauge_flows.py``,
    ``tests/flows/test_lattice_flows.py``).

    Raises:
        ValueError: ``state`` is not a flow of the same architecture (layers, channels,
            transforms); the message names the first mismatch.
    """
    own = dict(flow.named_parameters())
    missing = sorted(set(own) - set(state))
    if missing:
        raise ValueError(
            f"the saved flow lacks parameter {missing[0]!r} of this flow: build it with the "
            "same n_layers, hidden and transform"
        )
    extra = sorted(k for k in set(state) - set(own) if k.rsplit(".", 1)[-1] not in _GEOMETRY)
    if extra:
        raise ValueError(
            f"the saved flow has parameters this one lacks (first: {extra[0]!r}): build it "
            "with the same n_layers, hidden and transform"
        )
    with torch.no_grad():
        for name, parameter in own.items():
            value = state[name]
            if value.shape != parameter.shape:
                raise ValueError(
                    f"parameter {name!r} has shape {list(value.shape)} in the saved flow and "
                    f"{list(parameter.shape)} here: build it with the same hidden and "
                    "n_components (or n_bins)"
                )
            parameter.copy_(value)
