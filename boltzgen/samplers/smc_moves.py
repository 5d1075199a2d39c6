"""The particles of sequential Monte Carlo and the moves that leave each annealed target
invariant.

Stage k of :class:`boltzgen.samplers.smc.SMCSampler` targets π_β(x) ∝ q(x)^{1−β} e^{−β u(x)},
i.e. the potential u_β = −(1−β) log q + β u (Arbel, Matthews, Doucet, "Annealed flow
transport Monte Carlo", ICML 2021; the SBG paper, arXiv 2502.18462). A :class:`Particles`
batch carries both terms and their gradients, so that reweighting (the work u + log q) and
the next move need no second evaluation. The moves are MALA or ULA
(:func:`langevin_step`) and HMC (:func:`hmc_step`) on u_β.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from boltzgen.kernels import hmc, langevin, mala
from boltzgen.kernels.leapfrog import PhasePoint, leapfrog
from boltzgen.kernels.metropolis import accept, acceptance_probability


@dataclass(frozen=True)
class Particles:
    """Particles with the target and flow terms of u_β evaluated at them.

    Attributes:
        x: ``[n, *event]`` configurations.
        energy: ``[n]`` target u(x) (+inf for failed configurations).
        force: ``[n, *event]`` −∇u(x) (0 where u is +inf).
        log_q: ``[n]`` flow log-density log q(x) (−inf where not finite).
        grad_log_q: ``[n, *event]`` ∇log q(x) (0 where not finite).
    """

    x: Tensor
    energy: Tensor
    force: Tensor
    log_q: Tensor
    grad_log_q: Tensor

    def select(self, index: Tensor) -> Particles:
        """The particles at ``index: [m]`` (resampling)."""
        return Particles(*(t[index] for t in self._fields()))

    def where(self, take: Tensor, other: Particles) -> Particles:
        """``other``'s particles where ``take: bool[n]``, these elsewhere."""
        rows = take.reshape((-1,) + (1,) * (self.x.dim() - 1))
        return Particles(
            *(
                torch.where(take if a.dim() == 1 else rows, b, a)
                for a, b in zip(self._fields(), other._fields(), strict=True)
            )
        )

    def _fields(self) -> tuple[Tensor, ...]:
        return self.x, self.energy, self.force, self.log_q, self.grad_log_q

    def annealed_energy(self, beta: float) -> Tensor:
        """u_β = −(1−β) log q + β u ``[n]``; +inf where either term is not finite."""
        ok = torch.isfinite(self.energy) & torch.isfinite(self.log_q)
        u_beta = beta * self.energy.where(ok, 0.0) - (1.0 - beta) * self.log_q.where(ok, 0.0)
        return torch.where(ok, u_beta, math.inf)

    def annealed_grad(self, beta: float) -> Tensor:
        """∇u_β = −((1−β) ∇log q + β F) ``[n, *event]``."""
        return -((1.0 - beta) * self.grad_log_q + beta * self.force)

    def work(self) -> Tensor:
        """u + log q ``[n]`` (+inf if either is not finite); the increment is −Δβ times this."""
        ok = torch.isfinite(self.energy) & torch.isfinite(self.log_q)
        return torch.where(ok, self.energy + self.log_q, math.inf)


Evaluate = Callable[[Tensor], Particles]
"""Evaluates the target and flow terms at ``x: [n, *event]``."""


def metropolis_select(
    current: Particles, proposal: Particles, log_alpha: Tensor, generator: torch.Generator
) -> tuple[Particles, Tensor]:
    """Take ``proposal`` where log U < log α, U ~ U(0, 1), per particle
    (:func:`boltzgen.kernels.metropolis.accept`).

    Returns the new particles and the acceptance probabilities min(1, exp(log α)) ``[n]``;
    a NaN log α (both points failed) is a rejection with probability 0.
    """
    accepted, prob = accept(log_alpha, generator)
    return current.where(accepted, proposal), prob


def langevin_step(
    evaluate: Evaluate,
    current: Particles,
    beta: float,
    step_size: float,
    generator: torch.Generator,
    adjusted: bool = True,
) -> tuple[Particles, Tensor]:
    """One Langevin step on u_β: MALA (``adjusted``) or ULA.

    Proposal y = x − ε∇u_β(x) + √(2ε) ξ with ξ ~ N(0, I)
    (:func:`boltzgen.kernels.langevin.proposal`), i.e. the kernel
    k(y | x) = N(y; x − ε∇u_β(x), 2ε I). MALA (:mod:`boltzgen.kernels.mala`) accepts
    with probability min(1, α),

        log α = u_β(x) − u_β(y) + log k(x | y) − log k(y | x),

    which makes the kernel π_β-reversible. ULA always moves (except to configurations
    whose u_β is not finite) and is biased at O(ε); it returns the α that MALA would have
    used, at no extra cost, so that its step size can be adapted too.

    Returns the particles after the step and the acceptance probabilities ``[n]``.
    """
    y, noise = langevin.proposal(current.x, current.annealed_grad(beta), step_size, generator)
    proposal = evaluate(y)
    log_back = langevin.log_kernel(current.x, y, proposal.annealed_grad(beta), step_size)
    u_y = proposal.annealed_energy(beta)
    log_alpha = mala.log_acceptance(
        current.annealed_energy(beta), u_y, log_back, langevin.log_kernel_of_noise(noise)
    )
    if adjusted:
        return metropolis_select(current, proposal, log_alpha, generator)
    moved = current.where(torch.isfinite(u_y), proposal)
    return moved, acceptance_probability(log_alpha)


class _AnnealedPotential:
    """u_β as a potential ``x -> (u_β, ∇u_β)`` that keeps the particles it evaluated last
    (``start`` before its first call)."""

    def __init__(self, evaluate: Evaluate, beta: float, start: Particles):
        self.evaluate, self.beta, self.last = evaluate, beta, start

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.last = self.evaluate(x)
        return self.last.annealed_energy(self.beta), self.last.annealed_grad(self.beta)


def hmc_step(
    evaluate: Evaluate,
    current: Particles,
    beta: float,
    step_size: float,
    n_leapfrog: int,
    generator: torch.Generator,
) -> tuple[Particles, Tensor]:
    """One HMC step on u_β (unit mass): momenta p ~ N(0, I), ``n_leapfrog`` leapfrog steps,
    and a Metropolis test on ΔH, H = u_β(x) + ½|p|² (Neal, "MCMC using Hamiltonian
    dynamics", arXiv 1206.1901; the kernels of :mod:`boltzgen.kernels.hmc`).

    The end point of the trajectory keeps its target energy, force and flow terms
    separately (not only u_β) so that the next reweighting needs no extra evaluation.
    Returns the particles and the acceptance probabilities ``[n]``.
    """
    p0 = hmc.draw_momentum(current.x, generator)
    start = PhasePoint(current.x, p0, current.annealed_energy(beta), current.annealed_grad(beta))
    potential = _AnnealedPotential(evaluate, beta, current)
    end = leapfrog(potential, start, step_size, n_leapfrog)
    return metropolis_select(current, potential.last, -hmc.energy_error(start, end), generator)
