"""Overdamped Langevin dynamics, Euler–Maruyama: proposals and their transition densities.

One step of the overdamped Langevin equation dx = −∇u dt + √2 dW, discretised with step ε:

    y = x − ε∇u(x) + √(2ε) ξ,     ξ ~ N(0, I),

i.e. the Gaussian kernel k(y | x) = N(y; x − ε∇u(x), 2ε I). Without a Metropolis test
(the unadjusted Langevin algorithm, ULA) its stationary law is exp(−u) only up to O(ε)
(Roberts & Tweedie, "Exponential convergence of Langevin distributions and their
discrete approximations", Bernoulli 2, 1996). Stochastic normalizing flows weight a path
by the ratio of backward to forward kernels, log k(x | y) − log k(y | x) (Wu, Köhler,
Noé, arXiv 2002.06707, eq. 11); MALA (:mod:`~boltzgen.kernels.mala`) uses the same ratio
in its acceptance probability. Log-densities here drop the common constant
−(d/2) log(4πε), which cancels in every ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from boltzgen.kernels.noise import standard_normal
from boltzgen.kernels.potential import Potential


@dataclass(frozen=True)
class LangevinState:
    """Position of ``B`` walkers with the potential evaluated there.

    Attributes:
        x: ``[B, *event]`` configurations.
        energy: ``[B]`` u(x).
        grad: ``[B, *event]`` ∇u(x).
    """

    x: Tensor
    energy: Tensor
    grad: Tensor


@dataclass(frozen=True)
class LangevinInfo:
    """The two transition log-densities of one step x → y (common constant dropped).

    Attributes:
        log_forward: ``[B]`` log k(y | x) = −½|ξ|².
        log_backward: ``[B]`` log k(x | y) = −|x − y + ε∇u(y)|² / (4ε).
    """

    log_forward: Tensor
    log_backward: Tensor


def _sum_event(values: Tensor) -> Tensor:
    return values.reshape(values.shape[0], -1).sum(dim=1)


def noise_scale(step_size: float | Tensor) -> float | Tensor:
    """√(2ε) of a number or a (differentiable) tensor ε."""
    if isinstance(step_size, Tensor):
        return (2 * step_size).sqrt()
    return math.sqrt(2 * step_size)


def proposal(
    x: Tensor, grad: Tensor, step_size: float | Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """y = x − ε∇u(x) + √(2ε) ξ ``[B, *event]`` and the noise ξ drawn for it."""
    noise = standard_normal(x, generator)
    return x - step_size * grad + noise_scale(step_size) * noise, noise


def log_kernel(y: Tensor, x: Tensor, grad_x: Tensor, step_size: float | Tensor) -> Tensor:
    """log k(y | x) = −|y − x + ε∇u(x)|² / (4ε) ``[B]`` (constant dropped)."""
    residual = y - x + step_size * grad_x
    return -_sum_event(residual * residual) / (4 * step_size)


def log_kernel_of_noise(noise: Tensor) -> Tensor:
    """log k(y | x) = −½|ξ|² ``[B]`` for the y drawn from x with noise ξ (constant dropped)."""
    return -0.5 * _sum_event(noise * noise)


def init(x: Tensor, potential: Potential) -> LangevinState:
    """Walkers at ``x: [B, *event]`` (one potential evaluation per walker)."""
    u, grad = potential(x)
    return LangevinState(x, u, grad)


def step(
    generator: torch.Generator,
    state: LangevinState,
    potential: Potential,
    step_size: float | Tensor,
) -> tuple[LangevinState, LangevinInfo]:
    """One unadjusted Euler–Maruyama step of every walker (always moves).

    Returns the new state and both transition log-densities, whose difference
    log k(x | y) − log k(y | x) is the path-weight increment of a stochastic
    normalizing flow. Differentiable in x and ε when the potential is.
    """
    y, noise = proposal(state.x, state.grad, step_size, generator)
    u, grad = potential(y)
    info = LangevinInfo(log_kernel_of_noise(noise), log_kernel(state.x, y, grad, step_size))
    return LangevinState(y, u, grad), info
