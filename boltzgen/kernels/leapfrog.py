"""The leapfrog (velocity Verlet) integrator of Hamilton's equations for H = u(x) + ½pᵀM⁻¹p.

Each step is a half kick, a drift and a half kick (Neal, "MCMC using Hamiltonian
dynamics", arXiv 1206.1901, eq. 5.18–5.20):

    p ← p − ½ε ∇u(x),    x ← x + ε M⁻¹p,    p ← p − ½ε ∇u(x).

The map is symplectic and reversible: integrating from the end point with negated
momenta returns to the start. The energy error is O(ε²) over a fixed time.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from boltzgen.kernels.potential import Potential, rows


@dataclass(frozen=True)
class PhasePoint:
    """A point of phase space for every chain.

    Attributes:
        x: ``[C, *event]`` positions.
        p: ``[C, *event]`` momenta.
        energy: ``[C]`` potential energy u(x).
        grad: ``[C, *event]`` ∇u(x).
    """

    x: Tensor
    p: Tensor
    energy: Tensor
    grad: Tensor


def leapfrog(
    potential: Potential,
    start: PhasePoint,
    step_size: float | Tensor,
    n_steps: int,
    inverse_mass: Tensor | None = None,
) -> PhasePoint:
    """``n_steps`` leapfrog steps from ``start`` (its gradient already evaluated).

    Args:
        potential: x -> (u, ∇u), called once per step.
        start: the initial point.
        step_size: ε, a number, ``[]`` or ``[C]`` (one per chain); a tensor is cast to the
            dtype of the positions, which the trajectory keeps.
        n_steps: number of leapfrog steps L ≥ 1.
        inverse_mass: diagonal of M⁻¹, shape ``event`` (``None``: identity).

    Example:
        >>> end = leapfrog(from_energy(energy), PhasePoint(x, p, u, grad), 0.1, 10)
    """
    if n_steps < 1:
        raise ValueError(f"leapfrog needs n_steps ≥ 1, got {n_steps}")
    eps = rows(step_size.to(start.x.dtype), start.x) if isinstance(step_size, Tensor) else step_size
    inv_m = 1.0 if inverse_mass is None else inverse_mass
    x, p, u, grad = start.x, start.p, start.energy, start.grad
    for _ in range(n_steps):
        p = p - 0.5 * eps * grad
        x = x + eps * inv_m * p
        u, grad = potential(x)
        p = p - 0.5 * eps * grad
    return PhasePoint(x, p, u, grad)
