"""Which pairs interact: all pairs for small N, a cell list for large N.

Both return a :class:`PairList` of index pairs (i, j), i < j, with their minimum-image
squared distances, broadcastable to ``[B, P]``; entries with ``mask`` false are padding.

Cell list (Allen & Tildesley, "Computer Simulation of Liquids", §5.3): the box is cut
into m_k = ⌊L_k / r_max⌋ ≥ 3 cells per axis, so every pair within r_max lies in the same
or an adjacent cell; each particle is compared with the 3^d cells around its own, which
costs O(N) instead of O(N²). The cell table is padded to the fullest cell, so the work
is batched over configurations with fixed shapes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from boltzgen.energies.particles.box import minimum_image, wrap


@dataclass(frozen=True)
class PairList:
    """Pairs (i, j) and their squared minimum-image distance, all broadcastable to ``[B, P]``."""

    i: Tensor
    j: Tensor
    r2: Tensor
    mask: Tensor


def dense_pairs(x: Tensor, box: Tensor) -> PairList:
    """All N(N−1)/2 pairs of ``x: [B, N, d]``."""
    n = x.shape[1]
    i, j = torch.triu_indices(n, n, offset=1, device=x.device)
    delta = minimum_image(x[:, i] - x[:, j], box)
    r2 = (delta**2).sum(-1)
    return PairList(i[None], j[None], r2, torch.ones_like(i[None], dtype=torch.bool))


def cells_per_axis(box: Tensor, r_max: float) -> Tensor:
    """m_k = ⌊L_k / r_max⌋ cells per axis ``[d]`` (long)."""
    return torch.floor(box / r_max).long()


def cell_pairs(x: Tensor, box: Tensor, r_max: float) -> PairList:
    """Pairs of ``x: [B, N, d]`` in the same or adjacent cells of side ≥ ``r_max``.

    Needs at least three cells per axis (:func:`cells_per_axis`).
    """
    b, n, d = x.shape
    m = cells_per_axis(box, r_max).to(x.device)
    if bool((m < 3).any()):
        raise ValueError(f"a cell list needs ≥ 3 cells per axis, got {m.tolist()}")
    cell = torch.floor(wrap(x, box) / (box / m)).long() % m  # % m: rounding at L, huge |x|
    strides = _strides(m)
    flat = (cell * strides).sum(-1)
    table, width = _cell_table(flat, int(m.prod()))
    neighbours = _neighbour_cells(m, strides)[flat]
    slots = (neighbours[..., None] * width + torch.arange(width, device=x.device)).reshape(b, -1)
    candidates = table.gather(1, slots).reshape(b, n, -1)
    own = torch.arange(n, device=x.device)[None, :, None]
    mask = (candidates < n) & (candidates > own)
    j = candidates.clamp(max=n - 1)
    x_j = x.gather(1, j.reshape(b, -1, 1).expand(-1, -1, d)).reshape(b, n, -1, d)
    r2 = (minimum_image(x[:, :, None, :] - x_j, box) ** 2).sum(-1)
    i = own.expand_as(j)
    return PairList(i.reshape(b, -1), j.reshape(b, -1), r2.reshape(b, -1), mask.reshape(b, -1))


def _strides(m: Tensor) -> Tensor:
    """Row-major strides of a grid with ``m`` cells per axis."""
    ones = torch.ones_like(m[:1])
    return torch.cat([torch.flip(torch.cumprod(torch.flip(m[1:], [0]), 0), [0]), ones])


def _cell_table(flat: Tensor, n_cells: int) -> tuple[Tensor, int]:
    """Members of each cell ``[B, n_cells · width]`` padded with N, and the width."""
    b, n = flat.shape
    counts = torch.zeros(b, n_cells, dtype=torch.long, device=flat.device)
    counts.scatter_add_(1, flat, torch.ones_like(flat))
    width = int(counts.max())
    order = torch.argsort(flat, dim=1, stable=True)
    cells = flat.gather(1, order)
    start = counts.cumsum(1) - counts
    rank = torch.arange(n, device=flat.device)[None] - start.gather(1, cells)
    table = torch.full((b, n_cells * width), n, dtype=torch.long, device=flat.device)
    table.scatter_(1, cells * width + rank, order)
    return table, width


def _neighbour_cells(m: Tensor, strides: Tensor) -> Tensor:
    """Flat indices ``[M, 3^d]`` of each cell's 3^d neighbourhood (itself included)."""
    d = m.numel()
    axes = [torch.arange(int(k), device=m.device) for k in m]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
    offsets = torch.tensor(list(itertools.product((-1, 0, 1), repeat=d)), device=m.device)
    shifted = (coords[:, None, :] + offsets[None]) % m
    return (shifted * strides).sum(-1)
