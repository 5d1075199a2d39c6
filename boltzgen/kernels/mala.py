"""The Metropolis-adjusted Langevin algorithm: a Langevin proposal and a Metropolis test.

Roberts & Tweedie, "Exponential convergence of Langevin distributions and their discrete
approximations", Bernoulli 2, 1996. The proposal y = x − ε∇u(x) + √(2ε)ξ
(:func:`~boltzgen.kernels.langevin.proposal`) is accepted with probability min(1, α),

    log α = u(x) − u(y) + log k(x | y) − log k(y | x),

which makes the kernel exp(−u)-reversible for any ε > 0.

Cost: one potential evaluation per walker per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from boltzgen.kernels.langevin import (
    LangevinState,
    log_kernel,
    log_kernel_of_noise,
    proposal,
)
from boltzgen.kernels.metropolis import accept
from boltzgen.kernels.potential import Potential, rows


@dataclass(frozen=True)
class MALAInfo:
    """What one MALA step did, per walker.

    Attributes:
        acceptance_prob: ``[B]`` min(1, α); 0 for non-finite proposals.
        accepted: ``[B]`` bool.
    """

    acceptance_prob: Tensor
    accepted: Tensor


def log_acceptance(
    energy_x: Tensor, energy_y: Tensor, log_backward: Tensor, log_forward: Tensor
) -> Tensor:
    """log α = u(x) − u(y) + log k(x | y) − log k(y | x) ``[B]``."""
    return energy_x - energy_y + log_backward - log_forward


def step(
    generator: torch.Generator,
    state: LangevinState,
    potential: Potential,
    step_size: float | Tensor,
) -> tuple[LangevinState, MALAInfo]:
    """One MALA transition of every walker (state from :func:`~boltzgen.kernels.langevin.init`).

    Example:
        >>> potential = from_energy(energy)
        >>> state = langevin.init(x0, potential)
        >>> state, info = step(generator, state, potential, 0.05)
    """
    y, noise = proposal(state.x, state.grad, step_size, generator)
    u_y, grad_y = potential(y)
    log_alpha = log_acceptance(
        state.energy, u_y, log_kernel(state.x, y, grad_y, step_size), log_kernel_of_noise(noise)
    )
    accepted, prob = accept(log_alpha, generator)
    take = rows(accepted, state.x)
    new = LangevinState(
        torch.where(take, y, state.x),
        torch.where(accepted, u_y, state.energy),
        torch.where(take, grad_y, state.grad),
    )
    return new, MALAInfo(prob, accepted)
