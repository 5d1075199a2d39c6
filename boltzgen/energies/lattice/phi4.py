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

from boltzgen.energies.base import Energy
from boltzgen.energies.registry import register_energy_kind


def _neighbour_sum(phi: Tensor) -> Tensor:
    """Σ_μ [φ(x+μ̂) + φ(x−μ̂)] on the torus, ``phi: [B, L, L]``."""
    return phi.roll(1, -1) + phi.roll(-1, -1) + phi.roll(1, -2) + phi.roll(-1, -2)


@register_energy_kind("phi4")
class Phi4(Energy):
    """u(φ) = Σ_x [−2 Σ_μ φ(x)φ(x+μ̂) + (4 + m²)φ(x)² + λφ(x)⁴] on an L×L torus.

    Args:
        L: lattice extent (the lattice has L² sites).
        m2: the bare mass squared m².
        lam: the quartic coupling λ ≥ 0.
    """

    def __init__(self, L: int = 8, m2: float = -4.0, lam: float = 8.0):
        if L < 2 or lam < 0:
            raise ValueError(f"phi4 needs L >= 2 and lam >= 0, got L = {L}, lam = {lam}")
        super().__init__((L, L), temperature=1.0)
        self.length, self.m2, self.lam = int(L), float(m2), float(lam)

    def _energy(self, x: Tensor) -> Tensor:
        hopping = x * (x.roll(-1, -1) + x.roll(-1, -2))
        local = (4.0 + self.m2) * x**2 + self.lam * x**4
        return (local - 2.0 * hopping).sum(dim=(-2, -1))

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        force = 2.0 * _neighbour_sum(x) - 2.0 * (4.0 + self.m2) * x - 4.0 * self.lam * x**3
        return self._energy(x), force

    @property
    def minimum(self) -> Tensor:
        """A uniform field at the minimum of the per-site potential m²φ² + λφ⁴."""
        value = math.sqrt(-self.m2 / (2 * self.lam)) if self.m2 < 0 and self.lam > 0 else 0.0
        return torch.full(self.event_shape, value, dtype=torch.float64)
