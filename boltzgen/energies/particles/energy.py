"""Pairwise-additive energies of particles in a periodic box, batched over configurations.

U(x) = Σ_{i<j} ε_ij v(|x_i − x_j|_min² / σ_ij²), with the minimum-image distance and the
cut pair potential v of :mod:`~boltzgen.energies.particles.potentials`; the reduced energy
is u = U / T (k_B = 1, energies in units of ε_AA, lengths of σ_AA). Configurations are
``x: [B, N, d]``; particle i has a fixed species (and diameter), so exchanging the
positions of two particles is the same as exchanging their species — the swap move.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.particles.box import lattice_positions, minimum_image, wrap
from boltzgen.energies.particles.neighbours import (
    PairList,
    cell_pairs,
    cells_per_axis,
    dense_pairs,
)
from boltzgen.energies.particles.potentials import CutInversePowers

NEIGHBOURS = ("auto", "dense", "cells")
DENSE_UP_TO = 400
"""``neighbours: auto`` uses all pairs up to this many particles, a cell list beyond."""
PAIRS_PER_CHUNK = 4_000_000
"""Configurations are evaluated in chunks of about this many candidate pairs."""
MINIMISATION_STEPS = 150
START_JITTER = 0.25
"""Random starts move lattice sites by up to this fraction of the grid spacing."""


@dataclass
class LocalCharge:
    """Fractional evaluations from local moves: one particle's interactions cost 1/N."""

    remainder: float = 0.0

    def charge(self, energy: Energy, evaluations: float) -> None:
        self.remainder += evaluations
        whole = int(self.remainder)
        energy.counter.energy += whole
        self.remainder -= whole


class ParticleEnergy(Energy):
    """u(x) = Σ_{i<j} ε_ij v(r_ij²/σ_ij²) / T in a periodic box.

    Args:
        box: side lengths ``[d]``.
        species: species index per particle ``[N]`` (each particle its own species in a
            continuously polydisperse model).
        diameters: σ_i per particle ``[N]`` (σ_αα of its species for mixtures).
        sigma: σ_ij ``[N, N]``; epsilon: ε_ij ``[N, N]``.
        potential: the cut pair potential v(x), x = r/σ_ij.
        temperature: T in units of ε_AA.
        neighbours: ``dense`` (all pairs), ``cells`` (cell list) or ``auto``.
    """

    def __init__(
        self,
        box: Tensor,
        species: Tensor,
        diameters: Tensor,
        sigma: Tensor,
        epsilon: Tensor,
        potential: CutInversePowers,
        temperature: float,
        neighbours: str = "auto",
    ):
        n, d = species.numel(), box.numel()
        super().__init__((n, d), temperature)
        if neighbours not in NEIGHBOURS:
            raise ValueError(f"neighbours must be one of {NEIGHBOURS}, got {neighbours!r}")
        self.box, self.species, self.diameters = box, species, diameters
        self.sigma2, self.epsilon, self.potential = sigma**2, epsilon, potential
        self.r_max = float(sigma.max()) * potential.x_cut
        if self.r_max >= 0.5 * float(box.min()):
            raise ValueError(
                f"the largest cutoff {self.r_max:.3f} must be below half the box length "
                f"{0.5 * float(box.min()):.3f}: use more particles"
            )
        self.neighbours = self._choose(neighbours)
        self.local_charge = LocalCharge()

    def _choose(self, neighbours: str) -> str:
        """``auto``: a cell list when N > DENSE_UP_TO and the 3^d cells around a particle
        hold at most a quarter of the box (otherwise all pairs are cheaper)."""
        m = cells_per_axis(self.box, self.r_max)
        fits = bool((m >= 3).all())
        if neighbours == "cells" and not fits:
            raise ValueError("the box is too small for a cell list: use neighbours: dense")
        if neighbours == "auto":
            sparse = fits and int(m.prod()) >= 4 * 3 ** m.numel()
            return "cells" if sparse and self.n_particles > DENSE_UP_TO else "dense"
        return neighbours

    @property
    def n_particles(self) -> int:
        return self.event_shape[0]

    def at_temperature(self, temperature: float) -> ParticleEnergy:
        """The same model reduced at ``temperature``, sharing the counter."""
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        view = copy.copy(self)
        view.temperature = float(temperature)
        return view

    def pairs(self, x: Tensor) -> PairList:
        """Interacting-pair candidates of ``x: [B, N, d]``."""
        if self.neighbours == "cells":
            return cell_pairs(x, self.box, self.r_max)
        return dense_pairs(x, self.box)

    def potential_energy(self, x: Tensor) -> Tensor:
        """U(x) ``[B]`` in units of ε_AA (not reduced, not counted)."""
        chunk = max(1, PAIRS_PER_CHUNK // max(1, self.n_particles**2 // 2))
        return torch.cat([self._pair_sum(part) for part in x.split(chunk)])

    def _pair_sum(self, x: Tensor) -> Tensor:
        pairs = self.pairs(x)
        s = pairs.r2 / self.sigma2[pairs.i, pairs.j]
        s = s.where(pairs.mask, s.new_tensor(self.potential.x_cut**2))
        return (self.epsilon[pairs.i, pairs.j] * self.potential(s)).sum(-1)

    def _energy(self, x: Tensor) -> Tensor:
        return self.potential_energy(x) / self.temperature

    def particle_energies(self, x: Tensor, index: Tensor) -> Tensor:
        """Reduced interaction energy ``[B, K]`` of particles ``index: [B, K]`` with all others.

        Σ_{j≠i} ε_ij v(r_ij²/σ_ij²) / T per listed particle i, by direct summation. Charged
        as K/N of an evaluation per configuration, the convention for local moves.
        """
        b, k = index.shape
        x_i = x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))
        r2 = (minimum_image(x_i[:, :, None, :] - x[:, None, :, :], self.box) ** 2).sum(-1)
        s = r2 / self.sigma2[index]
        others = index[..., None] != torch.arange(self.n_particles, device=x.device)
        s = s.where(others, s.new_tensor(self.potential.x_cut**2))
        self.local_charge.charge(self, b * k / self.n_particles)
        return (self.epsilon[index] * self.potential(s)).sum(-1) / self.temperature

    def pair_rows(self, points: Tensor, rows: Tensor, x: Tensor, exclude: Tensor) -> Tensor:
        """Rows of the reduced pair table ``[C, K, N]`` for trial positions, not charged.

        Entry (c, k, m) is ε_{r m} v(|p − x_m|²/σ_{r m}²)/T for the point p = ``points[c, k]``
        ``[C, K, d]`` standing for particle r = ``rows[c, k]`` ``[C, K]``, against particle m
        of ``x: [C, N, d]``; zero where m is listed in ``exclude: [C, E]`` (the moved
        particles). Summing over m gives a particle's interaction energy at p, so a local
        move's Δu is a difference of row sums; the caller charges K/N of an evaluation.
        """
        s = _row_distances2(points, x, self.box) / self.sigma2[rows]
        others = torch.arange(self.n_particles, device=x.device)
        moved = (exclude[:, :, None] == others).any(1)[:, None, :]
        s = s.masked_fill(moved, self.potential.x_cut**2)
        return self.epsilon[rows] * self.potential(s) / self.temperature

    def pair_table(self, x: Tensor) -> Tensor:
        """Reduced pair energies ε_ij v(r_ij²/σ_ij²)/T ``[B, N, N]`` of ``x: [B, N, d]``.

        Symmetric with a zero diagonal; half its sum is u(x). Charged as one evaluation
        per configuration.
        """
        s = _row_distances2(x, x, self.box) / self.sigma2
        diagonal = torch.eye(self.n_particles, dtype=torch.bool, device=x.device)
        s = s.masked_fill(diagonal, self.potential.x_cut**2)
        self.counter.energy += x.shape[0]
        return self.epsilon * self.potential(s) / self.temperature

    @cached_property
    def minimum(self) -> Tensor:
        """A valid start ``[N, d]``: random lattice sites relaxed by steepest descent."""
        return self.random_starts(1, torch.Generator().manual_seed(0), jitter=0.0)[0]

    def random_starts(
        self, n: int, generator: torch.Generator, jitter: float = START_JITTER
    ) -> Tensor:
        """``n`` distinct valid starts ``[n, N, d]``, not charged (set-up).

        Each start puts the particles on its own random choice of sites of the smallest
        simple-cubic (square) grid that holds them, moves each by U[−a, a]^d times the grid
        spacing (a = ``jitter`` < ½, so no two particles coincide), and relaxes the result
        with ``MINIMISATION_STEPS`` steps of steepest descent: a quench, so no pair stays
        in the steep core of its potential.
        """
        sites = [lattice_positions(self.n_particles, self.box, generator) for _ in range(n)]
        x = torch.stack(sites).to(self.box)
        spacing = self.box / math.ceil(self.n_particles ** (1.0 / self.box.numel()) - 1e-9)
        x = x + jitter * spacing * (2 * torch.rand(x.shape, generator=generator, dtype=x.dtype) - 1)
        return relax(self, x, MINIMISATION_STEPS)


def _row_distances2(points: Tensor, x: Tensor, box: Tensor) -> Tensor:
    """Squared minimum-image distances ``[C, K, N]`` of ``points: [C, K, d]`` to ``x: [C, N, d]``.

    One axis at a time, so every operation runs on contiguous ``[C, K, N]`` blocks.
    """
    r2 = points.new_zeros(())
    for a, side in enumerate(box.tolist()):
        delta = points[:, :, a, None] - x[:, None, :, a]
        delta = delta - side * torch.round(delta * (1.0 / side))
        r2 = r2 + delta * delta
    return r2


def relax(energy: ParticleEnergy, x: Tensor, n_steps: int) -> Tensor:
    """Steepest descent on U with an adaptive step (grown ×1.2 on success, halved on failure).

    Set-up, not sampling: the evaluations are not charged. Returns wrapped positions.
    """
    u, force = energy._force(x)
    step = 1e-3
    for _ in range(n_steps):
        move = step * force / force.abs().amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)
        u_new, force_new = energy._force(wrap(x + move, energy.box))
        better = (u_new < u)[:, None, None]
        x = torch.where(better, wrap(x + move, energy.box), x)
        force = torch.where(better, force_new, force)
        u = torch.where(better[:, 0, 0], u_new, u)
        step = min(step * 1.2, 0.1) if bool(better.all()) else step * 0.5
    return x


def inherent_structures(
    energy: ParticleEnergy, x: Tensor, max_iterations: int = 500, tolerance: float = 1e-8
) -> tuple[Tensor, Tensor]:
    """Local minima of U reached from ``x: [B, N, d]`` and their energies per particle ``[B]``.

    The inherent structures of Stillinger & Weber, "Hidden structure in liquids", PRA 25,
    978 (1982): L-BFGS with a strong-Wolfe line search on Σ_b U(x_b), which is separable,
    so every configuration goes to a minimum of its own U. Charged as the evaluations made.
    """
    y = x.detach().clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS(
        [y],
        max_iter=max_iterations,
        tolerance_grad=tolerance,
        tolerance_change=0.0,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimiser.zero_grad()
        total = energy.energy(y).sum() * energy.temperature
        total.backward()
        return total

    optimiser.step(closure)
    minima = wrap(y.detach(), energy.box)
    return minima, energy.potential_energy(minima) / energy.n_particles
