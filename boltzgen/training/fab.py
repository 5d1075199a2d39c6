"""FAB: flow annealed importance sampling bootstrap (α = 2), with a prioritised replay buffer.

Midgley, Stimper, Simm, Schölkopf, Hernández-Lobato, "Flow annealed importance sampling
bootstrap", ICLR 2023, arXiv 2208.01893. FAB trains a flow q_θ without samples of the
target p ∝ exp(−u) by minimising the α = 2 divergence D₂(p‖q) ∝ ∫ p²/q. Its gradient

    ∇_θ ∫ p²/q_θ = −∫ (p²/q_θ) ∇_θ log q_θ = −Z_g · E_g[∇_θ log q_θ],   g = p²/q_θ,

is an expectation over g, the divergence's optimal importance proposal, which FAB
estimates with annealed importance sampling (AIS; Neal, "Annealed importance sampling",
arXiv physics/9803008) started at q_θ and targeting g. With π_λ ∝ q^{1−λ} p^{λ} for
λ = α·β_j, 0 = β_0 < β_1 < … < β_M = 1 (so π at β = 1 is q^{1−α} p^{α} = g), HMC moves
T_j leaving π_{λ_j} invariant, and x_0 ~ q,

    log w = Σ_{j=1}^{M} (λ_j − λ_{j−1}) · (log p̃(x_{j−1}) − log q(x_{j−1})),

E[w·h(x_{M−1})] = Z_g · E_g[h] for any h: the weights are unbiased (AIS's extended
state-space argument), so the surrogate L(θ) = −Σ_i w̄_i log q_θ(x_i), w̄ the
self-normalised, detached weights, has the gradient above up to a positive factor.

**Where AIS runs.** In the flow's latent space: with p̃_Z(z) = p(f(z))|det ∂f/∂z| and
the prior p_Z, the path p_Z^{1−λ} p̃_Z^{λ} is the x-space path pulled back by f (both
densities carry the same Jacobian), so the weights are those of x-space AIS while HMC
moves see the better-conditioned latent geometry (as NeuTra, Hoffman et al., arXiv
1903.03704). Periodic latent coordinates (torsions of :class:`MixedPrior`) are wrapped
into (−π, π] before every evaluation: HMC on the covering space of the torus.

**Prioritised replay buffer** (the paper's Algorithm 2). Every ``buffer_updates`` steps
one AIS batch (x_i, log w_i, log q_θ(x_i)) enters a buffer of at most ``buffer_size``
points (oldest dropped). Each step draws a batch from the buffer with probability ∝ w
without replacement, minimises −mean log q_θ(x) over it, and then re-weights the drawn
points to the new flow, log w ← log w + log q_θ_old(x) − log q_θ_new(x), since the
buffer targets p²/q_θ and q_θ moved.

**Cost.** One AIS batch of B draws costs B·(1 + (M − 1)·L) target force evaluations
(u at x_0, then L leapfrog steps per transition at j = 1 … M − 1); all are charged to
the energy's counter, so the training loop reports them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.flows.base import Prior
from boltzgen.flows.circular import MixedPrior, wrap
from boltzgen.kernels import hmc
from boltzgen.kernels.potential import Potential, pulled_back
from boltzgen.metrics.weights import batch_ess
from boltzgen.samplers.importance import BoltzmannGenerator

TARGET_ACCEPTANCE = 0.65
"""HMC acceptance each intermediate distribution's step size is steered towards."""

STEP_ADAPT_RATE = 0.1
"""Gain of the step-size feedback log ε_j ← log ε_j + rate·(acceptance_j − target)."""


@dataclass(frozen=True)
class AISResult:
    """One AIS batch towards q^{1−α} p^α.

    Attributes:
        x: ``[B, *event]`` final configurations f(z_{M−1}).
        z: ``[B, D]`` their latents (periodic coordinates wrapped).
        log_w: ``[B]`` AIS log-weights (−∞ for draws outside the target's support).
        acceptance: ``[M − 1]`` mean HMC acceptance of each transition.
        log_q: ``[B]`` log q(x) of the final configurations under the flow.
        flow_log_w: ``[B]`` log p̃ − log q of the initial flow draws (their IS weights).
    """

    x: Tensor
    z: Tensor
    log_w: Tensor
    acceptance: Tensor
    log_q: Tensor
    flow_log_w: Tensor


def ais_evaluations(batch: int, n_distributions: int, n_leapfrog: int) -> int:
    """Target evaluations of one AIS batch: B·(1 + (M − 1)·L)."""
    return batch * (1 + (n_distributions - 1) * n_leapfrog)


def _wrap_latent(prior: Prior, z: Tensor) -> Tensor:
    """Periodic latent coordinates (a :class:`MixedPrior`'s torsions) wrapped to (−π, π]."""
    if isinstance(prior, MixedPrior):
        return torch.where(prior.mask, wrap(z).clamp(-math.pi, math.pi), z)
    return z


def prior_potential(prior: Prior) -> Potential:
    """U_0(z) = −log p_Z(z) and its gradient (autograd), +∞ outside the prior's support."""

    def potential(z: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            log_p = prior.log_prob(z)
            finite = torch.isfinite(log_p)
            safe = torch.where(finite, log_p, torch.zeros_like(log_p))
            (grad,) = torch.autograd.grad(-safe.sum(), z)
        return torch.where(finite, -log_p, math.inf).detach(), grad

    return potential


@dataclass(frozen=True)
class _Parts:
    """U_0 = −log p_Z and U_p = u(f(z)) − log|det ∂f/∂z| at latents ``[B]``, with gradients."""

    u0: Tensor
    g0: Tensor
    up: Tensor
    gp: Tensor

    @property
    def ok(self) -> Tensor:
        return torch.isfinite(self.u0) & torch.isfinite(self.up)

    def mix(self, lam: float) -> tuple[Tensor, Tensor]:
        """U_λ = (1 − λ)U_0 + λU_p and its gradient; +∞ (gradient 0) where either is."""
        u = torch.where(self.ok, (1.0 - lam) * self.u0 + lam * self.up, math.inf)
        grad = torch.where(self.ok[:, None], (1.0 - lam) * self.g0 + lam * self.gp, 0.0)
        return u, grad


def _annealed(prior: Potential, target: Potential, latent: Prior, lam: float) -> Potential:
    """U_λ on wrapped latents (+∞ where U_0 or U_p is)."""

    def potential(z: Tensor) -> tuple[Tensor, Tensor]:
        finite = torch.isfinite(z).all(dim=1)
        w = _wrap_latent(latent, torch.where(finite[:, None], z, 0.0))
        u, grad = _Parts(*prior(w), *target(w)).mix(lam)
        return torch.where(finite, u, math.inf), torch.where(finite[:, None], grad, 0.0)

    return potential


def _recover(prior: Potential, latent: Prior, state: hmc.HMCState, lam: float) -> _Parts:
    """U_0, U_p and gradients at the chains from U_λ = (1 − λ)U_0 + λU_p (no target call)."""
    u0, g0 = prior(_wrap_latent(latent, state.x))
    finite = torch.isfinite(state.energy)
    up = torch.where(finite, u0 + (state.energy - u0) / lam, math.inf)
    gp = g0 + (state.grad - g0) / lam
    return _Parts(u0, g0, up, gp)


def run_ais(
    model: BoltzmannGenerator,
    energy: Energy,
    n: int,
    generator: torch.Generator,
    step_sizes: Tensor,
    n_leapfrog: int = 4,
    alpha: float = 2.0,
) -> AISResult:
    """AIS from the flow towards q^{1−α} p^α with HMC in latent space (module docstring).

    Args:
        model: the flow q (its prior and flow; gradients are not tracked).
        energy: the target u, charged for every evaluation.
        n: B, the batch size.
        generator: the only source of randomness.
        step_sizes: ``[M − 1]`` HMC step sizes of the transitions; M = len + 1
            distributions after q, β_j = j / M.
        n_leapfrog: L, leapfrog steps per transition.
        alpha: α (2 for FAB, 1 for plain AIS towards p).
    """
    n_dist = step_sizes.numel() + 1
    lams = [alpha * j / n_dist for j in range(n_dist + 1)]
    u0_fn, up_fn = prior_potential(model.prior), pulled_back(model.flow, energy)
    z = model.prior.sample(n, generator)
    parts = _Parts(*u0_fn(z), *up_fn(z))
    log_w = torch.zeros_like(parts.u0)
    flow_log_w = torch.where(parts.ok, parts.u0 - parts.up, -math.inf)
    acceptance = []
    for j in range(1, n_dist + 1):
        d_lam = lams[j] - lams[j - 1]
        log_w = log_w + torch.where(parts.ok, d_lam * (parts.u0 - parts.up), -math.inf)
        if j == n_dist:
            break
        potential = _annealed(u0_fn, up_fn, model.prior, lams[j])
        state = hmc.HMCState(z, *parts.mix(lams[j]))
        state, info = hmc.step(generator, state, potential, step_sizes[j - 1], n_leapfrog)
        z = state.x
        parts = _recover(u0_fn, model.prior, state, lams[j])
        acceptance.append(info.acceptance_prob.mean())
    z = _wrap_latent(model.prior, z)
    with torch.no_grad():
        x, logdet = model.flow(z)
        log_q = model.prior.log_prob(z) - logdet
    acc = torch.stack(acceptance) if acceptance else log_w.new_zeros(0)
    return AISResult(x, z.detach(), log_w.detach(), acc, log_q, flow_log_w.detach())


def fab_loss(model: BoltzmannGenerator, x: Tensor, log_w: Tensor) -> Tensor:
    """Surrogate −Σ w̄_i log q_θ(x_i), w̄ = softmax(log w) (detached); x with w = 0 dropped."""
    keep = torch.isfinite(log_w)
    if not bool(keep.any()):
        raise FloatingPointError("every AIS weight is zero: the flow misses the target entirely")
    w = torch.softmax(log_w[keep], dim=0).detach()
    return -(w * model.log_prob(x[keep])).sum()


def adapt_step_sizes(step_sizes: Tensor, acceptance: Tensor) -> Tensor:
    """log ε_j += rate·(acceptance_j − target): a fixed-gain feedback between AIS batches.

    Each batch runs with fixed step sizes, so its weights stay unbiased.
    """
    return step_sizes * torch.exp(STEP_ADAPT_RATE * (acceptance - TARGET_ACCEPTANCE))


@dataclass
class ReplayBuffer:
    """The prioritised buffer: points x, AIS log-weights towards p²/q and log q at entry.

    Attributes:
        capacity: at most this many points (the oldest are dropped).
        x, log_w, log_q: ``[n, *event]``, ``[n]``, ``[n]`` (empty before the first batch).
    """

    capacity: int
    x: Tensor | None = None
    log_w: Tensor | None = None
    log_q: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.x is None else self.x.shape[0]

    def add(self, x: Tensor, log_w: Tensor, log_q: Tensor) -> None:
        """Append a batch (points of zero weight are skipped), keeping the newest ``capacity``."""
        keep = torch.isfinite(log_w) & torch.isfinite(log_q)
        x, log_w, log_q = x[keep], log_w[keep], log_q[keep]
        if self.x is not None:
            x = torch.cat([self.x, x])
            log_w = torch.cat([self.log_w, log_w])
            log_q = torch.cat([self.log_q, log_q])
        self.x, self.log_w, self.log_q = (v[-self.capacity :] for v in (x, log_w, log_q))

    def draw(self, n: int, generator: torch.Generator) -> Tensor:
        """Indices of ``min(n, len)`` points drawn ∝ w without replacement."""
        assert self.log_w is not None
        p = torch.softmax(self.log_w, dim=0)
        return torch.multinomial(p, min(n, len(self)), replacement=False, generator=generator)

    def reweight(self, index: Tensor, log_q_new: Tensor) -> None:
        """log w ← log w + log q_old − log q_new at ``index``; log q ← log q_new."""
        assert self.log_w is not None and self.log_q is not None
        new = log_q_new.detach()
        self.log_w[index] = self.log_w[index] + self.log_q[index] - new
        self.log_q[index] = new
        dead = ~torch.isfinite(self.log_w)
        self.log_w[dead] = -math.inf

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "x": self.x, "log_w": self.log_w, "log_q": self.log_q}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.capacity = state["capacity"]
        self.x, self.log_w, self.log_q = state["x"], state["log_w"], state["log_q"]


@dataclass
class FABObjective:
    """The FAB training step for :func:`boltzgen.training.optimise.optimise`, and its state.

    Without a buffer every step runs one AIS batch and minimises −Σ w̄ log q_θ(x). With
    one (``buffer.capacity > 0``), every ``buffer_updates`` steps an AIS batch enters the
    buffer and every step minimises −mean log q_θ over a batch drawn ∝ w, whose weights
    are then moved to the current flow (log w += log q_stored − log q_θ). Also a
    :class:`~boltzgen.training.optimise.Monitor`, so the step sizes and the buffer are
    checkpointed with the run (exact resume).

    With ``data`` and ``forward_weight`` w > 0 the loss is w·forward KL on a data batch
    plus (1 − w)·the FAB loss.
    """

    model: BoltzmannGenerator
    energy: Energy
    batch_size: int
    step_sizes: Tensor
    n_leapfrog: int
    buffer: ReplayBuffer
    buffer_updates: int = 1
    data: Tensor | None = None
    forward_weight: float = 0.0
    name: str = "fab"
    stopped: bool = False
    last_ess: float = math.nan

    def __call__(self, step: int, g: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        if self.buffer.capacity == 0:
            ais = self._ais(g)
            loss = fab_loss(self.model, ais.x, ais.log_w)
        else:
            if step % self.buffer_updates == 0:
                ais = self._ais(g)
                self.buffer.add(ais.x, ais.log_w, ais.log_q)
            loss = self._buffer_loss(g)
        if self.data is not None and self.forward_weight > 0:
            x = self.data[torch.randint(self.data.shape[0], (self.batch_size,), generator=g)]
            nll = -self.model.log_prob(x).mean()
            loss = self.forward_weight * nll + (1.0 - self.forward_weight) * loss
        return loss, {"ess_fractions": self.last_ess}

    def _ais(self, g: torch.Generator) -> AISResult:
        ais = run_ais(self.model, self.energy, self.batch_size, g, self.step_sizes, self.n_leapfrog)
        self.step_sizes = adapt_step_sizes(self.step_sizes, ais.acceptance)
        self.last_ess = batch_ess(ais.flow_log_w) / self.batch_size
        return ais

    def _buffer_loss(self, g: torch.Generator) -> Tensor:
        if len(self.buffer) == 0:
            raise FloatingPointError("the replay buffer is empty: every AIS weight was zero")
        index = self.buffer.draw(self.batch_size, g)
        assert self.buffer.x is not None
        log_q = self.model.log_prob(self.buffer.x[index])
        self.buffer.reweight(index, log_q)
        ok = torch.isfinite(log_q)
        return -log_q[ok].mean()

    def after_step(self, step: int) -> bool:
        return False

    def postfix(self) -> dict[str, str]:
        return {"ais_eps": f"{float(self.step_sizes.mean()):.3g}"}

    def state_dict(self) -> dict[str, Any]:
        return {"step_sizes": self.step_sizes, "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_sizes = state["step_sizes"]
        self.buffer.load_state_dict(state["buffer"])
