"""Replica exchange between neighbouring umbrella windows (Hamiltonian replica exchange).

Windows k and k + 1 differ only in their bias, so swapping the configurations x_i (held
by window k) and x_j (window k + 1) of the same chain index is accepted with

    min(1, exp(−Δ)),   Δ = b_k(s_j) + b_{k+1}(s_i) − b_k(s_i) − b_{k+1}(s_j),

in which the unbiased u cancels: an exchange costs no energy evaluation (Sugita, Kitao,
Okamoto, J. Chem. Phys. 113, 6042 (2000); umbrella windows: Sugita & Okamoto, Chem. Phys.
Lett. 329, 261 (2000)). Even and odd neighbour pairs alternate; on a periodic s (a
torsion) the last window also neighbours the first when K is even. A configuration then
travels over the windows, so what one window cannot relax at fixed s (e.g. ψ at fixed
φ) is carried in from windows where it can.

Walkers are laid out window-major, row k·C + c for chain c of window k; exchanges pair
rows of one chain index only, so the C chains stay independent (the jackknife over
chains stays valid).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from boltzgen.kernels import hmc
from boltzgen.reference.umbrella_mbar import Windows

CollectiveFn = Callable[[Tensor], Tensor]
"""s(x) ``[B]`` of configurations ``x: [B, *event]``, differentiable in x."""


def neighbour_pairs(n_windows: int, parity: int, periodic: bool) -> Tensor:
    """``[P, 2]`` disjoint window pairs (k, k + 1) with k ≡ parity (mod 2); the pair
    (K − 1, 0) is added for a periodic s when K is even (for odd K it would overlap)."""
    first = torch.arange(parity % 2, n_windows - 1, 2)
    pairs = torch.stack([first, first + 1], dim=1)
    if periodic and n_windows % 2 == 0 and parity % 2 == 1 and n_windows > 2:
        pairs = torch.cat([pairs, torch.tensor([[n_windows - 1, 0]])])
    return pairs


def bias_and_grad(
    cv: CollectiveFn, windows: Windows, x: Tensor, centres: Tensor
) -> tuple[Tensor, Tensor]:
    """b(s(x)) ``[B]`` (float64) and its gradient in x ``[B, *event]`` (x's dtype), each
    row against its own centre ``centres: [B]``."""
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        b = windows.bias(cv(leaf), centres)
        (grad,) = torch.autograd.grad(b.sum(), leaf)
    return b.detach(), grad.to(x.dtype)


@dataclass
class ExchangeRecord:
    """Exchange statistics: per neighbour pair (k, k + 1 mod K) ``attempted`` and
    ``accepted`` ``[K]``; ``replica [K·C]``, the configuration each row holds (rows
    start holding their own), and ``visited [K·C, K]``, the windows each has visited."""

    attempted: Tensor
    accepted: Tensor
    replica: Tensor
    visited: Tensor

    @classmethod
    def start(cls, n_windows: int, n_chains: int) -> ExchangeRecord:
        rows = n_windows * n_chains
        visited = torch.zeros(rows, n_windows, dtype=torch.bool)
        visited[torch.arange(rows), torch.arange(rows) // n_chains] = True
        zeros = torch.zeros(n_windows, dtype=torch.long)
        return cls(zeros, zeros.clone(), torch.arange(rows), visited)

    def acceptance(self) -> list[float | None]:
        """Accepted / attempted per neighbour pair (``None`` where never attempted)."""
        return [
            float(a) / float(n) if n > 0 else None
            for a, n in zip(self.accepted.tolist(), self.attempted.tolist(), strict=True)
        ]

    def visited_fraction(self) -> float:
        """Mean share of the K windows a configuration has visited."""
        return float(self.visited.float().mean())


def exchange(
    state: hmc.HMCState,
    cv: CollectiveFn,
    windows: Windows,
    n_chains: int,
    parity: int,
    generator: torch.Generator,
    record: ExchangeRecord,
) -> hmc.HMCState:
    """One round of neighbour exchanges over every chain index; ``state`` holds the
    biased totals u + b_k and their gradients, rebuilt for the rows that swapped.

    The unbiased part (u, ∇u) moves with its configuration; only the bias is
    recomputed for the window a configuration lands in. ``record`` is updated in place.
    """
    k = windows.centres.shape[0]
    device = state.x.device
    centres = windows.centres.to(device).repeat_interleave(n_chains)
    pairs = neighbour_pairs(k, parity, windows.period is not None).to(device)
    chains = torch.arange(n_chains, device=device)
    rows_i = (pairs[:, :1] * n_chains + chains).reshape(-1)
    rows_j = (pairs[:, 1:] * n_chains + chains).reshape(-1)
    s = cv(state.x.detach()).to(torch.float64)
    own = windows.bias(s, centres)
    delta = (
        windows.bias(s[rows_j], centres[rows_i])
        + windows.bias(s[rows_i], centres[rows_j])
        - own[rows_i]
        - own[rows_j]
    )
    uniform = torch.rand(delta.shape, generator=generator, device=device, dtype=torch.float64)
    swap = torch.log(uniform) < -delta
    order = torch.arange(k * n_chains, device=device)
    order[rows_i[swap]], order[rows_j[swap]] = rows_j[swap], rows_i[swap]
    _count(record, pairs.cpu(), swap.reshape(-1, n_chains).cpu(), order.cpu(), n_chains)
    b_own, grad_own = bias_and_grad(cv, windows, state.x, centres)
    u0, grad0 = state.energy.to(torch.float64) - b_own, state.grad - grad_own
    x = state.x[order]
    b_new, grad_new = bias_and_grad(cv, windows, x, centres)
    return hmc.HMCState(x, (u0[order] + b_new).to(state.energy.dtype), grad0[order] + grad_new)


def _count(
    record: ExchangeRecord, pairs: Tensor, swapped: Tensor, order: Tensor, n_chains: int
) -> None:
    """Add one round (``swapped: [P, C]``) to ``record``; ``order[r]`` is the row whose
    configuration row r now holds."""
    record.attempted[pairs[:, 0]] += n_chains
    record.accepted[pairs[:, 0]] += swapped.sum(dim=1)
    record.replica = record.replica[order]
    windows_now = torch.arange(order.shape[0]) // n_chains
    record.visited[record.replica, windows_now] = True
