"""Training a continuous normalizing flow's vector field by flow matching.

Lipman et al., "Flow matching for generative modeling", arXiv 2210.02747: the field
v(x, t) is regressed on the straight-line velocity x − z between a prior draw z ~ N(0, I)
and a data row x (:func:`~boltzgen.flows.ode.flow_matching_loss`), with Adam and a
cosine learning-rate decay (Loshchilov & Hutter, arXiv 1608.03983) over all steps, in
the checkpointed loop of :func:`~boltzgen.training.optimise.optimise`. No energy is
evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler

from boltzgen.flows.ode import VectorField, flow_matching_loss
from boltzgen.training.optimise import Checkpointing, History, Optimiser, optimise

CHECKPOINT_NAME = "flow_matching_checkpoint.pt"


@dataclass
class _FlowMatchingLoss:
    """The flow-matching loss of a batch of data rows paired with fresh prior draws."""

    field: VectorField
    data: Tensor
    batch_size: int

    def __call__(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        rows = torch.randint(len(self.data), (self.batch_size,), generator=generator)
        x = self.data[rows]
        shape = (self.batch_size, self.data.shape[1])
        z = torch.randn(*shape, generator=generator, dtype=self.data.dtype)
        return flow_matching_loss(self.field, z, x, generator), {}


def _cosine(steps: int) -> Callable[[torch.optim.Optimizer], LRScheduler]:
    """lr_t = lr·(1 + cos(πt/T))/2 over T = max(1, ``steps``) (torch's recursive form)."""
    return lambda optimizer: CosineAnnealingLR(optimizer, max(1, steps))


def train_flow_matching(
    field: VectorField,
    data: Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 100,
) -> History:
    """Fit ``field`` to ``data: [N, D]`` by flow matching; returns the losses and the cost.

    Args:
        field: v(x, t), trained in place.
        data: ``[N, D]`` target samples, rows drawn with replacement.
        steps: total optimiser steps; the learning rate decays from ``lr`` to 0 over them
            (so a resumed run must ask for the same number).
        batch_size: data rows (and prior draws) per step.
        lr: Adam's initial learning rate.
        generator: the only source of randomness (rows, prior draws, times t).
        checkpoint_dir: where ``flow_matching_checkpoint.pt`` is written every
            ``checkpoint_every`` steps and at the end; an existing one is resumed from.
    """
    if steps < 0 or batch_size < 1 or not lr > 0 or data.dim() != 2:
        raise ValueError(
            f"train_flow_matching needs steps ≥ 0, batch_size ≥ 1, lr > 0 and data [N, D], "
            f"got {steps}, {batch_size}, {lr}, data {list(data.shape)}"
        )
    optimiser = Optimiser.adam(field, lr, schedule=_cosine(steps))
    settings = {"steps": steps, "batch_size": batch_size, "lr": lr}
    checkpointing = Checkpointing.at(
        checkpoint_dir, CHECKPOINT_NAME, checkpoint_every, settings, frozenset({"checkpoint_every"})
    )
    loss = _FlowMatchingLoss(field, data, batch_size)
    return optimise(optimiser, loss, generator, steps, checkpointing)
