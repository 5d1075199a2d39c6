"""Exact answers of the 2D Ising model H = −Σ_⟨ij⟩ s_i s_j on an L×L torus at coupling K.

Z = Σ_s exp(K Σ_⟨ij⟩ s_i s_j) (2L² bonds), computed three independent ways:

* :func:`enumerate_ising` — brute force over all 2^(L²) configurations (L ≤ 4).
* :func:`transfer_matrix_ising` — the row transfer matrix T[s, s'] =
  exp(K E(s)/2 + K s·s' + K E(s')/2) over the 2^L states of a row (E(s) = Σ_i s_i s_{i+1}),
  Z = Tr T^L; the bond energy from Tr(T^{L−1} ∂_K T) and the distribution of the
  magnetisation M from the field-twisted traces Tr T(ω)^L = Σ_M Z_M e^{iωM} by a
  discrete Fourier transform (L ≤ 8).
* :func:`kaufman_log_z` — Kaufman's closed form (B. Kaufman, "Crystal statistics. II.
  Partition function evaluated by spinor analysis", Phys. Rev. 76, 1232 (1949); in the
  form of P. D. Beale, "Exact distribution of energies in the two-dimensional Ising
  model", Phys. Rev. Lett. 76, 78 (1996)), any L:

      Z = ½ (2 sinh 2K)^{L²/2} [Π_r 2cosh(Lγ_{2r+1}/2) + Π_r 2sinh(Lγ_{2r+1}/2)
                                + Π_r 2cosh(Lγ_{2r}/2) + Π_r 2sinh(Lγ_{2r}/2)],

  r = 0 … L−1, cosh γ_l = cosh 2K coth 2K − cos(πl/L) for l ≥ 1 and γ_0 = 2K + ln tanh K,
  which is *negative* below K_c = ln(1 + √2)/2 (the sign matters: the fourth product
  changes sign there). Evaluated in log space with signs; the energy is d ln Z / dK by
  autograd in float64.

Energies are per site: e = ⟨H⟩/L² = −(1/L²) d ln Z/dK; |m| = ⟨|Σ_i s_i|⟩/L².
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

CRITICAL_COUPLING = 0.5 * math.log(1.0 + math.sqrt(2.0))
"""K_c = ln(1 + √2)/2 ≈ 0.4407 of the square lattice."""
MAX_ENUMERATION_L = 4
MAX_TRANSFER_L = 8


@dataclass(frozen=True)
class IsingSolution:
    """ln Z, energy per site e = ⟨H⟩/N and ⟨|m|⟩ (``None`` where not computed)."""

    log_z: float
    energy_density: float
    abs_magnetization: float | None


def _bond_sum(spins: Tensor) -> Tensor:
    """Σ_⟨ij⟩ s_i s_j of ``spins: [B, L, L]`` on the torus (2L² bonds): ``[B]``."""
    right = spins * spins.roll(-1, dims=-1)
    down = spins * spins.roll(-1, dims=-2)
    return (right + down).sum(dim=(-2, -1))


def enumerate_ising(length: int, coupling: float) -> IsingSolution:
    """Brute force over all 2^(L²) configurations (L ≤ 4)."""
    if not 1 <= length <= MAX_ENUMERATION_L:
        raise ValueError(f"enumeration needs 1 <= L <= {MAX_ENUMERATION_L}, got L = {length}")
    n = length * length
    codes = torch.arange(2**n)
    bits = (codes[:, None] >> torch.arange(n)) & 1
    spins = (2.0 * bits - 1.0).to(torch.float64).reshape(-1, length, length)
    bonds = _bond_sum(spins)
    log_w = coupling * bonds
    log_z = torch.logsumexp(log_w, 0)
    p = torch.exp(log_w - log_z)
    m = spins.sum(dim=(-2, -1)).abs() / n
    return IsingSolution(float(log_z), float(-(p * bonds).sum() / n), float((p * m).sum()))


def _row_states(length: int) -> Tensor:
    """All 2^L rows of spins ``[2^L, L]`` (float64)."""
    rows = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=length)), dtype=torch.float64)
    return rows


def _transfer(rows: Tensor, coupling: float) -> tuple[Tensor, Tensor]:
    """T[s, s'] and ∂T/∂K for the rows ``[S, L]``."""
    within = (rows * rows.roll(-1, dims=1)).sum(1)
    between = rows @ rows.T
    exponent = 0.5 * within[:, None] + between + 0.5 * within[None, :]
    t = torch.exp(coupling * exponent)
    return t, t * exponent


def _abs_magnetization(rows: Tensor, t: Tensor, scale: float, length: int) -> float:
    """⟨|M|⟩/N from Z_M, recovered from Tr T(ω)^L = Σ_M Z_M e^{iωM} at ω_q = πq/(N+1)."""
    n = length * length
    q = torch.arange(n + 1, dtype=torch.float64)
    omega = math.pi * q / (n + 1)
    row_m = rows.sum(1)
    phase = torch.exp(0.5j * omega[:, None] * row_m[None, :])
    twisted = phase[:, :, None] * (t / scale).to(torch.complex128)[None] * phase[:, None, :]
    traces = torch.linalg.matrix_power(twisted, length).diagonal(dim1=-2, dim2=-1).sum(-1)
    j = torch.arange(n + 1, dtype=torch.float64)
    kernel = torch.exp(-2j * math.pi * q[:, None] * j[None, :] / (n + 1))
    z_j = ((kernel * (torch.exp(1j * omega * n) * traces)[:, None]).sum(0) / (n + 1)).real
    m_abs = (2 * j - n).abs() / n
    return float((z_j * m_abs).sum() / z_j.sum())


def transfer_matrix_ising(
    length: int, coupling: float, magnetization: bool = True
) -> IsingSolution:
    """ln Z, e and (if ``magnetization``) ⟨|m|⟩ from the 2^L × 2^L row transfer matrix."""
    if not 2 <= length <= MAX_TRANSFER_L:
        raise ValueError(f"the transfer matrix needs 2 <= L <= {MAX_TRANSFER_L}, got L = {length}")
    rows = _row_states(length)
    t, dt = _transfer(rows, coupling)
    eigenvalues, vectors = torch.linalg.eigh(t)
    top = float(eigenvalues[-1])
    ratio = eigenvalues / top
    trace = (ratio**length).sum()
    log_z = length * math.log(top) + float(trace.log())
    diag = ((vectors.T @ dt @ vectors).diagonal()) / top
    bonds = length * float((ratio ** (length - 1) * diag).sum() / trace)
    m = _abs_magnetization(rows, t, top, length) if magnetization else None
    return IsingSolution(log_z, -bonds / (length * length), m)


def _log_2cosh(a: Tensor) -> Tensor:
    return a.abs() + torch.log1p(torch.exp(-2 * a.abs()))


def _log_abs_2sinh(a: Tensor) -> Tensor:
    return a.abs() + torch.log(-torch.expm1(-2 * a.abs()))


def _signed_logsumexp(logs: Tensor, signs: Tensor) -> Tensor:
    top = logs.max()
    return top + torch.log((signs * torch.exp(logs - top)).sum())


def kaufman_log_z(length: int, coupling: Tensor | float) -> Tensor:
    """ln Z of the L×L torus by Kaufman's formula (differentiable in ``coupling``)."""
    k = torch.as_tensor(coupling, dtype=torch.float64)
    l_index = torch.arange(2 * length, dtype=torch.float64)
    c = torch.cosh(2 * k) / torch.tanh(2 * k) - torch.cos(math.pi * l_index[1:] / length)
    gamma = torch.cat([(2 * k + torch.log(torch.tanh(k)))[None], torch.acosh(c)])
    half = 0.5 * length * gamma
    odd, even = half[1::2], half[0::2]
    logs = torch.stack(
        [
            _log_2cosh(odd).sum(),
            _log_abs_2sinh(odd).sum(),
            _log_2cosh(even).sum(),
            _log_abs_2sinh(even).sum(),
        ]
    )
    signs = torch.stack(
        [torch.ones(()), torch.sign(odd).prod(), torch.ones(()), torch.sign(even).prod()]
    ).to(torch.float64)
    prefactor = 0.5 * length * length * torch.log(2 * torch.sinh(2 * k)) - math.log(2.0)
    return prefactor + _signed_logsumexp(logs, signs)


def kaufman_ising(length: int, coupling: float) -> IsingSolution:
    """ln Z and e by Kaufman's closed form (any L); |m| has no closed form (``None``)."""
    k = torch.tensor(float(coupling), dtype=torch.float64, requires_grad=True)
    log_z = kaufman_log_z(length, k)
    (d_log_z,) = torch.autograd.grad(log_z, k)
    return IsingSolution(float(log_z.detach()), -float(d_log_z) / (length * length), None)
