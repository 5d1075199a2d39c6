"""The Flow contract, composition, and priors.

A flow is a bijection x = f(z) from latent to configuration space. Both directions
return their output and the log-determinant of their own Jacobian, once:

    forward(z) -> (x, log|det ∂f/∂z|)        inverse(x) -> (z, log|det ∂f⁻¹/∂x|)

so that the model density is log q(x) = log p_Z(z) − log|det ∂f/∂z| (Rezende &
Mohamed, "Variational inference with normalizing flows", arXiv 1505.05770).
Flows in this package act on flat vectors ``[B, D]``; :class:`Flatten` adapts an
event shape such as ``(N, 3)``.
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor, nn


class Flow(nn.Module, abc.ABC):
    """A bijection with log-determinants: ``forward(z)`` and ``inverse(x)``."""

    @abc.abstractmethod
    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Latent ``z: [B, D]`` → ``(x: [B, D], log|det ∂x/∂z|: [B])``."""

    @abc.abstractmethod
    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Configuration ``x: [B, D]`` → ``(z: [B, D], log|det ∂z/∂x|: [B])``."""


class Sequential(Flow):
    """Composition f = f_K ∘ … ∘ f_1; log-determinants add."""

    def __init__(self, *layers: Flow):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        logdet = z.new_zeros(z.shape[0])
        for layer in self.layers:
            z, ld = layer(z)
            logdet = logdet + ld
        return z, logdet

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for layer in reversed(self.layers):
            x, ld = layer.inverse(x)
            logdet = logdet + ld
        return x, logdet


class Flatten(Flow):
    """Reshapes ``[B, D]`` latents to ``[B, *event_shape]`` configurations (log-det 0)."""

    def __init__(self, event_shape: tuple[int, ...]):
        super().__init__()
        self.event_shape = tuple(event_shape)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z.reshape((z.shape[0], *self.event_shape)), z.new_zeros(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.reshape(x.shape[0], -1), x.new_zeros(x.shape[0])


class Prior(nn.Module, abc.ABC):
    """A latent density p_Z with exact sampling."""

    dim: int

    @abc.abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws ``[n, D]``; randomness only from ``generator``."""

    @abc.abstractmethod
    def log_prob(self, z: Tensor) -> Tensor:
        """Normalised log-density ``[B]`` of ``z: [B, D]``."""

    def energy(self, z: Tensor) -> Tensor:
        """The prior's reduced energy u_Z(z) = −log p_Z(z) ``[B]``."""
        return -self.log_prob(z)


class GaussianPrior(Prior):
    """Diagonal normal N(mean, diag(std²)) in D dimensions (standard normal by default)."""

    def __init__(
        self,
        dim: int,
        mean: Tensor | None = None,
        std: Tensor | None = None,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        self.dim = int(dim)
        mean = torch.zeros(dim, dtype=dtype) if mean is None else mean.to(dtype)
        std = torch.ones(dim, dtype=dtype) if std is None else std.to(dtype)
        if mean.shape != (dim,) or std.shape != (dim,) or not bool((std > 0).all()):
            raise ValueError(f"mean and std must have shape [{dim}] with std > 0")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(
            n, self.dim, generator=generator, dtype=self.mean.dtype, device=self.mean.device
        )
        return self.mean + self.std * eps

    def log_prob(self, z: Tensor) -> Tensor:
        r = (z - self.mean) / self.std
        log_norm = self.std.log().sum() + 0.5 * self.dim * math.log(2 * math.pi)
        return -0.5 * (r * r).sum(dim=-1) - log_norm
