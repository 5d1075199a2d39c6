"""The φ⁴ lattice field theory in two dimensions (periodic L×L lattice).

The action of the tutorial (M. S. Albergo, D. Boyda, D. C. Hackett, G. Kanwar,
K. Cranmer, S. Racanière, D. J. Rezende, P. E. Shanahan, "Introduction to normalizing
flows for lattice field theory", arXiv 2101.08176; Albergo, Kanwar, Shanahan, arXiv
1904.12072), in lattice units with a_μ = 1:

    S[φ] = Σ_x [ −2 Σ_μ φ(x) φ(x+μ̂) + (4 + m²) φ(x)² + λ φ(x)⁴ ],

the reduced energy u = S (temperature 1). Configurations are ``φ: [B, L, L]``; the
force −∂S/∂φ(x) = 2 Σ_μ [φ(x+μ̂) + φ(x−μ̂)] − 2(4 + m²) φ(x) − 4λ φ(x)³ is analytic.
The tutorial's operating point is L = 8, m² = −4, λ = 8 (the broken-symmetry side,
where a Z₂ pair of uniform minima at φ = ±√(−m²/2λ) = ±½ competes).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from boltzgen.energies.lattice.action import LatticeAction
from boltzgen.energies.registry import register_energy_kind


def _neighbour_sum(phi: Tensor) -> Tensor:
    """Σ_μ [φ(x+μ̂) + φ(x−μ̂)] on the torus, ``phi: [B, L, L]``."""
    return phi.roll(1, -1) + phi.roll(-1, -1) + phi.roll(1, -2) + phi.roll(-1, -2)


def checkerboard(length: int) -> list[Tensor]:
    """Even and odd sites ``bool[L, L]`` of an L×L lattice (x₀ + x₁ mod 2)."""
    if length % 2:
        raise ValueError(f"a checkerboard needs an even L, got L = {length}")
    index = torch.arange(length)
    even = (index[:, None] + index[None, :]) % 2 == 0
    return [even, ~even]


@register_energy_kind("phi4")
class Phi4(LatticeAction):
    """u(φ) = Σ_x [−2 Σ_μ φ(x)φ(x+μ̂) + (4 + m²)φ(x)² + λφ(x)⁴] on an L×L torus.

    Args:
        L: lattice extent (the lattice has L² sites).
        m2: the bare mass squared m².
        lam: the quartic coupling λ ≥ 0.
    """

    symmetries = frozenset({"negate"})  # u(−x) = u(x)

    def __init__(self, L: int = 8, m2: float = -4.0, lam: float = 8.0):
        if L < 2 or lam < 0:
            raise ValueError(f"phi4 needs L >= 2 and lam >= 0, got L = {L}, lam = {lam}")
        super().__init__((L, L))
        self.length, self.m2, self.lam = int(L), float(m2), float(lam)

    def _energy(self, x: Tensor) -> Tensor:
        hopping = x * (x.roll(-1, -1) + x.roll(-1, -2))
        local = (4.0 + self.m2) * x**2 + self.lam * x**4
        return (local - 2.0 * hopping).sum(dim=(-2, -1))

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        force = 2.0 * _neighbour_sum(x) - 2.0 * (4.0 + self.m2) * x - 4.0 * self.lam * x**3
        return self._energy(x), force

    def local_action(self, x: Tensor) -> Tensor:
        """S_x = (4 + m²)φ(x)² + λφ(x)⁴ − 2φ(x) Σ_μ[φ(x+μ̂) + φ(x−μ̂)]: ``[B, L, L]``.

        Changing φ on sites none of which neighbour each other (one colour of
        :meth:`independent_sets`) changes u by exactly the sum of the changes of S_x.
        """
        return (4.0 + self.m2) * x**2 + self.lam * x**4 - 2.0 * x * _neighbour_sum(x)

    def independent_sets(self) -> list[Tensor]:
        """The two checkerboard colours ``bool[L, L]`` (L even: no site neighbours its colour)."""
        return checkerboard(self.length)

    def coupling_at_temperature(self, temperature: float) -> str:
        """S_{m², λ}[φ]/T = S_{m², λT}[ψ] for the rescaled field ψ = φ/√T."""
        return (
            f"e^(-S/T) at T = {temperature:g} is this action at lam = {self.lam * temperature:g} "
            f"(m2 unchanged) for the rescaled field phi/sqrt(T): override lam instead"
        )

    @property
    def minimum(self) -> Tensor:
        """A uniform field at the minimum of the per-site potential m²φ² + λφ⁴."""
        value = math.sqrt(-self.m2 / (2 * self.lam)) if self.m2 < 0 and self.lam > 0 else 0.0
        return torch.full(self.event_shape, value, dtype=torch.float64)
