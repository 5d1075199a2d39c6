"""Training a hot-to-cold flow on hot equilibrium samples (arXiv 2404.09914).

Minimises L(θ) = E_{z ~ p_hot}[u_cold(f_θ(z)) − log|det ∂f_θ/∂z|] over minibatches of hot
samples with the one checkpointed loop (:func:`boltzgen.training.optimise.optimise`).
L(θ) = KL(q_θ ‖ p_cold) − ln Z_cold − E[u_hot] − ln Z_hot: lower is better.

Minibatches come either from a fixed set of hot samples (drawn with replacement) or from
a stream of fresh ones (:class:`boltzgen.samplers.temperature_map.HotChains`, batched hot
chains advanced between steps). A fixed set of a few hundred configurations is fitted,
not learned from: the minibatch gradient is dominated by the forces on each particle of
each configuration, and the held-out loss rises while the training loss falls. With fresh
samples no configuration is seen twice, so every minibatch loss is an unbiased estimate
of L(θ) and training can only overfit the stream's recent past. Every u_cold evaluation
(and every hot sweep of a stream sharing the counter) is charged to the cold energy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.flows.base import Flow
from boltzgen.training.optimise import Checkpointing, History, Optimiser, optimise

HotBatches = Callable[[int, torch.Generator], Tensor]
"""``(step, generator) -> z: [B, *event]``: the hot configurations of one training step."""

CHECKPOINT_NAME = "temperature_map_checkpoint.pt"

DEFAULT_WEIGHT_DECAY = 0.0
"""Adam's L2 penalty when none is given (no penalty): the one default of the training and
of the runner's ``temperature_map`` method."""


@runtime_checkable
class StatefulBatches(Protocol):
    """A :data:`HotBatches` stream with a state of its own (e.g. the hot chains)."""

    def __call__(self, step: int, generator: torch.Generator) -> Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, saved: Mapping[str, Any]) -> None: ...


@dataclass
class StreamCheckpoint:
    """Keeps a stateful stream in the training checkpoint under ``name``.

    A :class:`~boltzgen.training.optimise.Monitor` that never stops the run: the loop saves
    its state with every checkpoint and loads it on resume.
    """

    stream: StatefulBatches
    name: str = "hot_stream"
    stopped: bool = False

    def after_step(self, step: int) -> bool:
        return False

    def postfix(self) -> dict[str, str]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stream.load_state_dict(state)


def fixed_batches(hot_samples: Tensor, batch_size: int) -> HotBatches:
    """Minibatches of ``batch_size`` drawn with replacement from ``hot_samples: [n, *event]``."""

    def draw(step: int, generator: torch.Generator) -> Tensor:
        index = torch.randint(hot_samples.shape[0], (batch_size,), generator=generator)
        return hot_samples[index]

    return draw


def train_temperature_map(
    flow: Flow,
    cold: Energy,
    hot: Tensor | HotBatches,
    generator: torch.Generator,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    grad_clip: float | None = 10.0,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    t_hot: float | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 100,
    progress: bool = False,
) -> History:
    """Train ``flow`` to push hot configurations towards exp(−u_cold).

    Args:
        hot: a fixed set ``[n, *event]`` (minibatches of ``batch_size`` with replacement)
            or a :data:`HotBatches` stream of fresh configurations (its own batch size).
        weight_decay: L2 penalty of Adam.
        t_hot: the hot samples' temperature; given, the loss carries the Stein control
            variate of :func:`stein_term` (same expected gradient, far less noise).
        checkpoint_dir: where ``temperature_map_checkpoint.pt`` is written every
            ``checkpoint_every`` steps and at the end (with a stateful stream's state);
            an existing one is resumed from (same settings).
        progress: show a progress bar with the loss and the evaluations spent.
    """
    batches = fixed_batches(hot, batch_size) if isinstance(hot, Tensor) else hot
    settings = {
        "batch_size": batch_size if isinstance(hot, Tensor) else None,
        "lr": lr,
        "grad_clip": grad_clip,
        "weight_decay": weight_decay,
        "t_hot": t_hot,
    }
    checkpointing = Checkpointing.at(checkpoint_dir, CHECKPOINT_NAME, checkpoint_every, settings)
    keeper = StreamCheckpoint(hot) if isinstance(hot, StatefulBatches) else None

    def objective(step: int, generator: torch.Generator):
        z = batches(step, generator)
        if t_hot is not None:
            z = z.detach().requires_grad_(True)
        x, logdet = flow(z)
        loss = cold.energy(x) - logdet
        if t_hot is not None:
            loss = loss - stein_term(cold, z, x, t_hot / cold.temperature, generator)
        return loss.mean(), {"mean_logdet": float(logdet.mean().detach())}

    optimiser = Optimiser.adam(flow, lr, weight_decay=weight_decay, grad_clip=grad_clip)
    return optimise(
        optimiser,
        objective,
        generator,
        steps,
        checkpointing,
        metrics=("mean_logdet",),
        counter=cold,
        monitor=keeper,
        progress=progress,
    )


def stein_term(
    cold: Energy, z: Tensor, x: Tensor, ratio: float, generator: torch.Generator
) -> Tensor:
    """A zero-mean control variate ``[B]`` for the gradient of the loss, T_h/T_c = ``ratio``.

    For z ~ p_hot ∝ exp(−u_hot) and any smooth periodic field φ, Stein's identity
    (integration by parts on the torus) gives E[∇u_hot(z)·φ(z) − ∇·φ(z)] = 0. With
    φ = ∂f_θ/∂θ and ∇u_cold = (T_h/T_c) ∇u_hot this makes

        c(z) = ∇u_cold(z)·w(z) − (T_h/T_c) ∇·w(z),   w(z) = f(z) − z (minimum image),

    a term whose θ-gradient has mean zero, while near the identity it cancels the
    first-order change u_cold(f(z)) − u_cold(z) ≈ ∇u_cold(z)·w(z), whose gradient, the
    force on every particle of every configuration, is what makes minibatch gradients of
    the plain loss noise. ∇·w = tr J_f − Nd is estimated without bias by Hutchinson's
    εᵀJ_f ε (Rademacher ε), one more backward pass; ∇u_cold(z) costs one force evaluation
    per configuration (charged). ``z`` must require grad and ``x = f(z)``.
    """
    force = cold.force(z.detach())
    box = cold.box
    w = x - z
    w = w - box * torch.round(w.detach() / box)
    eps = torch.randint(0, 2, z.shape, generator=generator).to(z) * 2 - 1
    (vjp,) = torch.autograd.grad(x, z, grad_outputs=eps, create_graph=True)
    trace = (vjp * eps).flatten(1).sum(1)
    return -(force * w).flatten(1).sum(1) - ratio * trace
