"""Training a stochastic normalizing flow end to end by the path KL.

Wu, Köhler, Noé, "Stochastic normalizing flows", NeurIPS 2020, arXiv 2002.06707: the
flow layers and the step sizes of the stochastic blocks are trained together by Adam
on E[−log w] (:func:`~boltzgen.samplers.snf.path_kl_loss`), with gradients through the
reparameterised noise of every block, in the checkpointed loop of
:func:`~boltzgen.training.optimise.optimise`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from boltzgen.metrics.weights import batch_ess
from boltzgen.records import Cost
from boltzgen.samplers.snf import StochasticNormalizingFlow, path_kl_loss
from boltzgen.training.optimise import Checkpointing, Optimiser, optimise

CHECKPOINT_NAME = "snf_checkpoint.pt"


@dataclass
class SNFTrainResult:
    """Per-step losses and batch ESS fractions, the training cost, the resumed step."""

    losses: list[float] = field(default_factory=list)
    ess_fractions: list[float] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)
    resumed_from: int = 0


@dataclass
class _PathKL:
    """The path-KL loss of ``batch_size`` paths and their Kish ESS fraction."""

    snf: StochasticNormalizingFlow
    batch_size: int
    energy_cap: float

    def __call__(self, step: int, g: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        loss, log_w = path_kl_loss(self.snf, self.batch_size, g, self.energy_cap)
        return loss, {"ess_fractions": batch_ess(log_w) / self.batch_size}


def train_snf(
    snf: StochasticNormalizingFlow,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    grad_clip: float | None = 100.0,
    energy_cap: float = 1e3,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 100,
) -> SNFTrainResult:
    """Train flow layers and step sizes end to end by Adam on the path KL.

    Args:
        snf: trained in place; its ``training_cost`` is set to the returned cost.
        steps: total optimiser steps (a resumed run continues up to this number).
        batch_size: paths per step.
        lr: Adam's learning rate.
        generator: the only source of randomness; its state is checkpointed.
        grad_clip: maximum global gradient norm (``None``: no clipping).
        energy_cap: see :func:`~boltzgen.samplers.snf.path_kl_loss`.
        checkpoint_dir: where ``snf_checkpoint.pt`` is written every ``checkpoint_every``
            steps and at the end; an existing one is resumed from (same lr and batch).
    """
    if steps < 0 or batch_size < 1 or checkpoint_every < 1 or not lr > 0:
        raise ValueError("train_snf needs steps ≥ 0, batch_size ≥ 1, lr > 0, checkpoint_every ≥ 1")
    settings = {
        "batch_size": batch_size,
        "lr": lr,
        "grad_clip": grad_clip,
        "energy_cap": energy_cap,
    }
    history = optimise(
        Optimiser.adam(snf, lr, grad_clip=grad_clip, hint="lower lr or the step sizes"),
        _PathKL(snf, batch_size, energy_cap),
        generator,
        steps,
        Checkpointing.at(checkpoint_dir, CHECKPOINT_NAME, checkpoint_every, settings),
        ("ess_fractions",),
        snf.energy,
    )
    snf.training_cost = history.cost
    return SNFTrainResult(
        history.losses, history.metrics["ess_fractions"], history.cost, history.resumed_from
    )
