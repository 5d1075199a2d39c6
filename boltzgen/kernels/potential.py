"""Potentials: the reduced energy and its gradient as one plain function.

A potential maps configurations ``x: [B, *event]`` to ``(u: [B], ∇u: [B, *event])``, with
u = +inf and ∇u = 0 for rows that cannot be evaluated. Kernels receive it at every call,
so a derived target is a function built from others, not a new energy class:

* :func:`from_energy`: an :class:`~boltzgen.energies.base.Energy` (each call charged as
  one force evaluation per row to its counter);
* :func:`tempered`: s·u with one factor or one factor per row (a temperature ladder,
  s_k = T_0 / T_k);
* :func:`interpolated`: (1 − λ)·u_0 + λ·u_1 (annealing from a prior to the target);
* :func:`pulled_back`: U(z) = u(f(z)) − log|det ∂f/∂z|, the target in a flow's latent space.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.flows.base import Flow

Potential = Callable[[Tensor], tuple[Tensor, Tensor]]
"""``x: [B, *event] -> (u: [B], ∇u: [B, *event])``."""


def rows(values: Tensor, like: Tensor) -> Tensor:
    """``values`` of shape ``[]`` or ``[B]`` shaped to broadcast against ``like: [B, *event]``."""
    return values.reshape(values.shape + (1,) * (like.dim() - values.dim()))


def from_energy(energy: Energy) -> Potential:
    """u and ∇u = −F of ``energy`` (detached; ∇u = 0 where u = +inf).

    Example:
        >>> u, grad = from_energy(DoubleWell2D())(torch.zeros(4, 2, dtype=torch.float64))
    """

    def potential(x: Tensor) -> tuple[Tensor, Tensor]:
        u, force = energy.energy_and_force(x)
        return u, -force

    return potential


def tempered(potential: Potential, scale: float | Tensor) -> Potential:
    """s·u and s·∇u, with s a number, ``[]`` or one factor per row ``[B]``.

    For s = T_0 / T this is u reduced at temperature T when u is reduced at T_0
    (Boltzmann factor exp(−U/kT) = exp(−s·u)).
    """

    def scaled(x: Tensor) -> tuple[Tensor, Tensor]:
        u, grad = potential(x)
        if isinstance(scale, Tensor):
            return scale * u, rows(scale, grad) * grad
        return scale * u, scale * grad

    return scaled


def interpolated(start: Potential, end: Potential, lam: float) -> Potential:
    """u_λ = (1 − λ)·u_start + λ·u_end and its gradient; λ = 0 never evaluates ``end``.

    The interpolating energy of stochastic normalizing flows (Wu, Köhler, Noé, arXiv
    2002.06707, §3) with u_start the prior's energy; the geometric annealing path
    π_λ ∝ π_start^{1−λ} π_end^λ of annealed importance sampling and SMC.
    """

    def potential(x: Tensor) -> tuple[Tensor, Tensor]:
        u_0, g_0 = start(x)
        if lam == 0.0:
            return u_0, g_0
        u_1, g_1 = end(x)
        return (1.0 - lam) * u_0 + lam * u_1, (1.0 - lam) * g_0 + lam * g_1

    return potential


def pulled_back(flow: Flow, energy: Energy) -> Potential:
    """U(z) = u(f(z)) − log|det ∂f/∂z| on latents ``z: [B, D]`` and ∇_z U.

    If z ∝ exp(−U) then x = f(z) ∝ exp(−u) (change of variables; NeuTra, Hoffman et al.,
    arXiv 1903.03704; Foreman et al., arXiv 2112.01586). The gradient is the
    vector–Jacobian product ∇_z U = −J_f(z)ᵀ F(f(z)) − ∇_z log|det J_f(z)| by autograd,
    with F = −∇u the target's force (its analytic force where it has one), charged as
    one force evaluation per row to ``energy``.
    """

    def potential(z: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            x, logdet = flow(z)
            u, force = energy.energy_and_force(x.detach())
            (grad,) = torch.autograd.grad(-(x * force).sum() - logdet.sum(), z)
        return (u - logdet).detach(), grad

    return potential
