"""A target restricted to an allowed region: u(x) where allowed, +∞ elsewhere.

Used to keep one stereoisomer of a molecule. A force field is symmetric under mirror
images, so L- and D-alanine have equal energies and p(x) ∝ exp(−u(x)) holds both with
equal weight; the physical molecule is only L (its inversion barrier is never crossed).
The restricted target p_L(x) ∝ exp(−u(x)) 1[x is L] gives a D sample weight zero, as
Midgley et al. ("Flow annealed importance sampling bootstrap", arXiv 2208.01893) keep
only L-alanine.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from boltzgen.energies.base import Energy


class RestrictedEnergy(Energy):
    """``base`` where ``allowed(x)`` holds, +∞ (weight zero) elsewhere; shares its counter.

    Forces are the base's where allowed and 0 elsewhere (the contract for u = +∞), so an
    MCMC move into the excluded region is always rejected.

    Args:
        base: the unrestricted energy.
        allowed: ``x: [B, *event] -> bool[B]``.
    """

    def __init__(self, base: Energy, allowed: Callable[[Tensor], Tensor]):
        super().__init__(base.event_shape, base.temperature)
        self.base, self.allowed = base, allowed
        self.counter = base.counter

    def __getattr__(self, name: str) -> object:
        """Attributes of the base energy (``device``, ``dtype``, ``kT``) read through."""
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def _energy(self, x: Tensor) -> Tensor:
        u = self.base._energy(x)
        return torch.where(self.allowed(x.detach()), u, torch.full_like(u, math.inf))

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u, f = self.base._force(x)
        ok = self.allowed(x.detach())
        u = torch.where(ok, u, torch.full_like(u, math.inf))
        return u, torch.where(ok.reshape((-1,) + (1,) * (f.dim() - 1)), f, torch.zeros_like(f))

    def at_temperature(self, temperature: float) -> Energy:
        return RestrictedEnergy(self.base.at_temperature(temperature), self.allowed)

    def close(self) -> None:
        self.base.close()
