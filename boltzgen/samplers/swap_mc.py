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

Speed: a move computes only rows of the pair table, ε_ik v(r_ik²/σ_ik²)/T of the moved
particle(s) against all k, batched over the C chains; a sweep draws all its random numbers
at once and updates the chains in place. With ``pair_table`` each chain keeps its table
``[N, N]`` (built once, rows and columns replaced on acceptance), so the old rows are read,
not recomputed.

Cost, the convention for local moves: computing one particle's interactions with all
others (one row) costs 1/N of an energy evaluation. With the pair table a displacement
computes one row (1/N) and a swap two (2/N); without it the old rows are computed too
(2/N, 4/N); an ineligible swap costs nothing. See :func:`swap_mc_evaluations`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzgen.energies.particles import ParticleEnergy
from boltzgen.records import CostMeter, WeightedSamples

TABLE_ENTRIES = 2**24
"""Chains keep their pair table (C·N² float64 entries, 128 MiB at this bound) up to this size."""


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
        pair_table: keep each chain's table of pair energies (when C·N² ≤
            ``TABLE_ENTRIES``), so a move computes only the moved particles' new rows.
    """

    step_size: float = 0.1
    swap_probability: float = 0.2
    max_diameter_difference: float = math.inf
    record_every: int = 1
    pair_table: bool = True


@dataclass(frozen=True)
class SwapMCState:
    """Chains ``x: [C, N, d]``, their reduced energies ``u: [C]`` and, when kept, the pair
    table ``[C, N, N]`` of reduced pair energies (zero diagonal; ``None``: rows recomputed)."""

    x: Tensor
    u: Tensor
    table: Tensor | None = None


@dataclass(frozen=True)
class SwapMCInfo:
    """Accepted and attempted displacements and swaps, summed over chains."""

    displacements_accepted: int
    displacements: int
    swaps_accepted: int
    swaps: int


@dataclass(frozen=True)
class MoveDraws:
    """The random numbers of M elementary moves of C chains, drawn in one go.

    ``is_swap: bool[M]`` (one move type per move, shared by the chains), ``pick: [M, C, 2]``
    (the particle i, and j for a swap), ``step: [M, C, d]`` in [−Δ, Δ), ``log_u: [M, C]``.
    """

    is_swap: Tensor
    pick: Tensor
    step: Tensor
    log_u: Tensor


class SwapMonteCarlo:
    """Swap (p_swap > 0) or local (p_swap = 0) Metropolis Monte Carlo on a particle energy.

    Each move computes only the moved particles' interactions, as rows of the pair table
    ε_ik v(r_ik²/σ_ik²)/T against all k (:meth:`ParticleEnergy.pair_rows`), batched over
    the C chains; a sweep draws its random numbers at once and updates the chains in place.
    """

    def __init__(self, energy: ParticleEnergy, config: SwapMCConfig):
        if not 0.0 <= config.swap_probability <= 1.0:
            raise ValueError(f"swap_probability must lie in [0, 1], got {config.swap_probability}")
        self.energy, self.config = energy, config

    def init(self, x: Tensor) -> SwapMCState:
        """Start chains at ``x: [C, N, d]`` (C energy evaluations), with the pair table if
        :func:`keeps_table`."""
        if not keeps_table(self.config, *x.shape[:2]):
            return SwapMCState(x, self.energy.energy(x))
        table = self.energy.pair_table(x)
        return SwapMCState(x, table.sum((1, 2)) / 2, table)

    def draw(self, n_moves: int, n_chains: int, generator: torch.Generator) -> MoveDraws:
        """Random numbers for ``n_moves`` moves of ``n_chains`` chains."""
        like = self.energy.box
        m, c, d = n_moves, n_chains, like.numel()
        is_swap = (
            torch.rand(m, generator=generator, dtype=like.dtype) < self.config.swap_probability
        )
        pick = torch.randint(self.energy.n_particles, (m, c, 2), generator=generator)
        step = (2 * torch.rand(m, c, d, generator=generator, dtype=like.dtype) - 1) * (
            self.config.step_size
        )
        log_u = torch.rand(m, c, generator=generator, dtype=like.dtype).log()
        return MoveDraws(is_swap, pick, step, log_u)

    def move(
        self, state: SwapMCState, generator: torch.Generator
    ) -> tuple[SwapMCState, Tensor, bool]:
        """One elementary move of every chain: the state, accept flags ``[C]``, whether a swap."""
        state = _copy(state)
        draws = self.draw(1, state.x.shape[0], generator)
        accepted = self._apply(state, draws, 0)
        return state, accepted, bool(draws.is_swap[0])

    def _apply(self, state: SwapMCState, draws: MoveDraws, k: int) -> Tensor:
        """Move ``k`` of ``draws`` applied in place to ``state``; the accept flags ``[C]``."""
        if bool(draws.is_swap[k]):
            ok, delta = self._swap(state, draws.pick[k], draws.log_u[k])
        else:
            ok, delta = self._displace(state, draws.pick[k, :, 0], draws.step[k], draws.log_u[k])
        state.u.add_(torch.where(ok, delta, torch.zeros_like(delta)))
        return ok

    def _displace(
        self, state: SwapMCState, i: Tensor, step: Tensor, log_u: Tensor
    ) -> tuple[Tensor, Tensor]:
        """x_i → x_i + δ: Δu = e_i(new) − e_i(old), the old row from the table if kept."""
        x, table = state.x, state.table
        c, n = x.shape[:2]
        chains = torch.arange(c, device=x.device)
        x_i = x[chains, i]
        new = x_i + step
        if table is None:
            t = self.energy.pair_rows(
                torch.stack([x_i, new], 1), i[:, None].expand(-1, 2), x, i[:, None]
            )
            new_row, old_row = t[:, 1], t[:, 0]
        else:
            new_row = self.energy.pair_rows(new[:, None], i[:, None], x, i[:, None])[:, 0]
            old_row = table[chains, i]
        self.energy.local_charge.charge(self.energy, _rows_charged(table, 1) * c / n)
        delta = (new_row - old_row).sum(-1)
        ok = log_u < -delta
        x[chains, i] = torch.where(ok[:, None], new, x_i)
        if table is not None:
            _set_row(table, chains, i, torch.where(ok[:, None], new_row, old_row))
        return ok, delta

    def _swap(self, state: SwapMCState, pick: Tensor, log_u: Tensor) -> tuple[Tensor, Tensor]:
        """Exchange x_i and x_j: Δu from the rows of i at x_j and j at x_i (pair ij unchanged)."""
        x, table = state.x, state.table
        n = x.shape[1]
        chains = torch.arange(x.shape[0], device=x.device)
        i, j = pick[:, 0], pick[:, 1]
        x_i, x_j = x[chains, i], x[chains, j]
        eligible = self._eligible(pick)
        if table is None:
            points, rows = torch.stack([x_i, x_j, x_j, x_i], 1), torch.stack([i, i, j, j], 1)
            t = self.energy.pair_rows(points, rows, x, pick)
            new_i, old_i, new_j, old_j = t[:, 1], t[:, 0], t[:, 3], t[:, 2]
        else:
            t = self.energy.pair_rows(torch.stack([x_j, x_i], 1), pick, x, pick)
            new_i, new_j = t[:, 0], t[:, 1]
            old_i, old_j = _without(table[chains, i], j), _without(table[chains, j], i)
        charge = _rows_charged(table, 2) * int(eligible.sum()) / n
        self.energy.local_charge.charge(self.energy, charge)
        delta = (new_i - old_i + new_j - old_j).sum(-1)
        ok = eligible & (log_u < -delta)
        x[chains, i] = torch.where(ok[:, None], x_j, x_i)
        x[chains, j] = torch.where(ok[:, None], x_i, x_j)
        if table is not None:
            ok_ = ok[:, None]
            pair = table[chains, i, j][:, None]
            row_i = torch.where(ok_, new_i.scatter(1, j[:, None], pair), table[chains, i])
            row_j = torch.where(ok_, new_j.scatter(1, i[:, None], pair), table[chains, j])
            _set_row(table, chains, i, row_i)
            _set_row(table, chains, j, row_j)
        return ok, delta

    def _eligible(self, pick: Tensor) -> Tensor:
        species, diameters = self.energy.species[pick], self.energy.diameters[pick]
        different = species[:, 0] != species[:, 1]
        close = (diameters[:, 0] - diameters[:, 1]).abs() < self.config.max_diameter_difference
        return different & close

    def sweep(
        self, state: SwapMCState, generator: torch.Generator
    ) -> tuple[SwapMCState, SwapMCInfo]:
        """N elementary moves of every chain (random numbers drawn at once)."""
        state = _copy(state)
        c, n = state.x.shape[:2]
        draws = self.draw(n, c, generator)
        per_move = torch.stack([self._apply(state, draws, k) for k in range(n)]).sum(1)
        swaps = draws.is_swap
        counts = [
            int(per_move[~swaps].sum()),
            int((~swaps).sum()) * c,
            int(per_move[swaps].sum()),
            int(swaps.sum()) * c,
        ]
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


def _copy(state: SwapMCState) -> SwapMCState:
    table = None if state.table is None else state.table.clone()
    return SwapMCState(state.x.clone(), state.u.clone(), table)


def _rows_charged(table: Tensor | None, moved: int) -> int:
    """Pair-table rows computed per chain by a move of ``moved`` particles: the new rows,
    and the old ones too when no table is kept."""
    return moved if table is not None else 2 * moved


def _without(row: Tensor, j: Tensor) -> Tensor:
    """``row: [C, N]`` with entry ``j: [C]`` set to zero."""
    return row.scatter(1, j[:, None], 0.0)


def _set_row(table: Tensor, chains: Tensor, i: Tensor, row: Tensor) -> None:
    """Row and column ``i: [C]`` of the symmetric ``table: [C, N, N]`` set to ``row: [C, N]``."""
    table[chains, i] = row
    table[chains, :, i] = row


def _summary(info: SwapMCInfo) -> dict[str, float]:
    return {
        "displacement_acceptance": info.displacements_accepted / max(1, info.displacements),
        "swap_acceptance": info.swaps_accepted / max(1, info.swaps),
        "swap_attempts": float(info.swaps),
    }


def keeps_table(config: SwapMCConfig, n_chains: int, n_particles: int) -> bool:
    """Whether :meth:`SwapMonteCarlo.init` keeps the pair table: asked for and C·N² small."""
    return config.pair_table and n_chains * n_particles**2 <= TABLE_ENTRIES


def swap_mc_evaluations(
    n_chains: int,
    n_sweeps: int,
    swap_probability: float,
    eligible_fraction: float = 1.0,
    tabulated: bool = False,
) -> float:
    """Expected energy evaluations of :meth:`SwapMonteCarlo.sample` (warm-up included).

    C at the start, then per sweep and chain :func:`sweep_evaluations` (ineligible swaps
    cost nothing; q = :attr:`SwapMonteCarlo.eligible_fraction`).
    """
    per_sweep = sweep_evaluations(swap_probability, eligible_fraction, tabulated)
    return n_chains * (1 + n_sweeps * per_sweep)


def sweep_evaluations(
    swap_probability: float, eligible_fraction: float = 1.0, tabulated: bool = False
) -> float:
    """Expected evaluations of one sweep of one chain.

    Each move computes rows of N pair terms, 1/N of an evaluation each: the moved
    particles' new rows with a pair table, (1 − p) + 2pq per sweep; without one their old
    rows too, 2(1 − p) + 4pq.
    """
    rows = 1 if tabulated else 2
    return rows * ((1 - swap_probability) + 2 * swap_probability * eligible_fraction)
