"""Parallel tempering: replicas on a temperature ladder, local moves plus neighbour swaps.

Parallel tempering (replica exchange Monte Carlo; Swendsen & Wang, "Replica Monte Carlo
simulation of spin glasses", Phys. Rev. Lett. 57, 2607, 1986; Geyer, "Markov chain Monte
Carlo maximum likelihood", Computing Science and Statistics 23, 1991; review: Earl & Deem,
"Parallel tempering: theory, applications, and new perspectives", Phys. Chem. Chem. Phys.
7, 3910, 2005, arXiv physics/0508111) samples the product distribution

    Π(x_0, …, x_{K−1}) = Π_k p_k(x_k),     p_k(x) ∝ exp(−u_k(x)),   u_k = u · T_0 / T_k,

over a ladder T_0 < T_1 < … < T_{K−1}, where u is the target's reduced energy at T_0.
Each replica moves at its own temperature with a kernel that leaves p_k invariant (HMC,
or MALA: :func:`boltzgen.kernels.hmc.step` on the tempered potential s_k·u); then
neighbouring temperatures exchange configurations with probability

    α = min(1, exp((β_i − β_j)(U(x_i) − U(x_j)))) = min(1, exp((s_i − s_j)(u(x_i) − u(x_j)))),

s_k = T_0 / T_k, which satisfies detailed balance for Π. Hot replicas cross barriers;
swaps carry those crossings down to T_0, whose marginal is the target.

Swaps alternate deterministically between even pairs (0,1), (2,3), … and odd pairs
(1,2), (3,4), … ("deterministic even/odd"; Okabe, Kawata, Okamoto, Mikami, Chem. Phys.
Lett. 335, 435, 2001; Syed, Bouchard-Côté, Deligiannidis, Doucet, "Non-reversible
parallel tempering", arXiv 1905.02939), which lets configurations travel the ladder
ballistically rather than diffusively. Every configuration ("walker") is tracked: a
round trip is a walk from T_0 to T_{K−1} and back, and the mean round-trip time
measures how fast the ladder mixes.

Layout: ``K`` temperatures × ``C`` independent chains in one tensor ``x: [K, C, *event]``;
chain ``c`` is a full PT simulation, swaps never mix chains. Samples at T_0 are returned
as ``C`` MCMC chains (the time series of the bottom slot), and the energies of every
temperature are recorded so that MBAR (:mod:`boltzgen.metrics.mbar`) can pool them.

Cost: ``K·C`` force evaluations at ``init`` and ``K·C·L`` per step (``L`` leapfrog steps;
``L = 1`` for MALA). Swaps reuse the stored energies and cost nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzgen.energies.base import Energy
from boltzgen.kernels import hmc
from boltzgen.kernels.adaptation import DualAveraging
from boltzgen.kernels.metropolis import accept
from boltzgen.kernels.potential import from_energy, rows, tempered
from boltzgen.records import CostMeter, WeightedSamples

Move = Literal["hmc", "langevin"]
StateFn = Callable[[Tensor], Tensor]
"""A named state: ``x: [n, *event] -> bool[n]``."""


def geometric_ladder(t_min: float, t_max: float, n: int) -> list[float]:
    """``n`` temperatures T_k = T_min (T_max / T_min)^(k / (n − 1)), k = 0 … n − 1.

    Constant ratios T_{k+1} / T_k give roughly equal swap acceptance between neighbours
    when the heat capacity is constant (Kofke, J. Chem. Phys. 117, 6911, 2002).

    Example:
        >>> geometric_ladder(1.0, 4.0, 3)
        [1.0, 2.0, 4.0]
    """
    if n < 2 or not 0 < t_min < t_max:
        raise ValueError(f"need n ≥ 2 and 0 < t_min < t_max, got n={n}, [{t_min}, {t_max}]")
    t_min, t_max = float(t_min), float(t_max)
    ratio = t_max / t_min
    return [t_min * ratio ** (k / (n - 1)) for k in range(n - 1)] + [t_max]


def _permute(values: Tensor, source: Tensor) -> Tensor:
    """``out[k, c, …] = values[source[k, c], c, …]`` for ``values: [K, C, …]``."""
    index = rows(source, values).expand_as(values)
    return torch.gather(values, 0, index)


@dataclass(frozen=True)
class RoundTrips:
    """Where each walker is on its current round trip bottom → top → bottom.

    Indexed by walker id and chain, ``[K, C]``.

    Attributes:
        phase: −1 never at T_0 yet, 0 heading up (left T_0, not yet at T_{K−1}),
            1 heading down (has reached T_{K−1} since leaving T_0).
        start: step at which the current trip began (its arrival at T_0).
    """

    phase: Tensor
    start: Tensor


@dataclass(frozen=True)
class PTState:
    """State of ``C`` parallel-tempering chains over ``K`` temperatures.

    Attributes:
        x: ``[K, C, *event]`` configuration at temperature ``k`` of chain ``c``.
        energy: ``[K, C]`` the target's reduced energy u(x) (at T_0, not tempered).
        force: ``[K, C, *event]`` −∇u(x) (at T_0, not tempered).
        step_size: ``[K]`` step size ε_k of the move at each temperature.
        walker: ``[K, C]`` id of the walker (configuration lineage) at each temperature.
        trips: round-trip bookkeeping per walker.
        n_steps: steps taken so far.
        n_swaps: swap rounds attempted so far (even rounds try pairs (0,1), (2,3), …).
    """

    x: Tensor
    energy: Tensor
    force: Tensor
    step_size: Tensor
    walker: Tensor
    trips: RoundTrips
    n_steps: int
    n_swaps: int


@dataclass(frozen=True)
class PTInfo:
    """What one step did.

    Attributes:
        move_acceptance_prob: ``[K, C]`` Metropolis acceptance probability of the move.
        swap_attempted: ``[K − 1]`` bool, which neighbour pairs (k, k+1) were tried.
        swap_acceptance_prob: ``[K − 1, C]`` min(1, α) of the tried pairs, 0 elsewhere.
        swap_accepted: ``[K − 1, C]`` bool.
        round_trip_steps: ``[K, C]`` per walker, the length in steps of a round trip
            completed at this step, 0 if none was.
    """

    move_acceptance_prob: Tensor
    swap_attempted: Tensor
    swap_acceptance_prob: Tensor
    swap_accepted: Tensor
    round_trip_steps: Tensor


def track_round_trips(trips: RoundTrips, walker: Tensor, step: int) -> tuple[RoundTrips, Tensor]:
    """Update round trips after walkers took the slots ``walker: [K, C]`` at ``step``.

    A trip starts when a walker arrives at T_0 and ends when it next arrives at T_0
    having visited T_{K−1} in between, so consecutive trips tile a walker's history.

    Returns:
        The new bookkeeping, and ``[K, C]`` (by walker) lengths of trips completed now.
    """
    at_bottom = torch.zeros_like(walker, dtype=torch.bool).scatter_(0, walker[:1], True)
    at_top = torch.zeros_like(at_bottom).scatter_(0, walker[-1:], True)
    completed = at_bottom & (trips.phase == 1)
    steps = torch.where(completed, step - trips.start, 0)
    start = torch.where(at_bottom & (trips.phase != 0), step, trips.start)
    phase = torch.where(at_bottom, 0, trips.phase)
    phase = torch.where(at_top & (phase == 0), 1, phase)
    return RoundTrips(phase, start), steps


def swap_neighbours(
    state: PTState, scales: Tensor, generator: torch.Generator
) -> tuple[PTState, Tensor, Tensor, Tensor]:
    """One round of neighbour exchanges on the pairs of this round's parity.

    Pair (k, k+1) of chain c swaps with probability min(1, exp((s_k − s_{k+1})(u_k − u_{k+1})))
    where u are the target's reduced energies, s = T_0 / T (the Metropolis test of
    :func:`boltzgen.kernels.metropolis.accept`).

    Returns:
        The new state, ``attempted [K−1]``, ``probability [K−1, C]`` and ``accepted [K−1, C]``.
    """
    n_temps, n_chains = state.energy.shape
    lower = torch.arange(state.n_swaps % 2, n_temps - 1, 2, device=scales.device)
    upper = lower + 1
    u = state.energy
    log_alpha = (scales[lower] - scales[upper])[:, None] * (u[lower] - u[upper])
    swap, swap_prob = accept(log_alpha, generator)
    source = torch.arange(n_temps, device=u.device)[:, None].repeat(1, n_chains)
    source[lower] = torch.where(swap, upper[:, None], lower[:, None])
    source[upper] = torch.where(swap, lower[:, None], upper[:, None])
    new = replace(
        state,
        x=_permute(state.x, source),
        energy=_permute(u, source),
        force=_permute(state.force, source),
        walker=_permute(state.walker, source),
        n_swaps=state.n_swaps + 1,
    )
    attempted = torch.zeros(n_temps - 1, dtype=torch.bool, device=u.device)
    attempted[lower] = True
    prob = torch.zeros((n_temps - 1, n_chains), dtype=u.dtype, device=u.device)
    prob[lower] = swap_prob
    accepted = torch.zeros_like(prob, dtype=torch.bool)
    accepted[lower] = swap
    return new, attempted, prob, accepted


@dataclass
class _Trace:
    """What the sampling loop keeps: T_0 samples, every rung's energies, statistics.

    Shapes: ``x [T, C, *event]``, ``energies [T, K, C]``, ``states[name] [T, K, C]``,
    ``move_prob [K]``, ``swap_prob / swap_accepted [K−1, C]``, ``swap_attempts [K−1]``.
    """

    x: Tensor
    energies: Tensor
    states: dict[str, Tensor]
    move_prob: Tensor
    swap_prob: Tensor
    swap_accepted: Tensor
    swap_attempts: Tensor
    trip_steps: int = 0
    trip_count: int = 0

    @classmethod
    def empty(cls, state: PTState, n_keep: int, names: Sequence[str]) -> _Trace:
        u = state.energy
        n_temps, n_chains = u.shape
        return cls(
            x=state.x.new_empty((n_keep, *state.x.shape[1:])),
            energies=u.new_empty((n_keep, n_temps, n_chains)),
            states={
                name: torch.zeros((n_keep, n_temps, n_chains), dtype=torch.bool, device=u.device)
                for name in names
            },
            move_prob=u.new_zeros(n_temps),
            swap_prob=u.new_zeros((n_temps - 1, n_chains)),
            swap_accepted=u.new_zeros((n_temps - 1, n_chains)),
            swap_attempts=torch.zeros(n_temps - 1, dtype=torch.int64, device=u.device),
        )

    def add(self, info: PTInfo) -> None:
        self.move_prob += info.move_acceptance_prob.mean(dim=1)
        self.swap_prob += info.swap_acceptance_prob
        self.swap_accepted += info.swap_accepted
        self.swap_attempts += info.swap_attempted
        done = info.round_trip_steps > 0
        self.trip_steps += int(info.round_trip_steps.sum())
        self.trip_count += int(done.sum())

    def keep(self, row: int, state: PTState, states: Mapping[str, StateFn]) -> None:
        self.x[row] = state.x[0]
        self.energies[row] = state.energy
        flat = state.x.reshape((-1, *state.x.shape[2:]))
        for name, member in states.items():
            self.states[name][row] = torch.as_tensor(member(flat)).reshape(state.energy.shape)


class ParallelTempering:
    """Parallel tempering of ``C`` chains over a temperature ladder, batched in one tensor.

    Args:
        energy: the target u at T_0 = ``energy.temperature``; every replica's evaluation is
            charged to its counter. To target another temperature pass
            ``energy.at_temperature(T)``.
        temperatures: increasing ladder, same units as ``energy.temperature``, starting at
            T_0 (e.g. :func:`geometric_ladder`). At least two.
        move: ``"hmc"`` (L leapfrog steps and a Metropolis test) or ``"langevin"``: MALA,
            which is HMC with one leapfrog step (Neal, arXiv 1206.1901, §5.5.3), proposal
            x' = x + ½ε²∇log p_k(x) + εξ.
        step_size: ε per temperature, ``[K]``; a number ε gives ε_k = ε·√(T_k / T_0), the
            scaling of the stable step with the width of p_k.
        n_leapfrog: L for ``"hmc"`` (ignored, 1, for ``"langevin"``).
        swap_every: steps between swap rounds (each round tries even or odd pairs, alternately).
        target_acceptance: warm-up tunes each ε_k by dual averaging toward this mean move
            acceptance (averaged over the ``C`` chains of temperature k); ``None`` keeps ε.

    Example:
        >>> pt = ParallelTempering(energy, geometric_ladder(1.0, 10.0, 6), step_size=0.1)
        >>> samples = pt.sample(x0, n_steps=2000, generator=torch.Generator().manual_seed(0))
        >>> samples.info["swap_acceptance"], samples.info["mean_round_trip_steps"]
    """

    trace_type: type[_Trace] = _Trace
    """What the sampling loop records (subclasses extend it)."""
    progress_label = "PT sampling"

    def __init__(
        self,
        energy: Energy,
        temperatures: Sequence[float],
        move: Move = "hmc",
        step_size: float | Sequence[float] | Tensor = 0.1,
        n_leapfrog: int = 10,
        swap_every: int = 1,
        target_acceptance: float | None = 0.8,
    ):
        temps = [float(t) for t in temperatures]
        _check_ladder(energy, temps)
        if move not in ("hmc", "langevin"):
            raise ValueError(f"move must be 'hmc' or 'langevin', got {move!r}")
        if n_leapfrog < 1 or swap_every < 1:
            raise ValueError(
                f"n_leapfrog and swap_every must be ≥ 1, got {n_leapfrog}, {swap_every}"
            )
        if target_acceptance is not None and not 0.0 < target_acceptance < 1.0:
            raise ValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance}")
        self.energy = energy
        self.temperatures = temps
        self.move = move
        self.n_leapfrog = 1 if move == "langevin" else int(n_leapfrog)
        self.swap_every = int(swap_every)
        self.target_acceptance = target_acceptance
        self.step_size = self._ladder_step_size(step_size)

    @property
    def n_temperatures(self) -> int:
        return len(self.temperatures)

    def _ladder_step_size(self, step_size: float | Sequence[float] | Tensor) -> Tensor:
        eps = torch.as_tensor(step_size, dtype=torch.float64)
        if eps.dim() == 0:
            ratio = torch.tensor(self.temperatures, dtype=torch.float64) / self.temperatures[0]
            eps = eps * ratio.sqrt()
        if eps.shape != (self.n_temperatures,) or not bool((eps > 0).all()):
            raise ValueError(
                f"step_size must be a positive number or {self.n_temperatures} positive numbers "
                f"(one per temperature), got {step_size}"
            )
        return eps

    def _scales(self, like: Tensor) -> Tensor:
        """s_k = T_0 / T_k ``[K]`` with ``like``'s dtype and device."""
        t = torch.tensor(self.temperatures, dtype=like.dtype, device=like.device)
        return self.temperatures[0] / t

    def init(self, x0: Tensor) -> PTState:
        """Chains started at ``x0``: ``[C, *event]`` (copied to every temperature) or
        ``[K, C, *event]``. Costs one force evaluation per replica (``K·C``)."""
        event = self.energy.event_shape
        n_temps = self.n_temperatures
        if tuple(x0.shape[1:]) == event:
            x0 = x0.unsqueeze(0).expand(n_temps, *x0.shape)
        if x0.dim() != 2 + len(event) or tuple(x0.shape[2:]) != event or x0.shape[0] != n_temps:
            raise ValueError(
                f"x0 must have shape [C, {', '.join(map(str, event))}] or [{n_temps}, C, ...], "
                f"got {list(x0.shape)}"
            )
        x = x0.detach().clone()
        n_chains = x.shape[1]
        u, f = self.energy.energy_and_force(x.reshape((-1, *event)))
        if not bool(torch.isfinite(u).all()):
            raise ValueError(
                "some initial configurations have non-finite energy; start every "
                "replica from a valid configuration"
            )
        walker = torch.arange(n_temps, device=x.device)[:, None].repeat(1, n_chains)
        fresh = RoundTrips(torch.full_like(walker, -1), torch.zeros_like(walker))
        trips, _ = track_round_trips(fresh, walker, 0)
        eps = self.step_size.to(dtype=x.dtype, device=x.device)
        return PTState(
            x, u.reshape(n_temps, n_chains), f.reshape(x.shape), eps, walker, trips, 0, 0
        )

    def step(self, state: PTState, generator: torch.Generator) -> tuple[PTState, PTInfo]:
        """Move every replica at its temperature, then (every ``swap_every`` steps) swap."""
        state, move_prob = self._move(state, generator)
        state = replace(state, n_steps=state.n_steps + 1)
        n_temps, n_chains = state.energy.shape
        if state.n_steps % self.swap_every == 0:
            state, attempted, prob, accepted = swap_neighbours(
                state, self._scales(state.energy), generator
            )
        else:
            attempted = torch.zeros(n_temps - 1, dtype=torch.bool, device=state.x.device)
            prob = state.energy.new_zeros((n_temps - 1, n_chains))
            accepted = torch.zeros_like(prob, dtype=torch.bool)
        trips, trip_steps = track_round_trips(state.trips, state.walker, state.n_steps)
        info = PTInfo(move_prob, attempted, prob, accepted, trip_steps)
        return replace(state, trips=trips), info

    def _move(self, state: PTState, generator: torch.Generator) -> tuple[PTState, Tensor]:
        """One HMC/MALA transition of every replica on u_k = s_k·u; returns acceptance [K, C]."""
        n_temps, n_chains = state.energy.shape
        shape = state.x.shape
        s = self._scales(state.energy).repeat_interleave(n_chains)
        x = state.x.reshape((-1, *shape[2:]))
        grad = -(rows(s, x) * state.force.reshape(x.shape))
        start = hmc.HMCState(x, s * state.energy.reshape(-1), grad)
        eps = state.step_size.repeat_interleave(n_chains)
        potential = tempered(from_energy(self.energy), s)
        new, info = hmc.step(generator, start, potential, eps, self.n_leapfrog)
        moved = replace(
            state,
            x=new.x.reshape(shape),
            energy=(new.energy / s).reshape(n_temps, n_chains),
            force=(-new.grad / rows(s, new.grad)).reshape(shape),
        )
        return moved, info.acceptance_prob.reshape(n_temps, n_chains)

    def warmup(
        self, state: PTState, n_warmup: int, generator: torch.Generator, progress: bool = False
    ) -> PTState:
        """``n_warmup`` steps tuning each ε_k by dual averaging (Hoffman & Gelman,
        arXiv 1111.4246, Alg. 5) on the chain-averaged acceptance at T_k; ε̄ is then frozen.

        With ``target_acceptance=None`` these are plain burn-in steps.
        """
        adapt = None if self.target_acceptance is None else DualAveraging(self.target_acceptance)
        dual = None if adapt is None else adapt.init(state.step_size)
        for _ in tqdm(range(n_warmup), desc="PT warm-up", disable=not progress):
            state, info = self.step(state, generator)
            if adapt is not None and dual is not None:
                dual = adapt.update(dual, info.move_acceptance_prob.mean(dim=1))
                state = replace(state, step_size=dual.log_step.exp())
        if dual is not None and n_warmup > 0:
            state = replace(state, step_size=dual.log_step_avg.exp())
        return state

    def sample(
        self,
        x0: Tensor,
        n_steps: int,
        generator: torch.Generator,
        n_warmup: int = 500,
        thin: int = 1,
        progress: bool = False,
        states: Mapping[str, StateFn] | None = None,
    ) -> WeightedSamples:
        """Warm up, then run ``n_steps`` steps, keeping every ``thin``-th.

        Args:
            x0: ``[C, *event]`` or ``[K, C, *event]`` starting configurations.
            n_steps: sampling steps after warm-up, a positive multiple of ``thin``.
            generator: the only source of randomness.
            n_warmup: adaptation / burn-in steps, discarded.
            thin: keep every ``thin``-th state.
            progress: show tqdm progress bars.
            states: named states ``x -> bool[n]`` evaluated on every replica at kept steps
                (``info["ladder_states"]``), for MBAR estimates that use all temperatures.

        Returns:
            The T_0 configurations, ``n_steps // thin · C`` samples step-major
            (``n_chains = C``), zero log-weights, energies u at T_0; ``cost`` counts every
            replica's evaluations, warm-up included. ``info`` holds ``temperatures``,
            ``step_size [K]``, ``move_acceptance [K]``, per neighbour pair ``swap_attempts``,
            ``swap_acceptance`` (accepted fraction), ``swap_acceptance_prob`` (mean min(1, α))
            and ``swap_acceptance_prob_per_chain [K−1, C]``, ``round_trips`` (count) and
            ``mean_round_trip_steps``, ``ladder_energies [T, K, C]`` (u at T_0 of the
            configuration held by each temperature: u_k = u·T_0/T_k for MBAR) and
            ``ladder_states`` {name: bool [T, K, C]}.
        """
        if n_warmup < 0 or thin < 1 or n_steps < thin or n_steps % thin:
            raise ValueError(
                f"need n_warmup ≥ 0 and n_steps a positive multiple of thin ≥ 1, got "
                f"n_warmup={n_warmup}, n_steps={n_steps}, thin={thin}"
            )
        meter = CostMeter(self.energy)
        with meter.measure():
            state = self.warmup(self.init(x0), n_warmup, generator, progress)
            trace = self._run(state, n_steps, thin, generator, progress, states or {})
        x = trace.x.reshape((-1, *trace.x.shape[2:]))
        u = trace.energies[:, 0].reshape(-1)
        info = self._info(state, trace, n_warmup, n_steps, thin)
        return WeightedSamples(x, torch.zeros_like(u), u, meter.cost, info, trace.x.shape[1])

    def _run(
        self,
        state: PTState,
        n_steps: int,
        thin: int,
        generator: torch.Generator,
        progress: bool,
        states: Mapping[str, StateFn],
    ) -> _Trace:
        trace = self.trace_type.empty(state, n_steps // thin, list(states))
        for i in tqdm(range(n_steps), desc=self.progress_label, disable=not progress):
            state, info = self.step(state, generator)
            trace.add(info)
            if (i + 1) % thin == 0:
                trace.keep(i // thin, state, states)
        return trace

    def _info(
        self, state: PTState, trace: _Trace, n_warmup: int, n_steps: int, thin: int
    ) -> dict[str, object]:
        attempts = trace.swap_attempts.clamp(min=1).to(trace.swap_prob.dtype)
        mean_trip = trace.trip_steps / trace.trip_count if trace.trip_count else math.nan
        return {
            "sampler": "parallel_tempering",
            "temperatures": list(self.temperatures),
            "move": self.move,
            "n_leapfrog": self.n_leapfrog,
            "swap_every": self.swap_every,
            "target_acceptance": self.target_acceptance,
            "n_warmup": n_warmup,
            "n_steps": n_steps,
            "thin": thin,
            "step_size": state.step_size.tolist(),
            "move_acceptance": (trace.move_prob / n_steps).tolist(),
            "swap_attempts": trace.swap_attempts.tolist(),
            "swap_acceptance": (trace.swap_accepted.mean(dim=1) / attempts).tolist(),
            "swap_acceptance_prob": (trace.swap_prob.mean(dim=1) / attempts).tolist(),
            "swap_acceptance_prob_per_chain": (trace.swap_prob / attempts[:, None]).tolist(),
            "round_trips": trace.trip_count,
            "mean_round_trip_steps": mean_trip,
            "ladder_energies": trace.energies,
            "ladder_states": trace.states,
        }


def _check_ladder(energy: Energy, temperatures: list[float]) -> None:
    if len(temperatures) < 2:
        raise ValueError(f"a temperature ladder needs at least 2 temperatures, got {temperatures}")
    if not all(0 < a < b for a, b in itertools.pairwise(temperatures)):
        raise ValueError(f"temperatures must be positive and increasing, got {temperatures}")
    if not math.isclose(temperatures[0], energy.temperature, rel_tol=1e-9):
        raise ValueError(
            f"the ladder must start at the target temperature {energy.temperature} (the "
            f"energy's), got {temperatures[0]}; to target T pass energy.at_temperature(T)"
        )


def pt_evaluations(
    n_temperatures: int, n_chains: int, n_steps: int, move: Move, n_leapfrog: int
) -> int:
    """Target evaluations of :meth:`ParallelTempering.sample`: K·C·(1 + n·L).

    Every replica pays: one evaluation at the start, then L leapfrog forces per step
    (L = 1 for ``"langevin"``, MALA); ``n_steps`` counts warm-up and sampling steps.
    """
    leapfrog = n_leapfrog if move == "hmc" else 1
    return n_temperatures * n_chains * (1 + n_steps * leapfrog)
