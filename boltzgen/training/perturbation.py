"""Training the latent scale σ_z(x') of flow perturbation.

Peng & Gao, "Flow perturbation to accelerate unbiased sampling of Boltzmann
distribution", arXiv 2407.10666: σ_z is fitted so that the perturbation weights have
small variance (:meth:`~boltzgen.samplers.flow_perturbation.FlowPerturbation.scale_loss`),
by Adam in the checkpointed loop of :func:`~boltzgen.training.optimise.optimise`. Only
the scale is trained; the flow is left unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from boltzgen.samplers.flow_perturbation import FlowPerturbation, ScaleObjective
from boltzgen.training.optimise import Checkpointing, Optimiser, optimise

CHECKPOINT_NAME = "perturbation_scale_checkpoint.pt"


@dataclass
class _ScaleLoss:
    """The scale loss on ``batch_size`` fresh paths; no metrics."""

    fp: FlowPerturbation
    batch_size: int
    objective: ScaleObjective

    def __call__(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        return self.fp.scale_loss(self.batch_size, generator, self.objective), {}


def train_perturbation_scale(
    fp: FlowPerturbation,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    objective: ScaleObjective = "norm",
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 100,
) -> list[float]:
    """Fit ``fp.scale`` by Adam on :meth:`FlowPerturbation.scale_loss`; returns the losses.

    Only flow pushes and pulls are spent (no target energy); the flow is not changed.
    ``steps`` is the total number of optimiser steps: with ``checkpoint_dir``, a
    checkpoint of the scale is written every ``checkpoint_every`` steps and at the end,
    and an existing one is resumed from.
    """
    if steps < 0 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need steps ≥ 0, batch_size ≥ 1, lr > 0, got {steps, batch_size, lr}")
    settings = {"batch_size": batch_size, "lr": lr, "objective": objective}
    history = optimise(
        Optimiser.adam(fp.scale, lr),
        _ScaleLoss(fp, batch_size, objective),
        generator,
        steps,
        Checkpointing.at(checkpoint_dir, CHECKPOINT_NAME, checkpoint_every, settings),
    )
    return history.losses
