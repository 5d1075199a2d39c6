"""Coupling layers: transform half of the coordinates conditioned on the other half.

With a boolean ``mask`` (``True`` = transformed, ``False`` = conditioning) a coupling
layer maps z = (z_t, z_c) to x = (g(z_t; θ(z_c)), z_c), where g is an elementwise
bijection whose parameters θ come from a neural network (the *conditioner*) of the
untouched half. The Jacobian is block-triangular, so log|det ∂x/∂z| = Σ log|g'(z_t)|,
and the inverse needs one conditioner call (Dinh, Sohl-Dickstein, Bengio, "Density
estimation using Real NVP", arXiv 1605.08803).

* :class:`AffineCoupling` — g(z) = z·exp(s) + t with a soft-bounded log-scale s (RealNVP).
* :class:`RQSplineCoupling` — g a monotone rational-quadratic spline with linear tails
  (Durkan et al., "Neural Spline Flows", arXiv 1906.04087).

Both start as the exact identity: the conditioner's last layer is zero, which gives
s = t = 0, and zero spline parameters (see :mod:`boltzgen.flows.splines`).
"""

from __future__ import annotations

import abc
import itertools

import torch
from torch import Tensor, nn

from boltzgen.flows.base import Flow, Sequential
from boltzgen.flows.splines import n_spline_params, rq_spline_forward, rq_spline_inverse


def alternating_masks(dim: int, n: int) -> list[Tensor]:
    """``n`` boolean masks ``[dim]`` cycling even/odd/first-half/second-half coordinates.

    Consecutive pairs are complementary, so every coordinate is transformed at least
    once in any two consecutive layers; the half-split masks let coordinates that the
    even/odd masks keep apart condition each other.

    Examples:
        >>> [m.int().tolist() for m in alternating_masks(4, 4)]
        [[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1]]
    """
    if dim < 2:
        raise ValueError(f"coupling layers need at least 2 dimensions, got dim={dim}")
    index = torch.arange(dim)
    patterns = [index % 2 == 0, index % 2 == 1, index < dim // 2, index >= dim // 2]
    return [patterns[k % 4].clone() for k in range(n)]


def _linear(n_in: int, n_out: int, dtype: torch.dtype, generator: torch.Generator) -> nn.Linear:
    """nn.Linear initialised U(−1/√n_in, 1/√n_in) (PyTorch's default) from ``generator``."""
    layer = nn.utils.skip_init(nn.Linear, n_in, n_out, dtype=dtype)
    bound = n_in**-0.5
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


def conditioner(
    n_in: int,
    n_out: int,
    hidden: int,
    n_layers: int,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """An MLP ``[B, n_in] → [B, n_out]`` with ``n_layers`` SiLU hidden layers; last layer 0.

    ``generator`` (default: seeded 0) initialises the hidden layers; the zero output
    layer makes the coupling start as the identity.
    """
    if n_layers < 1 or hidden < 1:
        raise ValueError(f"conditioner needs n_layers ≥ 1 and hidden ≥ 1, got {n_layers}, {hidden}")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    widths = [n_in] + [hidden] * n_layers
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [_linear(a, b, dtype, generator), nn.SiLU()]
    last = _linear(hidden, n_out, dtype, generator)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def _check_mask(mask: Tensor, dim: int | None = None) -> Tensor:
    """``mask`` as a boolean ``[dim]`` vector with both transformed and conditioning entries."""
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if mask.dim() != 1 or (dim is not None and mask.numel() != dim):
        expected = "[D]" if dim is None else f"[{dim}]"
        raise ValueError(f"mask must have shape {expected}, got {list(mask.shape)}")
    if bool(mask.all()) or not bool(mask.any()):
        raise ValueError("mask must have both True (transformed) and False (conditioning) entries")
    return mask


class Coupling(Flow):
    """Base coupling layer: splits by ``mask``, conditions on the ``False`` half.

    Subclasses define :meth:`_forward_t` / :meth:`_inverse_t`: the elementwise map of
    the transformed half ``[B, n_t]`` given conditioner output ``[B, n_out]``.
    """

    def __init__(self, mask: Tensor, net: nn.Module):
        super().__init__()
        mask = _check_mask(mask)
        self.dim = mask.numel()
        transformed, conditioning = mask.nonzero()[:, 0], (~mask).nonzero()[:, 0]
        self.register_buffer("transformed", transformed)
        self.register_buffer("conditioning", conditioning)
        self.register_buffer("unpermute", torch.argsort(torch.cat([transformed, conditioning])))
        self.net = net

    def _split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"coupling input must have shape [B, {self.dim}], got {list(z.shape)}")
        return z[:, self.transformed], z[:, self.conditioning]

    def _merge(self, y_t: Tensor, z_c: Tensor) -> Tensor:
        return torch.cat([y_t, z_c], dim=1)[:, self.unpermute]

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        z_t, z_c = self._split(z)
        y_t, logdet = self._forward_t(z_t, self.net(z_c))
        return self._merge(y_t, z_c), logdet

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_t, x_c = self._split(x)
        z_t, logdet = self._inverse_t(x_t, self.net(x_c))
        return self._merge(z_t, x_c), logdet

    @abc.abstractmethod
    def _forward_t(self, z_t: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``(g(z_t; θ): [B, n_t], Σ log|g'|: [B])``."""

    @abc.abstractmethod
    def _inverse_t(self, x_t: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``(g⁻¹(x_t; θ): [B, n_t], Σ log|(g⁻¹)'|: [B])``."""


class RQSplineCoupling(Coupling):
    """Neural-spline coupling: x_t = RQ-spline(z_t; θ(z_c)), identity outside ±tail_bound.

    Durkan et al., "Neural Spline Flows", arXiv 1906.04087. The conditioner outputs
    3K − 1 spline parameters per transformed coordinate (see
    :mod:`boltzgen.flows.splines`); it starts at zero, i.e. the identity map.

    Args:
        dim: number of coordinates D.
        mask: ``[D]`` boolean, ``True`` for the coordinates this layer transforms.
        hidden: width of the conditioner MLP.
        n_layers: depth of the conditioner MLP.
        n_bins: K, spline bins on [−tail_bound, tail_bound].
        tail_bound: B; coordinates outside [−B, B] pass through unchanged.
        dtype: parameter dtype.
        generator: initialises the conditioner (default: seeded 0).

    Example:
        >>> import torch
        >>> layer = RQSplineCoupling(4, alternating_masks(4, 1)[0])
        >>> z = torch.randn(8, 4, dtype=torch.float64)
        >>> x, logdet = layer(z)  # x: [8, 4], logdet: [8]
    """

    def __init__(
        self,
        dim: int,
        mask: Tensor,
        hidden: int = 64,
        n_layers: int = 2,
        n_bins: int = 8,
        tail_bound: float = 5.0,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ):
        n_t = int(_check_mask(mask, dim).sum())
        n_params = n_spline_params(n_bins)
        super().__init__(
            mask, conditioner(dim - n_t, n_t * n_params, hidden, n_layers, dtype, generator)
        )
        self.n_params = n_params
        self.tail_bound = float(tail_bound)

    def _spline_params(self, theta: Tensor) -> Tensor:
        return theta.reshape(theta.shape[0], -1, self.n_params)

    def _forward_t(self, z_t: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        return rq_spline_forward(z_t, self._spline_params(theta), self.tail_bound)

    def _inverse_t(self, x_t: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        return rq_spline_inverse(x_t, self._spline_params(theta), self.tail_bound)


class AffineCoupling(Coupling):
    """RealNVP affine coupling x_t = z_t·exp(s) + t, (s, t) = conditioner(z_c).

    Dinh et al., "Density estimation using Real NVP", arXiv 1605.08803. The log-scale
    is soft-bounded, s = b·tanh(s_raw / b), so one layer scales by at most e^{±b};
    log|det ∂x/∂z| = Σ s.

    Args:
        dim: as for :class:`RQSplineCoupling`.
        mask: as for :class:`RQSplineCoupling`.
        hidden: as for :class:`RQSplineCoupling`.
        n_layers: as for :class:`RQSplineCoupling`.
        dtype: as for :class:`RQSplineCoupling`.
        generator: as for :class:`RQSplineCoupling`.
        scale_bound: b > 0, the bound on |s| per coordinate.
    """

    def __init__(
        self,
        dim: int,
        mask: Tensor,
        hidden: int = 64,
        n_layers: int = 2,
        scale_bound: float = 2.0,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ):
        if scale_bound <= 0:
            raise ValueError(f"scale_bound must be positive, got {scale_bound}")
        n_t = int(_check_mask(mask, dim).sum())
        super().__init__(mask, conditioner(dim - n_t, 2 * n_t, hidden, n_layers, dtype, generator))
        self.scale_bound = float(scale_bound)

    def _shift_and_log_scale(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = theta.chunk(2, dim=1)
        return shift, self.scale_bound * torch.tanh(raw / self.scale_bound)

    def _forward_t(self, z_t: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        shift, s = self._shift_and_log_scale(theta)
        return z_t * s.exp() + shift, s.sum(dim=1)

    def _inverse_t(self, x_t: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        shift, s = self._shift_and_log_scale(theta)
        return (x_t - shift) * (-s).exp(), -s.sum(dim=1)


def make_spline_flow(
    dim: int,
    n_layers: int = 4,
    hidden: int = 64,
    n_bins: int = 8,
    tail_bound: float = 5.0,
    dtype: torch.dtype = torch.float64,
    conditioner_layers: int = 2,
    seed: int = 0,
) -> Sequential:
    """``n_layers`` :class:`RQSplineCoupling` layers on :func:`alternating_masks`.

    Starts as the identity; ``seed`` initialises the conditioners' hidden layers.

    Example:
        >>> import torch
        >>> flow = make_spline_flow(2, n_layers=4)
        >>> x, logdet = flow(torch.randn(16, 2, dtype=torch.float64))
    """
    generator = torch.Generator().manual_seed(seed)
    return Sequential(
        *(
            RQSplineCoupling(
                dim, mask, hidden, conditioner_layers, n_bins, tail_bound, dtype, generator
            )
            for mask in alternating_masks(dim, n_layers)
        )
    )
