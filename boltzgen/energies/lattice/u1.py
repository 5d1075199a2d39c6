"""Compact U(1) lattice gauge theory in two dimensions with the Wilson action.

Links U_μ(x) = e^{iθ_μ(x)} on an L×L torus, configurations ``θ: [B, 2, L, L]`` (θ[:, μ, x₀, x₁]
is the link leaving site x in direction μ). The plaquette angle

    θ_P(x) = θ_0(x) + θ_1(x + 0̂) − θ_0(x + 1̂) − θ_1(x)

and the Wilson action S = −β Σ_x cos θ_P(x) (reduced energy u = S, temperature 1).
u is 2π-periodic in every link and invariant under gauge transformations
θ_μ(x) → θ_μ(x) + α(x) − α(x + μ̂). Its exact ln Z over links in [−π, π)^{2V},
⟨cos θ_P⟩ and ⟨Q²⟩ come from the character expansion (:mod:`.u1_exact`). This is the
theory of Kanwar et al., "Equivariant flow-based sampling for lattice gauge theory",
arXiv 2003.06413, and of the tutorial arXiv 2101.08176 (L = 8, β = 2).
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

from boltzgen.energies.lattice.action import LatticeAction
from boltzgen.energies.lattice.u1_exact import U1Solution, u1_exact
from boltzgen.energies.registry import register_energy_kind


def plaquette_angles(theta: Tensor) -> Tensor:
    """θ_P(x) = θ_0(x) + θ_1(x+0̂) − θ_0(x+1̂) − θ_1(x), unwrapped: ``[B, L, L]``."""
    t0, t1 = theta[:, 0], theta[:, 1]
    return t0 + t1.roll(-1, -2) - t0.roll(-1, -1) - t1


def gauge_transform(theta: Tensor, alpha: Tensor) -> Tensor:
    """θ_μ(x) + α(x) − α(x + μ̂) for ``alpha: [B, L, L]``."""
    shifted = torch.stack([alpha.roll(-1, -2), alpha.roll(-1, -1)], dim=1)
    return theta + alpha[:, None] - shifted


@register_energy_kind("u1_wilson")
class U1Wilson(LatticeAction):
    """u(θ) = −β Σ_P cos θ_P on an L×L torus of U(1) links ``[B, 2, L, L]``.

    Args:
        L: lattice extent.
        beta: the inverse gauge coupling β > 0.
    """

    symmetries = frozenset({"negate"})  # charge conjugation θ ↦ −θ: cos θ_P is even

    def __init__(self, L: int = 8, beta: float = 2.0):
        if L < 2 or not beta > 0:
            raise ValueError(f"u1_wilson needs L >= 2 and beta > 0, got L = {L}, beta = {beta}")
        super().__init__((2, L, L))
        self.length, self.beta = int(L), float(beta)

    def _energy(self, x: Tensor) -> Tensor:
        return -self.beta * torch.cos(plaquette_angles(x)).sum(dim=(-2, -1))

    def local_action(self, x: Tensor) -> Tensor:
        """S_ℓ = −β Σ_{P ∋ ℓ} cos θ_P over the two plaquettes of each link: ``[B, 2, L, L]``.

        θ_0(x) lies in P(x) and P(x − 1̂), θ_1(x) in P(x) and P(x − 0̂). Changing links
        that share no plaquette (one of :meth:`independent_sets`) changes u by exactly the
        sum of the changes of S_ℓ.
        """
        density = -self.beta * torch.cos(plaquette_angles(x))
        return torch.stack([density + density.roll(1, -1), density + density.roll(1, -2)], 1)

    def independent_sets(self) -> list[Tensor]:
        """Four sets ``bool[2, L, L]``: links of direction μ with x_{1−μ} even or odd."""
        if self.length % 2:
            raise ValueError(f"local link updates need an even L, got L = {self.length}")
        parity = torch.arange(self.length) % 2 == 0
        sets = []
        for mu in range(2):
            for even in (parity, ~parity):
                mask = torch.zeros(2, self.length, self.length, dtype=torch.bool)
                mask[mu] = even[None, :] if mu == 0 else even[:, None]
                sets.append(mask)
        return sets

    def coupling_at_temperature(self, temperature: float) -> str:
        """−β Σ_P cos θ_P / T is the Wilson action at β/T."""
        return (
            f"e^(-S/T) at T = {temperature:g} is the Wilson action at "
            f"beta = {self.beta / temperature:g}: override beta instead"
        )

    @property
    def minimum(self) -> Tensor:
        """The unit configuration θ = 0 (every plaquette cos θ_P = 1)."""
        return torch.zeros(self.event_shape, dtype=torch.float64)

    @cached_property
    def exact(self) -> U1Solution:
        return u1_exact(self.length, self.beta)

    @property
    def log_z(self) -> float:
        """ln ∫_{[−π, π)^{2V}} e^{−u(θ)} dθ by the character expansion."""
        return self.exact.log_z

    def exact_observables(self) -> dict[str, float]:
        """⟨cos θ_P⟩ and ⟨Q²⟩ on this finite torus."""
        return {"plaquette": self.exact.plaquette, "q2": self.exact.q2}
