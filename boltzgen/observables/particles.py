"""Observables of particle configurations: energy per particle, g_αβ(r), F_s(k, t), overlap.

Configurations are ``x: [..., N, d]`` in a periodic box with side lengths ``box: [d]``;
trajectories are ``[T, N, d]`` with positions *not* folded into the box (displacements
must be continuous). Definitions follow Hansen & McDonald, "Theory of Simple Liquids",
and, for the glass observables, Kob & Andersen, PRE 51, 4626 (1995) and Berthier &
Biroli, "Theoretical perspective on the glass transition", Rev. Mod. Phys. 83, 587 (2011).
"""

from __future__ import annotations

import math

import torch
from scipy import special
from torch import Tensor


def energy_per_particle(u: Tensor, temperature: float, n_particles: int) -> Tensor:
    """U/N from reduced energies u = U/T ``[B]`` (units of ε_AA)."""
    return u * temperature / n_particles


def _minimum_image(delta: Tensor, box: Tensor) -> Tensor:
    return delta - box * torch.round(delta / box)


def partial_rdf(
    x: Tensor, box: Tensor, species: Tensor, alpha: int, beta: int, r_max: float, n_bins: int
) -> tuple[Tensor, Tensor]:
    """g_αβ(r) at bin centres ``[n_bins]`` averaged over configurations ``x: [B, N, d]``.

    g_αβ(r) = V/(N_α N_β) ⟨Σ_{i∈α} Σ_{j∈β, j≠i} δ(r − r_ij)⟩ / s_d(r), with s_d(r) dr the
    volume of the shell (4πr² dr in 3-D, 2πr dr in 2-D); r_max at most half the box.
    """
    a, b = torch.nonzero(species == alpha)[:, 0], torch.nonzero(species == beta)[:, 0]
    delta = _minimum_image(x[:, a, None, :] - x[:, None, b, :], box)
    r = delta.norm(dim=-1)
    distinct = a[:, None] != b[None, :]
    edges = torch.linspace(0.0, r_max, n_bins + 1, dtype=x.dtype)
    counts = torch.histc(r[:, distinct], bins=n_bins, min=0.0, max=r_max)
    d = box.numel()
    shell = math.pi ** (d / 2) / math.gamma(d / 2 + 1) * (edges[1:] ** d - edges[:-1] ** d)
    ideal = x.shape[0] * a.numel() * b.numel() / float(box.prod()) * shell
    return 0.5 * (edges[1:] + edges[:-1]), counts / ideal


def self_intermediate_scattering(trajectory: Tensor, k: float, lags: Tensor) -> Tensor:
    """F_s(k, t) = ⟨(1/N) Σ_j ⟨exp(i k·Δr_j(t))⟩_k̂⟩ at ``lags`` (frames), ``trajectory: [T, N, d]``.

    The average over directions of k is sin(kr)/(kr) in 3-D and J₀(kr) in 2-D; time
    origins are averaged over all available frames. F_s(k, 0) = 1.
    """
    d = trajectory.shape[-1]
    out = []
    for lag in lags.tolist():
        r = (trajectory[lag:] - trajectory[: trajectory.shape[0] - lag]).norm(dim=-1)
        out.append(_isotropic_phase(k * r, d).mean())
    return torch.stack(out)


def _isotropic_phase(kr: Tensor, d: int) -> Tensor:
    if d == 3:
        return torch.sinc(kr / math.pi)
    if d == 2:
        return torch.from_numpy(special.j0(kr.numpy())).to(kr)
    return torch.cos(kr)


def overlap(trajectory: Tensor, lags: Tensor, a: float = 0.3) -> Tensor:
    """Q(t) = ⟨(1/N) Σ_j θ(a − |Δr_j(t)|)⟩ at ``lags``: the fraction of particles still within a."""
    out = []
    for lag in lags.tolist():
        r = (trajectory[lag:] - trajectory[: trajectory.shape[0] - lag]).norm(dim=-1)
        out.append((r < a).to(trajectory.dtype).mean())
    return torch.stack(out)
