"""Hamiltonian Monte Carlo: momentum draw → leapfrog → Metropolis test on the energy error.

HMC (Duane, Kennedy, Pendleton, Roweth, "Hybrid Monte Carlo", Phys. Lett. B 195, 1987;
Neal, "MCMC using Hamiltonian dynamics", arXiv 1206.1901) samples p(x) ∝ exp(−u(x)) by
adding momenta p ~ N(0, M), simulating H(x, p) = u(x) + ½pᵀM⁻¹p with the leapfrog
integrator (volume preserving and reversible), and accepting the end point with
probability min(1, exp(−ΔH)), ΔH = H(x', p') − H(x, p). With one leapfrog step this is
MALA with step h = ε²/2 (Neal 2011, §5.5.3).

Cost: ``n_leapfrog`` potential evaluations per chain per step (the gradient at the
current point is carried in the state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from boltzgen.kernels.leapfrog import PhasePoint, leapfrog
from boltzgen.kernels.metropolis import accept
from boltzgen.kernels.noise import standard_normal
from boltzgen.kernels.potential import Potential, rows


@dataclass(frozen=True)
class HMCState:
    """Position of ``C`` chains with the potential evaluated there.

    Attributes:
        x: ``[C, *event]`` configurations.
        energy: ``[C]`` u(x).
        grad: ``[C, *event]`` ∇u(x).
    """

    x: Tensor
    energy: Tensor
    grad: Tensor


@dataclass(frozen=True)
class HMCInfo:
    """What one HMC step did, per chain.

    Attributes:
        acceptance_prob: ``[C]`` min(1, exp(−ΔH)); 0 for non-finite proposals.
        accepted: ``[C]`` bool, whether the proposal was taken.
        energy_error: ``[C]`` ΔH = H(x', p') − H(x, p); +inf for non-finite proposals.
    """

    acceptance_prob: Tensor
    accepted: Tensor
    energy_error: Tensor


def init(x: Tensor, potential: Potential) -> HMCState:
    """Chains at ``x: [C, *event]`` (one potential evaluation per chain)."""
    u, grad = potential(x)
    return HMCState(x, u, grad)


def kinetic_energy(p: Tensor, inverse_mass: Tensor | None = None) -> Tensor:
    """K(p) = ½ pᵀM⁻¹p ``[C]`` for momenta ``p: [C, *event]`` and a diagonal M.

    ``inverse_mass``: diagonal of M⁻¹, shape ``event`` (``None``: M = 1).
    """
    scaled = p if inverse_mass is None else p * inverse_mass
    return 0.5 * (p * scaled).reshape(p.shape[0], -1).sum(dim=1)


def draw_momentum(
    like: Tensor, generator: torch.Generator, inverse_mass: Tensor | None = None
) -> Tensor:
    """Momenta p ~ N(0, M) shaped like ``like: [C, *event]``, M = diag(1 / inverse_mass)."""
    z = standard_normal(like, generator)
    return z if inverse_mass is None else z / inverse_mass.sqrt()


def energy_error(start: PhasePoint, end: PhasePoint, inverse_mass: Tensor | None = None) -> Tensor:
    """ΔH = H(end) − H(start) ``[C]``; +inf where u(end) is not finite or ΔH is NaN."""
    h_start = start.energy + kinetic_energy(start.p, inverse_mass)
    h_end = end.energy + kinetic_energy(end.p, inverse_mass)
    delta = h_end - h_start
    return torch.where(torch.isfinite(end.energy) & ~torch.isnan(delta), delta, math.inf)


def metropolis(
    start: PhasePoint,
    end: PhasePoint,
    generator: torch.Generator,
    inverse_mass: Tensor | None = None,
) -> tuple[HMCState, HMCInfo]:
    """Move to ``end`` with probability min(1, exp(−ΔH)) per chain; momenta are discarded.

    A proposal whose energy or kinetic energy is not finite has ΔH = +inf and is
    always rejected.
    """
    delta = energy_error(start, end, inverse_mass)
    accepted, prob = accept(-delta, generator)
    take = rows(accepted, start.x)
    new = HMCState(
        x=torch.where(take, end.x, start.x),
        energy=torch.where(accepted, end.energy, start.energy),
        grad=torch.where(take, end.grad, start.grad),
    )
    return new, HMCInfo(prob, accepted, delta)


def step(
    generator: torch.Generator,
    state: HMCState,
    potential: Potential,
    step_size: float | Tensor,
    n_leapfrog: int,
    inverse_mass: Tensor | None = None,
) -> tuple[HMCState, HMCInfo]:
    """One HMC transition of every chain.

    Args:
        generator: draws the momenta, then one uniform per chain for the test.
        state: the current chains.
        potential: x -> (u, ∇u) of the target.
        step_size: leapfrog ε, a number, ``[]`` or ``[C]``.
        n_leapfrog: leapfrog steps L per proposal.
        inverse_mass: diagonal of M⁻¹, shape ``event`` (``None``: identity).

    Example:
        >>> potential = from_energy(energy)
        >>> state = init(x0, potential)
        >>> state, info = step(generator, state, potential, 0.1, 10)
    """
    p = draw_momentum(state.x, generator, inverse_mass)
    start = PhasePoint(state.x, p, state.energy, state.grad)
    end = leapfrog(potential, start, step_size, n_leapfrog, inverse_mass)
    return metropolis(start, end, generator, inverse_mass)
