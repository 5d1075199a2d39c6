"""Swap Monte Carlo: local displacements mixed with exchanges of particle diameters.

Ninarello, Berthier & Coslovich, "Models and algorithms for the next generation of glass
transition studies", PRX 7, 021039 (2017), arXiv 1704.08864; Berthier, Coslovich,
Ninarello & Ozawa, "Equilibrium sampling of hard spheres up to the jamming density and
beyond", PRL 116, 238002 (2016), arXiv 1511.06182. Each elementary move is, with
probability 1 − p_swap, a displacement of one random particle i by δ ~ U[−Δ, Δ]^d, and,
with probability p_swap, an exchange of the diameters (species) of two random particles
i, j, attempted only when they differ in species and |σ_i − σ_j| < δσ_max. Both
proposals are symmetric, so the Metropolis test min(1, exp(−Δu)) makes each move
reversible with respect to exp(−u). Particle i has a fixed species here, so exchanging
species of i and j is exchanging their positions; the pair term v_ij does not change and
Δu = Δe_i + Δe_j, with e_i the interaction energy of particle i (for a displacement
Δu = Δe_i). p_swap = 0 is the plain local Metropolis Monte Carlo of Metropolis et al.,
J. Chem. Phys. 21, 1087 (1953).

A sweep is N elementary moves. The move type is drawn once per elementary move for all
chains (independently of their states, so every chain is a valid chain of the mixture
kernel) so that the batch computes one particle's interactions, or two.

Cost, the convention for local moves: computing one particle's interactions with all
others costs 1/N of an energy evaluation. A displacement computes e_i before and after
(2/N), a swap e_i and e_j before and after (4/N), an ineligible swap nothing. See
:func:`swap_mc_evaluations`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzgen.energies.particles import ParticleEnergy
from boltzgen.kernels.metropolis import accept
from boltzgen.kernels.noise import uniform
from boltzgen.records import CostMeter, WeightedSamples


@dataclass(frozen=True)
class SwapMCConfig:
    """Settings of a swap Monte Carlo run.

    Args:
        step_size: Δ, the largest displacement per axis (σ_AA units).
        swap_probability: p_swap, the probability that an elementary move is a swap
            (Ninarello et al. use 0.2); 0 gives local Metropolis Monte Carlo.
        max_diameter_difference: δσ_max, swaps only between |σ_i − σ_j| below it
            (inf: any two particles of different species).
        record_every: sweeps between recorded configurations.
    """

    step_size: float = 0.1
    swap_probability: float = 0.2
    max_diameter_difference: float = math.inf
    record_every: int = 1


@dataclass(frozen=True)
class SwapMCState:
    """Chains ``x: [C, N, d]`` and their reduced energies ``u: [C]``."""

    x: Tensor
    u: Tensor


@dataclass(frozen=True)
class SwapMCInfo:
    """Accepted and attempted displacements and swaps, summed over chains."""

    displacements_accepted: int
    displacements: int
    swaps_accepted: int
    swaps: int


def _place(x: Tensor, index: Tensor, values: Tensor) -> Tensor:
    """``x`` with rows ``index: [C, K]`` of each chain replaced by ``values: [C, K, d]``."""
    return x.scatter(1, index[..., None].expand_as(values), values)


def _rows(x: Tensor, index: Tensor) -> Tensor:
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


class SwapMonteCarlo:
    """Swap (p_swap > 0) or local (p_swap = 0) Metropolis Monte Carlo on a particle energy."""

    def __init__(self, energy: ParticleEnergy, config: SwapMCConfig):
        if not 0.0 <= config.swap_probability <= 1.0:
            raise ValueError(f"swap_probability must lie in [0, 1], got {config.swap_probability}")
        self.energy, self.config = energy, config

    def init(self, x: Tensor) -> SwapMCState:
        """Start chains at ``x: [C, N, d]`` (C energy evaluations)."""
        return SwapMCState(x, self.energy.energy(x))

    def move(
        self, state: SwapMCState, generator: torch.Generator
    ) -> tuple[SwapMCState, Tensor, bool]:
        """One elementary move of every chain: the state, accept flags ``[C]``, whether a swap."""
        c, n = state.x.shape[:2]
        is_swap = float(torch.rand((), generator=generator)) < self.config.swap_probability
        pick = torch.randint(n, (c, 2 if is_swap else 1), generator=generator)
        if is_swap:
            eligible = self._eligible(pick)
            proposal = _place(state.x, pick, _rows(state.x, pick.flip(1)))
        else:
            eligible = torch.ones(c, dtype=torch.bool)
            step = (2 * uniform(state.x[:, :1], generator) - 1) * self.config.step_size
            proposal = _place(state.x, pick, _rows(state.x, pick) + step)
        delta = self._delta_u(state.x[eligible], proposal[eligible], pick[eligible])
        ok, _ = accept(-delta, generator)
        accepted = torch.zeros(c, dtype=torch.bool)
        accepted[eligible] = ok
        u = state.u.clone()
        u[eligible] = torch.where(ok, u[eligible] + delta, u[eligible])
        x = torch.where(accepted[:, None, None], proposal, state.x)
        return SwapMCState(x, u), accepted, is_swap

    def _eligible(self, pick: Tensor) -> Tensor:
        species, diameters = self.energy.species[pick], self.energy.diameters[pick]
        different = species[:, 0] != species[:, 1]
        close = (diameters[:, 0] - diameters[:, 1]).abs() < self.config.max_diameter_difference
        return different & close

    def _delta_u(self, x: Tensor, proposal: Tensor, pick: Tensor) -> Tensor:
        """Δu = Σ_k [e_k(proposal) − e_k(x)] over the moved particles k."""
        if x.shape[0] == 0:
            return x.new_zeros(0)
        both = self.energy.particle_energies(torch.cat([x, proposal]), pick.repeat(2, 1))
        before, after = both.chunk(2)
        return (after - before).sum(-1)

    def sweep(
        self, state: SwapMCState, generator: torch.Generator
    ) -> tuple[SwapMCState, SwapMCInfo]:
        """N elementary moves of every chain."""
        counts = [0, 0, 0, 0]
        for _ in range(self.energy.n_particles):
            state, accepted, is_swap = self.move(state, generator)
            counts[2 * is_swap] += int(accepted.sum())
            counts[2 * is_swap + 1] += accepted.numel()
        return state, SwapMCInfo(*counts)

    @property
    def eligible_fraction(self) -> float:
        """q: the fraction of ordered pairs (i, j) between which a swap is attempted."""
        pairs = torch.cartesian_prod(*[torch.arange(self.energy.n_particles)] * 2)
        return float(self._eligible(pairs).double().mean())

    def sample(
        self,
        x0: Tensor,
        n_sweeps: int,
        generator: torch.Generator,
        n_warmup: int = 0,
        progress: bool = False,
    ) -> WeightedSamples:
        """``n_warmup`` discarded, then ``n_sweeps`` sweeps of chains from ``x0: [C, N, d]``.

        Samples are step-major, one per ``record_every`` sweeps after the warm-up.
        """
        meter = CostMeter(self.energy)
        totals = [0, 0, 0, 0]
        xs, us = [], []
        with meter.measure():
            state = self.init(x0)
            for k in tqdm(range(n_warmup + n_sweeps), disable=not progress, desc="swap MC"):
                state, info = self.sweep(state, generator)
                totals = [a + b for a, b in zip(totals, vars(info).values(), strict=True)]
                if k >= n_warmup and (k - n_warmup + 1) % self.config.record_every == 0:
                    xs.append(state.x)
                    us.append(state.u)
        x, u = torch.cat(xs), torch.cat(us)
        return WeightedSamples(
            x, torch.zeros_like(u), u, meter.cost, _summary(SwapMCInfo(*totals)), x0.shape[0]
        )


def _summary(info: SwapMCInfo) -> dict[str, float]:
    return {
        "displacement_acceptance": info.displacements_accepted / max(1, info.displacements),
        "swap_acceptance": info.swaps_accepted / max(1, info.swaps),
        "swap_attempts": float(info.swaps),
    }


def swap_mc_evaluations(
    n_chains: int, n_sweeps: int, swap_probability: float, eligible_fraction: float = 1.0
) -> float:
    """Expected energy evaluations of :meth:`SwapMonteCarlo.sample` (warm-up included).

    C at the start, then per sweep and chain N·[(1 − p)·2/N + p·q·4/N] = 2(1 − p) + 4pq,
    q = :attr:`SwapMonteCarlo.eligible_fraction` (ineligible swaps cost nothing).
    """
    return n_chains * (1 + n_sweeps * sweep_evaluations(swap_probability, eligible_fraction))


def sweep_evaluations(swap_probability: float, eligible_fraction: float = 1.0) -> float:
    """Expected evaluations of one sweep of one chain: 2(1 − p) + 4pq."""
    return 2 * (1 - swap_probability) + 4 * swap_probability * eligible_fraction
