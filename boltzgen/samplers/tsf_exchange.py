"""TSF replica exchange: parallel tempering whose replicas also jump by flow proposals.

Dibak, Klein, Köhler, Noé, "Temperature steerable flows and Boltzmann generators",
Phys. Rev. Research 4, L042005 (2022), arXiv 2108.01590, embed a temperature-steerable
flow (TSF; :class:`~boltzgen.flows.steerable.TemperatureSteerableFlow`) in a generalised
ensemble: one flow gives a proposal density q_{T_k} ∝ q_{T_0}^{T_0/T_k} at every rung of
a temperature ladder. Here the ladder is the parallel-tempering product distribution

    Π(x_0, …, x_{K−1}) = Π_k p_k(x_k),     p_k(x) ∝ exp(−s_k·u(x)),   s_k = T_0 / T_k,

(u the target's reduced energy at T_0; :mod:`boltzgen.samplers.parallel_tempering`), and
each step applies three kernels that each leave Π invariant:

1. a local move (HMC or MALA) of every replica on s_k·u;
2. a flow move (every ``flow_every`` steps): at every rung k and chain c, an independence
   Metropolis–Hastings proposal x' ~ q_{T_k}, drawn independently of the current x and
   accepted with probability

       min(1, [p_k(x') q_{T_k}(x)] / [p_k(x) q_{T_k}(x')]) = min(1, w_k(x') / w_k(x)),
       log w_k(x) = −s_k·u(x) − log q_{T_k}(x)

   (Albergo, Kanwar, Shanahan, arXiv 1904.12072; detailed balance because
   p_k(x) q(y) min(1, w(y)/w(x)) = q(x) q(y) min(w(x), w(y)) / Z_k is symmetric);
3. neighbour swaps (every ``swap_every`` steps, even and odd pairs alternately).

The flow move lets a replica jump between metastable states at any temperature, so
the ladder no longer has to carry every barrier crossing down from the hottest rung;
swaps still pass good configurations from rungs where the flow is accurate to the others.
Samples at T_0 are exact (asymptotically) whatever the quality of the flow.

Cost (target evaluations, all charged as force evaluations): ``K·C`` at ``init``,
``K·C·L`` per step for the local move (``L = 1`` for MALA) and ``K·C`` per flow move
(each proposal needs its energy and, for the next local move, its force). Swaps are free.
Training the TSF (:func:`~boltzgen.training.train_tsf`) costs ``B`` energy evaluations
per ladder rung per optimiser step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.flows.steerable import TemperatureSteerableFlow
from boltzgen.kernels.metropolis import accept
from boltzgen.kernels.potential import rows
from boltzgen.records import Cost, WeightedSamples
from boltzgen.samplers.parallel_tempering import (
    Move,
    ParallelTempering,
    PTInfo,
    PTState,
    StateFn,
    _Trace,
    swap_neighbours,
    track_round_trips,
)


@dataclass(frozen=True)
class TSFInfo(PTInfo):
    """What one step did: :class:`PTInfo` plus the flow move.

    Attributes:
        flow_attempted: whether this step made a flow move.
        flow_acceptance_prob: ``[K, C]`` min(1, w_k(x')/w_k(x)), zeros if not attempted.
        flow_accepted: ``[K, C]`` bool.
    """

    flow_attempted: bool
    flow_acceptance_prob: Tensor
    flow_accepted: Tensor


@dataclass
class _TSFTrace(_Trace):
    """:class:`_Trace` plus the flow-move tallies ``flow_prob / flow_accepted [K, C]``."""

    flow_prob: Tensor = field(kw_only=True)
    flow_accepted: Tensor = field(kw_only=True)
    flow_attempts: int = field(default=0, kw_only=True)

    @classmethod
    def empty(cls, state: PTState, n_keep: int, names: Sequence[str]) -> _TSFTrace:
        base = _Trace.empty(state, n_keep, names)
        kept = {f.name: getattr(base, f.name) for f in fields(base)}
        zeros = state.energy.new_zeros(state.energy.shape)
        return cls(**kept, flow_prob=zeros, flow_accepted=zeros.clone())

    def add(self, info: PTInfo) -> None:
        super().add(info)
        if isinstance(info, TSFInfo) and info.flow_attempted:
            self.flow_prob += info.flow_acceptance_prob
            self.flow_accepted += info.flow_accepted
            self.flow_attempts += 1


class TSFReplicaExchange(ParallelTempering):
    """Parallel tempering with temperature-steerable-flow proposals at every rung.

    Dibak, Klein, Köhler, Noé, arXiv 2108.01590. ``C`` independent chains over ``K``
    temperatures in one tensor ``[K, C, *event]``; each step is a local move at every
    temperature, an independence-Metropolis move with x' ~ q_{T_k} at every temperature
    k (every ``flow_every`` steps), and neighbour swaps (every ``swap_every`` steps).
    State, local moves, swaps, round trips and warm-up are those of
    :class:`~boltzgen.samplers.parallel_tempering.ParallelTempering`.

    Args:
        energy: the target u at T_0 = ``energy.temperature``; every evaluation is charged.
        tsf: the flow; ``tsf.prior(T_k)`` is used at rung k, so its reference temperature
            must be in the ladder's units. Its latent dimension must equal ``energy.dim``.
        temperatures: increasing ladder starting at T_0, at least two.
        local_move: ``"hmc"`` or ``"langevin"`` (MALA).
        step_size: as for ParallelTempering.
        n_leapfrog: as for ParallelTempering.
        swap_every: as for ParallelTempering.
        target_acceptance: as for ParallelTempering.
        flow_every: steps between flow moves (≥ 1).
        training_cost: what training ``tsf`` cost (e.g. from
            :func:`~boltzgen.training.train_tsf`), reported in the ``train_*`` fields of
            the returned cost.

    Example:
        >>> tsf = make_steerable_flow(2, reference_temperature=1.0)
        >>> train_cost = train_tsf(tsf, energy, [1.0, 2.0, 4.0], 500, 256, 1e-3, g)
        >>> re = TSFReplicaExchange(energy, tsf, [1.0, 2.0, 4.0], training_cost=train_cost)
        >>> samples = re.sample(x0, n_steps=2000, generator=g)
        >>> samples.info["flow_acceptance"], samples.info["round_trips"]
    """

    trace_type = _TSFTrace
    progress_label = "TSF-RE sampling"

    def __init__(
        self,
        energy: Energy,
        tsf: TemperatureSteerableFlow,
        temperatures: Sequence[float],
        local_move: Move = "hmc",
        step_size: float | Sequence[float] | Tensor = 0.1,
        n_leapfrog: int = 10,
        flow_every: int = 1,
        swap_every: int = 1,
        target_acceptance: float | None = 0.8,
        training_cost: Cost | None = None,
    ):
        super().__init__(
            energy, temperatures, local_move, step_size, n_leapfrog, swap_every, target_acceptance
        )
        if flow_every < 1:
            raise ValueError(f"flow_every must be ≥ 1, got {flow_every}")
        if tsf.prior_dim != energy.dim:
            raise ValueError(
                f"the TSF has latent dimension {tsf.prior_dim} but the target has "
                f"{energy.dim} degrees of freedom: build the flow for this energy"
            )
        self.tsf = tsf
        self.flow_every = int(flow_every)
        self.training_cost = Cost() if training_cost is None else training_cost

    def propose(self, n_chains: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n_chains`` draws x ~ q_{T_k} per rung, ``[K, C, *event]``, and log q_{T_k}(x)
        ``[K, C]``, in one flow pass (no gradients, no target evaluation)."""
        priors = [self.tsf.prior(t) for t in self.temperatures]
        with torch.no_grad():
            z = torch.stack([prior.sample(n_chains, generator) for prior in priors])
            log_pz = torch.stack(
                [prior.log_prob(z_k) for prior, z_k in zip(priors, z, strict=True)]
            )
            x, logdet = self.tsf.flow(z.reshape(-1, z.shape[-1]))
        n_temps = self.n_temperatures
        return x.reshape(n_temps, n_chains, *x.shape[1:]), log_pz - logdet.reshape(n_temps, -1)

    def ladder_log_prob(self, x: Tensor) -> Tensor:
        """log q_{T_k}(x_k) ``[K, C]`` of ``x: [K, C, *event]``, rung k at T_k, in one
        inverse flow pass (the latent z = f⁻¹(x) does not depend on T)."""
        n_temps, n_chains = x.shape[:2]
        with torch.no_grad():
            z, logdet = self.tsf.flow.inverse(x.reshape(n_temps * n_chains, *x.shape[2:]))
            z = z.reshape(n_temps, n_chains, -1)
            log_pz = torch.stack(
                [
                    self.tsf.prior(t).log_prob(z_k)
                    for t, z_k in zip(self.temperatures, z, strict=True)
                ]
            )
        return log_pz + logdet.reshape(n_temps, n_chains)

    def flow_move(
        self, state: PTState, generator: torch.Generator
    ) -> tuple[PTState, Tensor, Tensor]:
        """Independence Metropolis at every rung: x' ~ q_{T_k}, accepted with probability
        min(1, w_k(x')/w_k(x)), log w_k = −s_k·u − log q_{T_k}. ``K·C`` force evaluations.

        A proposal with energy +inf is never accepted.

        Returns:
            The new state, acceptance probabilities ``[K, C]`` and ``accepted [K, C]``.
        """
        n_temps, n_chains = state.energy.shape
        event = state.x.shape[2:]
        s = self._scales(state.energy)[:, None]
        x_new, log_q_new = self.propose(n_chains, generator)
        log_q_old = self.ladder_log_prob(state.x)
        u_new, f_new = self.energy.energy_and_force(x_new.reshape(-1, *event))
        u_new = u_new.reshape(n_temps, n_chains)
        log_w_new = -s * u_new - log_q_new
        log_w_old = -s * state.energy - log_q_old
        accepted, prob = accept(log_w_new - log_w_old, generator)
        take = rows(accepted, state.x)
        new = replace(
            state,
            x=torch.where(take, x_new, state.x),
            energy=torch.where(accepted, u_new, state.energy),
            force=torch.where(take, f_new.reshape(state.x.shape), state.force),
        )
        return new, prob, accepted

    def step(self, state: PTState, generator: torch.Generator) -> tuple[PTState, TSFInfo]:
        """Local move at every rung, then (every ``flow_every`` steps) the flow move, then
        (every ``swap_every`` steps) neighbour swaps; round trips are tracked after swaps."""
        state, move_prob = self._move(state, generator)
        state = replace(state, n_steps=state.n_steps + 1)
        flow_attempted = state.n_steps % self.flow_every == 0
        if flow_attempted:
            state, flow_prob, flow_accepted = self.flow_move(state, generator)
        else:
            flow_prob = state.energy.new_zeros(state.energy.shape)
            flow_accepted = torch.zeros_like(flow_prob, dtype=torch.bool)
        state, attempted, swap_prob, swapped = self._swap_if_due(state, generator)
        trips, trip_steps = track_round_trips(state.trips, state.walker, state.n_steps)
        info = TSFInfo(
            move_acceptance_prob=move_prob,
            swap_attempted=attempted,
            swap_acceptance_prob=swap_prob,
            swap_accepted=swapped,
            round_trip_steps=trip_steps,
            flow_attempted=flow_attempted,
            flow_acceptance_prob=flow_prob,
            flow_accepted=flow_accepted,
        )
        return replace(state, trips=trips), info

    def _swap_if_due(
        self, state: PTState, generator: torch.Generator
    ) -> tuple[PTState, Tensor, Tensor, Tensor]:
        """:func:`swap_neighbours` every ``swap_every`` steps; otherwise nothing attempted."""
        if state.n_steps % self.swap_every == 0:
            return swap_neighbours(state, self._scales(state.energy), generator)
        n_temps, n_chains = state.energy.shape
        attempted = torch.zeros(n_temps - 1, dtype=torch.bool, device=state.x.device)
        prob = state.energy.new_zeros((n_temps - 1, n_chains))
        return state, attempted, prob, torch.zeros_like(prob, dtype=torch.bool)

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
        """Warm up (tuning the local step sizes), then run ``n_steps`` steps, keeping every
        ``thin``-th.

        Arguments and returns as :meth:`ParallelTempering.sample`: ``C`` chains at T_0
        (``n_chains = C``, step-major), zero log-weights, u at T_0. ``cost`` counts every
        evaluation of local and flow moves at every rung, warm-up included, plus
        ``training_cost`` in its ``train_*`` fields. ``info`` holds ParallelTempering's
        keys (``ladder_energies``, ``ladder_states``, ``swap_acceptance``, ``round_trips``,
        …) and ``flow_every``, ``flow_moves`` (sampling phase), ``flow_acceptance [K]``
        (accepted fraction), ``flow_acceptance_prob [K]`` (mean min(1, α)),
        ``flow_acceptance_prob_per_chain [K, C]`` and ``flow_proposals`` (flow draws
        including warm-up, K·C per flow move).
        """
        samples = super().sample(x0, n_steps, generator, n_warmup, thin, progress, states)
        samples.cost = samples.cost.with_training(self.training_cost)
        n_chains = samples.n_chains or 1
        moves = (n_warmup + n_steps) // self.flow_every
        samples.info["flow_proposals"] = self.n_temperatures * n_chains * moves
        return samples

    def _info(
        self, state: PTState, trace: _Trace, n_warmup: int, n_steps: int, thin: int
    ) -> dict[str, object]:
        info = super()._info(state, trace, n_warmup, n_steps, thin)
        assert isinstance(trace, _TSFTrace)
        moves = max(trace.flow_attempts, 1)
        info.update(
            sampler="tsf_replica_exchange",
            flow_every=self.flow_every,
            flow_moves=trace.flow_attempts,
            flow_acceptance=(trace.flow_accepted.mean(dim=1) / moves).tolist(),
            flow_acceptance_prob=(trace.flow_prob.mean(dim=1) / moves).tolist(),
            flow_acceptance_prob_per_chain=(trace.flow_prob / moves).tolist(),
        )
        return info


def tsf_exchange_evaluations(
    n_temperatures: int,
    n_chains: int,
    n_steps: int,
    move: Move,
    n_leapfrog: int,
    flow_every: int,
) -> float:
    """Target evaluations of :meth:`TSFReplicaExchange.sample`: K·C·(1 + n·(L + 1/f)).

    Every replica pays L leapfrog forces per step (L = 1 for ``"langevin"``) and one
    energy per flow proposal, made every f = ``flow_every`` steps (counted as 1/f a step).
    """
    leapfrog = n_leapfrog if move == "hmc" else 1
    per_step = n_temperatures * n_chains * (leapfrog + 1.0 / flow_every)
    return n_temperatures * n_chains + n_steps * per_step
