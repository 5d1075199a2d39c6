"""Batched Hamiltonian Monte Carlo: many independent chains in one tensor.

HMC (Duane, Kennedy, Pendleton, Roweth, "Hybrid Monte Carlo", Phys. Lett. B 195, 1987;
Neal, "MCMC using Hamiltonian dynamics", arXiv 1206.1901) samples p(x) ∝ exp(−u(x))
by adding momenta p ~ N(0, M) and simulating the Hamiltonian

    H(x, p) = u(x) + ½ pᵀM⁻¹p

with the leapfrog integrator, which is volume preserving and time reversible, so a
Metropolis test on the energy error ΔH = H(x', p') − H(x, p) makes the kernel exact.

The transition is the kernel :func:`boltzgen.kernels.hmc.step` (momentum draw →
leapfrog → Metropolis) on the potential of the target energy; :class:`HMC` adds
``init`` / ``warmup`` / ``sample``. During warm-up the step size is tuned toward a
target acceptance probability by dual averaging (Hoffman & Gelman, "The No-U-Turn
Sampler", arXiv 1111.4246, Algorithm 5); afterwards it is frozen, so the sampling kernel
is fixed and satisfies detailed balance.

Cost: one force evaluation per chain at ``init`` and ``n_leapfrog`` per chain per step
(the gradient at the current point is carried in the state); no energy-only evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzgen.energies.base import Energy
from boltzgen.kernels import hmc
from boltzgen.kernels.adaptation import DualAveraging
from boltzgen.kernels.potential import from_energy
from boltzgen.records import CostMeter, WeightedSamples


@dataclass(frozen=True)
class HMCChains:
    """State of ``C`` HMC chains.

    Attributes:
        x: ``[C, *event]`` current configurations.
        energy: ``[C]`` u(x).
        grad: ``[C, *event]`` ∇u(x).
        step_size: leapfrog step ε, a scalar ``[]`` shared by all chains or ``[C]``.
    """

    x: Tensor
    energy: Tensor
    grad: Tensor
    step_size: Tensor


class HMC:
    """Hamiltonian Monte Carlo on ``C`` chains at once, with warm-up step-size adaptation.

    Adaptation is shared: one dual-averaging update per step, driven by the acceptance
    probability averaged over chains, scales every chain's ε by the same factor (a
    ``[C]`` initial ε keeps its ratios). Averaging over chains removes most of the
    noise that makes single-chain adaptation overshoot. On low-dimensional, nearly
    harmonic targets the acceptance falls from ~0.9 to 0 within ~15% of the leapfrog
    stability limit ε = 2/ω_max; a target of 0.7 or lower then sits on that cliff, the
    iterates oscillate across it, and 500 warm-up steps can end well above the target
    (0.95 for a target of 0.7 on a 2-D Gaussian with L = 5).

    Args:
        energy: the target u(x); every force evaluation is charged to its counter.
        step_size: initial leapfrog step ε, a number or a ``[C]`` tensor (per chain).
        n_leapfrog: leapfrog steps per proposal L (trajectory length L·ε).
        target_acceptance: mean acceptance probability that warm-up tunes ε toward by
            dual averaging; ``None`` keeps ε fixed (warm-up is then plain burn-in).
        inverse_mass: diagonal of M⁻¹, shape ``event_shape`` (``None``: identity).

    Example:
        >>> hmc = HMC(energy, step_size=0.1, n_leapfrog=10)
        >>> samples = hmc.sample(x0, n_steps=1000, generator=torch.Generator().manual_seed(0))
    """

    def __init__(
        self,
        energy: Energy,
        step_size: float | Tensor = 0.1,
        n_leapfrog: int = 10,
        target_acceptance: float | None = 0.8,
        inverse_mass: Tensor | None = None,
    ):
        if n_leapfrog < 1:
            raise ValueError(f"n_leapfrog must be a positive integer, got {n_leapfrog}")
        if not bool((torch.as_tensor(step_size) > 0).all()):
            raise ValueError(f"step_size must be positive, got {step_size}")
        if target_acceptance is not None and not 0.0 < target_acceptance < 1.0:
            raise ValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance}")
        if inverse_mass is not None and (
            tuple(inverse_mass.shape) != energy.event_shape or not bool((inverse_mass > 0).all())
        ):
            raise ValueError(
                f"inverse_mass must be positive with shape {list(energy.event_shape)}, "
                f"got shape {list(inverse_mass.shape)}"
            )
        self.energy = energy
        self.potential = from_energy(energy)
        self.step_size = step_size
        self.n_leapfrog = int(n_leapfrog)
        self.target_acceptance = target_acceptance
        self.inverse_mass = inverse_mass

    def init(self, x0: Tensor) -> HMCChains:
        """Chains started at ``x0: [C, *event]`` (one force evaluation per chain)."""
        u, grad = self.potential(x0)
        bad = torch.nonzero(~torch.isfinite(u)).flatten().tolist()
        if bad:
            raise ValueError(
                f"initial configurations of chains {bad[:10]} have non-finite energy; "
                "start every chain from a valid configuration"
            )
        eps = torch.as_tensor(self.step_size, dtype=x0.dtype, device=x0.device)
        if eps.dim() > 1 or (eps.dim() == 1 and eps.shape[0] != x0.shape[0]):
            raise ValueError(
                f"step_size must be a number or a [{x0.shape[0]}] tensor, got {list(eps.shape)}"
            )
        return HMCChains(x0.detach(), u, grad, eps.clone())

    def step(self, state: HMCChains, generator: torch.Generator) -> tuple[HMCChains, hmc.HMCInfo]:
        """One HMC transition of every chain with the state's fixed step size."""
        inv_m = None if self.inverse_mass is None else self.inverse_mass.to(state.x)
        position = hmc.HMCState(state.x, state.energy, state.grad)
        new, info = hmc.step(
            generator, position, self.potential, state.step_size, self.n_leapfrog, inv_m
        )
        return HMCChains(new.x, new.energy, new.grad, state.step_size), info

    def warmup(
        self, state: HMCChains, n_warmup: int, generator: torch.Generator, progress: bool = False
    ) -> HMCChains:
        """``n_warmup`` steps adapting ε by dual averaging; returns the state with ε̄ frozen.

        With ``target_acceptance=None`` these are plain burn-in steps at fixed ε.
        """
        if self.target_acceptance is None or n_warmup == 0:
            for _ in tqdm(range(n_warmup), desc="HMC warm-up", disable=not progress):
                state, _ = self.step(state, generator)
            return state
        adapt = DualAveraging(self.target_acceptance)
        dual = adapt.init(state.step_size)
        for _ in tqdm(range(n_warmup), desc="HMC warm-up", disable=not progress):
            state, info = self.step(state, generator)
            dual = adapt.update(dual, info.acceptance_prob.mean())
            state = replace(state, step_size=dual.log_step.exp())
        return replace(state, step_size=dual.log_step_avg.exp())

    def sample(
        self,
        x0: Tensor,
        n_steps: int,
        generator: torch.Generator,
        n_warmup: int = 500,
        thin: int = 1,
        progress: bool = False,
    ) -> WeightedSamples:
        """Warm up, then run ``n_steps`` steps of every chain, keeping every ``thin``-th.

        Args:
            x0: ``[C, *event]`` starting configurations, one per chain.
            n_steps: sampling steps after warm-up, a positive multiple of ``thin``.
            generator: the only source of randomness.
            n_warmup: adaptation / burn-in steps, discarded.
            thin: keep the state after every ``thin``-th step.
            progress: show tqdm progress bars.

        Returns:
            ``n_steps // thin · C`` samples in step-major order (``n_chains = C``) with
            zero log-weights; ``cost`` counts every evaluation, warm-up included.
        """
        if n_warmup < 0 or thin < 1 or n_steps < thin or n_steps % thin:
            raise ValueError(
                f"need n_warmup ≥ 0 and n_steps a positive multiple of thin ≥ 1, got "
                f"n_warmup={n_warmup}, n_steps={n_steps}, thin={thin}"
            )
        meter = CostMeter(self.energy)
        with meter.measure():
            state = self.warmup(self.init(x0), n_warmup, generator, progress)
            x, u, accepted, prob = self._run(state, n_steps, thin, generator, progress)
        rate = accepted / n_steps
        info = {
            "sampler": "hmc",
            "acceptance": float(rate.mean()),
            "acceptance_prob": float(prob.mean() / n_steps),
            "acceptance_per_chain": rate.tolist(),
            "step_size": state.step_size.tolist(),
            "n_warmup": n_warmup,
            "n_steps": n_steps,
            "n_leapfrog": self.n_leapfrog,
            "thin": thin,
            "target_acceptance": self.target_acceptance,
        }
        flat_x = x.reshape((-1, *x.shape[2:]))
        flat_u = u.reshape(-1)
        return WeightedSamples(
            flat_x, torch.zeros_like(flat_u), flat_u, meter.cost, info, n_chains=x.shape[1]
        )

    def _run(
        self, state: HMCChains, n_steps: int, thin: int, generator: torch.Generator, progress: bool
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sampling loop: kept ``x [T, C, *event]``, ``u [T, C]``, accept counts and Σα ``[C]``."""
        n_keep = n_steps // thin
        x = state.x.new_empty((n_keep, *state.x.shape))
        u = state.energy.new_empty((n_keep, state.energy.shape[0]))
        accepted = torch.zeros_like(state.energy)
        prob = torch.zeros_like(state.energy)
        for i in tqdm(range(n_steps), desc="HMC sampling", disable=not progress):
            state, info = self.step(state, generator)
            accepted += info.accepted
            prob += info.acceptance_prob
            if (i + 1) % thin == 0:
                x[i // thin] = state.x
                u[i // thin] = state.energy
        return x, u, accepted, prob


def hmc_evaluations(n_chains: int, n_steps: int, n_leapfrog: int) -> int:
    """Target evaluations of :meth:`HMC.sample`: C·(1 + n·L).

    One force at each chain's start, then L per step and chain (``n_steps`` counts warm-up
    and sampling steps alike).
    """
    return n_chains * (1 + n_steps * n_leapfrog)


def initial_step_size(
    energy: Energy, x0: Tensor, step_size: float, generator: torch.Generator, max_halvings: int = 8
) -> float:
    """A leapfrog step ε that the chains at ``x0: [C, *event]`` can take: ``step_size``
    halved until one leapfrog step has mean acceptance probability ≥ 1/2.

    The search of Hoffman & Gelman ("The No-U-Turn Sampler", arXiv 1111.4246,
    Algorithm 4), halving only: a start for dual averaging when ``step_size`` may be far
    above the stability limit (stiff pair potentials, large N), where no proposal of a
    full trajectory would be accepted and a short warm-up cannot recover. Costs
    C·(1 + k) force evaluations for k trials (at most :func:`step_search_evaluations`).
    """
    probe = HMC(energy, step_size, n_leapfrog=1, target_acceptance=None)
    state = probe.init(x0)
    eps = float(step_size)
    for _ in range(max_halvings):
        trial = replace(state, step_size=torch.as_tensor(eps, dtype=x0.dtype))
        _, info = probe.step(trial, generator)
        if float(info.acceptance_prob.mean()) >= 0.5:
            break
        eps /= 2
    return eps


def step_search_evaluations(n_chains: int, max_halvings: int = 8) -> int:
    """The most evaluations :func:`initial_step_size` spends: C·(1 + max_halvings)."""
    return n_chains * (1 + max_halvings)
