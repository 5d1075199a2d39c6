"""Flow-based MCMC: independence Metropolis with flow proposals, and HMC in latent space.

Both samplers use a normalising flow x = f(z), z ~ p_Z, with model density
log q(x) = log p_Z(z) − log|det ∂f/∂z|, to sample the target p(x) ∝ exp(−u(x)) exactly
(asymptotically), whatever the quality of the flow: the flow only sets how fast the
chains mix.

* :class:`FlowIndependenceMetropolis` — Albergo, Kanwar, Shanahan, "Flow-based generative
  models for Markov chain Monte Carlo in lattice field theory", arXiv 1904.12072. Every
  step draws x' ~ q independently of the current x and accepts it with probability

      min(1, w(x') / w(x)),     log w = −u(x) − log q(x),

  the Metropolis–Hastings ratio p(x') q(x) / (p(x) q(x')) of an independence proposal.
  The kernel satisfies detailed balance: π(x) q(y) min(1, w(y)/w(x)) = q(x) q(y)
  min(w(x), w(y)) / Z is symmetric in (x, y). If w is bounded (the flow's tails at
  least as heavy as the target's) the chain is uniformly ergodic (Mengersen & Tweedie,
  "Rates of convergence of the Hastings and Metropolis algorithms", Ann. Statist. 24,
  1996). Cost: one energy evaluation per chain per step (and at ``init``).
* :class:`FlowHMC` — Foreman, Izubuchi, Jin, Jin, Osborn, Tomiya, "HMC with normalizing
  flows", arXiv 2112.01586 (field-transformation HMC; the same construction is NeuTra HMC,
  Hoffman et al., arXiv 1903.03704). HMC on the pulled-back target: if x = f(z) ~ p
  then z has density p(f(z)) |det ∂f/∂z|, i.e. reduced energy

      U(z) = u(f(z)) − log|det ∂f/∂z|,

  and where q ≈ p this is ≈ −log p_Z(z) + const, a well-conditioned target for HMC. The
  prior does not enter U. Cost: one target force evaluation per chain per leapfrog step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzgen.energies.base import Energy
from boltzgen.flows.base import Flow
from boltzgen.kernels.hmc import HMCInfo
from boltzgen.kernels.metropolis import accept
from boltzgen.kernels.potential import pulled_back, rows
from boltzgen.records import CostMeter, WeightedSamples
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.mcmc import HMC, HMCChains


@dataclass(frozen=True)
class IndependenceState:
    """State of ``C`` independence-Metropolis chains.

    Attributes:
        x: ``[C, *event]`` current configurations.
        energy: ``[C]`` u(x).
        log_weight: ``[C]`` log w(x) = −u(x) − log q(x) (−inf for failed configurations).
    """

    x: Tensor
    energy: Tensor
    log_weight: Tensor


@dataclass(frozen=True)
class IndependenceInfo:
    """What one step did, per chain.

    Attributes:
        acceptance_prob: ``[C]`` min(1, w(x')/w(x)).
        accepted: ``[C]`` bool.
    """

    acceptance_prob: Tensor
    accepted: Tensor


class FlowIndependenceMetropolis:
    """Independence Metropolis–Hastings with proposals from a flow model (arXiv 1904.12072).

    Args:
        model: the flow model q (prior and flow); its ``training_cost`` is reported.
        energy: the target u, charged for every evaluation.

    Example:
        >>> sampler = FlowIndependenceMetropolis(model, energy)
        >>> chains = sampler.sample(n_chains=16, n_steps=1000, generator=g)
        >>> chains.info["acceptance"]
    """

    def __init__(self, model: BoltzmannGenerator, energy: Energy):
        self.model = model
        self.energy = energy

    def propose(self, n: int, generator: torch.Generator) -> IndependenceState:
        """``n`` independent flow draws with their energies and log-weights."""
        with torch.no_grad():
            x, log_q = self.model.sample_with_log_prob(n, generator)
            u = self.energy.energy(x)
        return IndependenceState(x, u, -u - log_q)

    def init(
        self, n_chains: int, generator: torch.Generator, x0: Tensor | None = None
    ) -> IndependenceState:
        """Chains started at flow draws, or at ``x0: [C, *event]`` (log q by the inverse)."""
        if x0 is None:
            return self.propose(n_chains, generator)
        if x0.shape[0] != n_chains:
            raise ValueError(f"x0 has {x0.shape[0]} rows for {n_chains} chains")
        with torch.no_grad():
            u = self.energy.energy(x0)
            log_q = self.model.log_prob(x0)
        return IndependenceState(x0.detach(), u, -u - log_q)

    def step(
        self, state: IndependenceState, generator: torch.Generator
    ) -> tuple[IndependenceState, IndependenceInfo]:
        """One proposal per chain from q, accepted with probability min(1, w(x')/w(x)).

        A proposal with weight 0 (energy +inf) is never accepted; a chain whose current
        weight is 0 accepts any proposal of positive weight.
        """
        proposal = self.propose(state.x.shape[0], generator)
        accepted, prob = accept(proposal.log_weight - state.log_weight, generator)
        new = IndependenceState(
            torch.where(rows(accepted, state.x), proposal.x, state.x),
            torch.where(accepted, proposal.energy, state.energy),
            torch.where(accepted, proposal.log_weight, state.log_weight),
        )
        return new, IndependenceInfo(prob, accepted)

    def sample(
        self,
        n_chains: int,
        n_steps: int,
        generator: torch.Generator,
        n_warmup: int = 0,
        thin: int = 1,
        x0: Tensor | None = None,
        progress: bool = False,
    ) -> WeightedSamples:
        """``n_steps`` steps of ``n_chains`` chains after ``n_warmup`` discarded ones.

        Returns:
            ``n_steps // thin · C`` samples, step-major (``n_chains = C``), zero
            log-weights, target energies, cost (energy evaluations, training included)
            and ``info`` with the acceptance (mean, per chain, mean probability) and
            ``flow_evals``.
        """
        if n_chains < 1 or n_warmup < 0 or thin < 1 or n_steps < thin or n_steps % thin:
            raise ValueError(
                f"need n_chains ≥ 1, n_warmup ≥ 0 and n_steps a positive multiple of thin ≥ 1, "
                f"got n_chains={n_chains}, n_warmup={n_warmup}, n_steps={n_steps}, thin={thin}"
            )
        meter = CostMeter(self.energy)
        xs, us = [], []
        accepted = torch.zeros(n_chains, dtype=torch.float64)
        prob = torch.zeros(n_chains, dtype=torch.float64)
        with meter.measure():
            state = self.init(n_chains, generator, x0)
            for i in tqdm(range(n_warmup + n_steps), desc="flow MCMC", disable=not progress):
                state, info = self.step(state, generator)
                if i < n_warmup:
                    continue
                accepted += info.accepted.cpu()
                prob += info.acceptance_prob.cpu().to(torch.float64)
                if (i - n_warmup + 1) % thin == 0:
                    xs.append(state.x)
                    us.append(state.energy)
        x, u = torch.cat(xs), torch.cat(us)
        info_dict = {
            "sampler": "flow_independence_metropolis",
            "acceptance": float(accepted.mean() / n_steps),
            "acceptance_prob": float(prob.mean() / n_steps),
            "acceptance_per_chain": (accepted / n_steps).tolist(),
            "n_warmup": n_warmup,
            "n_steps": n_steps,
            "thin": thin,
            "flow_evals": n_chains * (n_warmup + n_steps + 1),
        }
        cost = meter.cost.with_training(self.model.training_cost)
        return WeightedSamples(x, torch.zeros_like(u), u, cost, info_dict, n_chains=n_chains)


class PulledBackEnergy(Energy):
    """The target pulled back to latent space: U(z) = u(f(z)) − log|det ∂f/∂z|.

    If z has density ∝ exp(−U), then x = f(z) has density ∝ exp(−u) (change of
    variables). Evaluations of u are charged to ``target``'s counter (``energy`` for
    :meth:`energy`, ``force`` for :meth:`energy_and_force`); this energy's own counter
    counts latent evaluations, i.e. flow passes. The force is
    −∇_z U = J_f(z)ᵀ F(f(z)) + ∇_z log|det J_f(z)|, F = −∇u the target's force (its own
    analytic force where it has one), the vector–Jacobian product by autograd
    (:func:`boltzgen.kernels.potential.pulled_back`).

    Args:
        flow: x = f(z), latents ``[B, D]`` to configurations ``[B, *target.event_shape]``.
        target: the energy u.
        latent_dim: D.
    """

    def __init__(self, flow: Flow, target: Energy, latent_dim: int):
        super().__init__((int(latent_dim),), target.temperature)
        self.flow = flow
        self.target = target

    def _energy(self, z: Tensor) -> Tensor:
        x, logdet = self.flow(z)
        return self.target.energy(x) - logdet

    def _force(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u, grad = pulled_back(self.flow, self.target)(z)
        return u, -grad


class FlowHMC:
    """HMC in the flow's latent space on U(z) = u(f(z)) − log|det ∂f/∂z| (arXiv 2112.01586).

    Uses :class:`boltzgen.samplers.mcmc.HMC` (leapfrog, Metropolis, dual-averaging
    warm-up) on a :class:`PulledBackEnergy`, and maps the latent chains back to
    configurations x = f(z).

    Args:
        model: the flow model (prior for the initial latents, flow for the map).
        energy: the target u, charged for every evaluation.
        step_size: as for :class:`HMC`, in latent space.
        n_leapfrog: as for :class:`HMC`, in latent space.
        target_acceptance: as for :class:`HMC`, in latent space.

    Example:
        >>> sampler = FlowHMC(model, energy, step_size=0.2, n_leapfrog=10)
        >>> chains = sampler.sample(n_chains=8, n_steps=500, generator=g)
    """

    def __init__(
        self,
        model: BoltzmannGenerator,
        energy: Energy,
        step_size: float = 0.1,
        n_leapfrog: int = 10,
        target_acceptance: float | None = 0.8,
    ):
        self.model = model
        self.energy = energy
        self.latent_energy = PulledBackEnergy(model.flow, energy, model.prior.dim)
        self.hmc = HMC(self.latent_energy, step_size, n_leapfrog, target_acceptance)

    def init(self, z0: Tensor) -> HMCChains:
        """Latent chains started at ``z0: [C, D]``."""
        return self.hmc.init(z0)

    def step(self, state: HMCChains, generator: torch.Generator) -> tuple[HMCChains, HMCInfo]:
        """One latent HMC transition of every chain."""
        return self.hmc.step(state, generator)

    def to_configuration(self, z: Tensor, batch_size: int = 10_000) -> tuple[Tensor, Tensor]:
        """x = f(z) ``[n, *event]`` and log|det ∂f/∂z| ``[n]``, in batches, without gradients."""
        with torch.no_grad():
            parts = [
                self.model.flow(z[s : s + batch_size]) for s in range(0, z.shape[0], batch_size)
            ]
        x, logdet = (torch.cat(p) for p in zip(*parts, strict=True))
        return x, logdet

    def sample(
        self,
        n_chains: int,
        n_steps: int,
        generator: torch.Generator,
        n_warmup: int = 500,
        thin: int = 1,
        x0: Tensor | None = None,
        progress: bool = False,
    ) -> WeightedSamples:
        """Warm up and run latent HMC chains; return them mapped to configurations.

        Args:
            n_chains: C, the number of chains.
            n_steps: as for :meth:`HMC.sample`.
            n_warmup: as for :meth:`HMC.sample`.
            thin: as for :meth:`HMC.sample`.
            generator: the only source of randomness.
            x0: ``[C, *event]`` starting configurations (mapped by the flow inverse);
                ``None`` starts from prior draws z ~ p_Z.
            progress: show progress bars.

        Returns:
            x = f(z) for every kept latent sample (step-major, ``n_chains = C``), zero
            log-weights, energies u(x) = U(z) + log|det ∂f/∂z| (no extra evaluation), the
            cost on ``energy`` plus training, and ``info`` from HMC with ``flow_evals``.
        """
        if x0 is None:
            z0 = self.model.prior.sample(n_chains, generator)
        else:
            with torch.no_grad():
                z0, _ = self.model.flow.inverse(x0)
            if z0.shape[0] != n_chains:
                raise ValueError(f"x0 has {z0.shape[0]} rows for {n_chains} chains")
        meter = CostMeter(self.energy)
        before = self.latent_energy.counter.snapshot()
        with meter.measure():
            latent = self.hmc.sample(z0, n_steps, generator, n_warmup, thin, progress)
        x, logdet = self.to_configuration(latent.x)
        spent = self.latent_energy.counter.since(before)
        info = {**latent.info, "sampler": "flow_hmc"}
        info["flow_evals"] = spent.energy + spent.force + x.shape[0] + (x0 is not None) * n_chains
        cost = meter.cost.with_training(self.model.training_cost)
        u = latent.energies + logdet
        return WeightedSamples(x, torch.zeros_like(u), u, cost, info, n_chains=n_chains)


def independence_evaluations(n_chains: int, n_steps: int) -> int:
    """Target evaluations of :meth:`FlowIndependenceMetropolis.sample`: C·(1 + n).

    One at each chain's initial draw and one per proposal (``n_steps`` counts warm-up).
    """
    return n_chains * (1 + n_steps)


def flow_hmc_evaluations(n_chains: int, n_steps: int, n_leapfrog: int) -> int:
    """Target evaluations of :meth:`FlowHMC.sample`: C·(1 + n·L), as latent-space HMC."""
    return n_chains * (1 + n_steps * n_leapfrog)
