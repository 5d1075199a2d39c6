"""The 2D Ising model made continuous by the Gaussian (Hubbard–Stratonovich) transform.

The spin model: Z = Σ_s exp(½ sᵀ K A s) = Σ_s exp(K Σ_⟨ij⟩ s_i s_j), A the adjacency
matrix of the L×L torus. With J = K A + c·I positive definite (c = 4K + δ, δ > 0; the
eigenvalues of A lie in [−4, 4]) and the Gaussian identity
exp(½ sᵀJs) = ((2π)^N det J)^{−1/2} ∫ dx exp(−½ xᵀJ⁻¹x + sᵀx), the spin sum factorises:

    Z = ∫ dx exp(−u(x)),
    u(x) = ½ xᵀJ⁻¹x − Σ_i ln 2cosh x_i + cN/2 + (N/2) ln 2π + ½ ln det J,

so ln ∫ e^{−u} *is* ln Z of the spin model (the constants are kept in u). The joint
density of (s, x) ∝ exp(−½(x − Js)ᵀJ⁻¹(x − Js) + ½ sᵀJs) gives the exact maps both ways:
spins given the field are independent, P(s_i = +1 | x) = σ(2x_i), and the field given
the spins is Gaussian, x | s ~ N(Js, J). Hence ⟨s_i s_j⟩ = ⟨tanh x_i tanh x_j⟩ for i ≠ j.
J is diagonal in Fourier space (eigenvalues K λ_k + c, λ_k = 2cos(2πk₀/L) + 2cos(2πk₁/L)),
so u and its force −∇u = −J⁻¹x + tanh x cost two FFTs. This is the relaxation of
Zhang, Sutton, Storkey, Ghahramani, "Continuous relaxations for discrete Hamiltonian
Monte Carlo" (NeurIPS 2012) as used for flows by Li and Wang, "Neural network
renormalization group", arXiv 1802.02840. Configurations are ``x: [B, L, L]``.
"""

from __future__ import annotations

import math
from functools import cached_property

import torch
from torch import Tensor

from boltzgen.energies.lattice.action import LatticeAction
from boltzgen.energies.lattice.ising_exact import (
    MAX_TRANSFER_L,
    IsingSolution,
    kaufman_ising,
    transfer_matrix_ising,
)
from boltzgen.energies.registry import register_energy_kind


def _neighbour_sum(s: Tensor) -> Tensor:
    return s.roll(1, -1) + s.roll(-1, -1) + s.roll(1, -2) + s.roll(-1, -2)


def _log_2cosh(x: Tensor) -> Tensor:
    return x.abs() + torch.log1p(torch.exp(-2.0 * x.abs()))


@register_energy_kind("ising_gaussian")
class IsingGaussian(LatticeAction):
    """The L×L Ising model at coupling K as a continuous field (Hubbard–Stratonovich).

    Args:
        L: lattice extent.
        K: the coupling K = J/kT > 0 (K_c = ln(1 + √2)/2 ≈ 0.4407).
        delta: δ > 0 in c = 4K + δ, the smallest eigenvalue of J. It changes the
            continuous density, never the spin model.
    """

    symmetries = frozenset({"negate"})  # u(−x) = u(x)

    def __init__(self, L: int = 8, K: float = 0.44, delta: float = 1.0):
        if L < 2 or not K > 0 or not delta > 0:
            raise ValueError(f"ising needs L >= 2, K > 0, delta > 0; got {L}, {K}, {delta}")
        super().__init__((L, L))
        self.length, self.coupling, self.delta = int(L), float(K), float(delta)
        self.shift = 4.0 * self.coupling + self.delta

    @cached_property
    def coupling_eigenvalues(self) -> Tensor:
        """Eigenvalues K λ_k + c of J on the Fourier modes ``[L, L]``."""
        k = 2 * math.pi * torch.arange(self.length, dtype=torch.float64) / self.length
        adjacency = 2 * torch.cos(k)[:, None] + 2 * torch.cos(k)[None, :]
        return self.coupling * adjacency + self.shift

    @cached_property
    def constant(self) -> float:
        """cN/2 + (N/2) ln 2π + ½ ln det J."""
        n = self.length**2
        log_det = float(self.coupling_eigenvalues.log().sum())
        return 0.5 * n * (self.shift + math.log(2 * math.pi)) + 0.5 * log_det

    def _fourier_multiply(self, x: Tensor, power: float) -> Tensor:
        """J^power x, by FFT (J is circulant)."""
        scale = self.coupling_eigenvalues.to(x.dtype) ** power
        return torch.fft.ifft2(torch.fft.fft2(x) * scale).real

    def _energy(self, x: Tensor) -> Tensor:
        quadratic = (x * self._fourier_multiply(x, -1.0)).sum(dim=(-2, -1))
        return 0.5 * quadratic - _log_2cosh(x).sum(dim=(-2, -1)) + self.constant

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        inverse = self._fourier_multiply(x, -1.0)
        u = 0.5 * (x * inverse).sum(dim=(-2, -1)) - _log_2cosh(x).sum(dim=(-2, -1))
        return u + self.constant, torch.tanh(x) - inverse

    def spin_probability(self, x: Tensor) -> Tensor:
        """P(s_i = +1 | x) = σ(2x_i), ``[B, L, L]``."""
        return torch.sigmoid(2.0 * x)

    def sample_spins(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Spins ``[B, L, L]`` (±1) drawn exactly from P(s | x)."""
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
        return torch.where(u < self.spin_probability(x), 1.0, -1.0).to(x.dtype)

    def sample_field(self, spins: Tensor, generator: torch.Generator) -> Tensor:
        """Fields ``[B, L, L]`` drawn exactly from x | s ~ N(Js, J)."""
        noise = torch.randn(spins.shape, generator=generator, dtype=spins.dtype)
        mean = self.coupling * _neighbour_sum(spins) + self.shift * spins
        return mean + self._fourier_multiply(noise, 0.5)

    def coupling_at_temperature(self, temperature: float) -> str:
        """The spin model at T (in units of the card's) is the model at K/T.

        The relaxed field's u/T is no Ising model: the relaxation is rebuilt at K/T.
        """
        return (
            f"the spin model at T = {temperature:g} is this card at "
            f"K = {self.coupling / temperature:g} (u/T of the relaxed field is no Ising "
            "model): override K instead"
        )

    @property
    def minimum(self) -> Tensor:
        """The field of the all-up spin state, J·1 = (4K + c)·1."""
        return torch.full(self.event_shape, 4 * self.coupling + self.shift, dtype=torch.float64)

    @cached_property
    def exact(self) -> IsingSolution:
        """Kaufman's ln Z and energy; ⟨|m|⟩ from the transfer matrix when L ≤ 8."""
        closed = kaufman_ising(self.length, self.coupling)
        if self.length > MAX_TRANSFER_L:
            return closed
        rows = transfer_matrix_ising(self.length, self.coupling)
        return IsingSolution(closed.log_z, closed.energy_density, rows.abs_magnetization)

    @property
    def log_z(self) -> float:
        """ln Z of the spin model = ln ∫ e^{−u(x)} dx."""
        return self.exact.log_z

    def exact_observables(self) -> dict[str, float]:
        """Energy per site ⟨H⟩/N and ⟨|m|⟩ (the latter for L ≤ 8) of the spin model."""
        out = {"energy_density": self.exact.energy_density}
        if self.exact.abs_magnetization is not None:
            out["abs_magnetization"] = self.exact.abs_magnetization
        return out
