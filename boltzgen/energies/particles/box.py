"""Periodic boxes: wrapping, minimum-image separations and lattice starts.

A box is a tensor of side lengths ``[d]`` (an orthorhombic cell with its corner at the
origin). Minimum image: of all periodic copies of particle j, particle i interacts with
the nearest, Δ ← Δ − L·round(Δ/L) per axis, which is exact for any pair cutoff below
half the shortest side (Allen & Tildesley, "Computer Simulation of Liquids", §1.6).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def cubic_box(n_particles: int, density: float, dimension: int) -> Tensor:
    """Side lengths ``[d]`` of the cube (square) holding ``n_particles`` at number ``density``."""
    if not density > 0 or n_particles < 1:
        raise ValueError(f"need n_particles ≥ 1 and density > 0, got {n_particles}, {density}")
    side = (n_particles / density) ** (1.0 / dimension)
    return torch.full((dimension,), side, dtype=torch.float64)


def wrap(x: Tensor, box: Tensor) -> Tensor:
    """Positions folded into the box, each coordinate in [0, L)."""
    return x - box * torch.floor(x / box)


def minimum_image(delta: Tensor, box: Tensor) -> Tensor:
    """Separations ``[..., d]`` replaced by their nearest periodic image."""
    return delta - box * torch.round(delta / box)


def lattice_positions(n_particles: int, box: Tensor, generator: torch.Generator) -> Tensor:
    """``n_particles`` distinct sites ``[N, d]`` of the smallest simple-cubic grid that holds them.

    The sites are chosen at random (by ``generator``) so that particles of every species
    are spread through the box; a short minimisation turns this into a liquid start.
    """
    d = box.numel()
    per_side = math.ceil(n_particles ** (1.0 / d) - 1e-9)
    axes = [torch.arange(per_side, dtype=torch.float64) for _ in range(d)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, d)
    chosen = torch.randperm(grid.shape[0], generator=generator)[:n_particles]
    return (grid[chosen] + 0.5) * (box / per_side)
