"""The SNF method: a stochastic normalizing flow trained end to end by the path KL.

Wu, Köhler, Noé 2020, "Stochastic normalizing flows", arXiv 2002.06707: spline coupling
layers interleaved with stochastic blocks (Langevin, MALA or Metropolis) on
u_λ = (1 − λ)u_Z + λu, λ_i = i / n_blocks rising to 1; every block's target evaluation
is charged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch

from boltzgen.flows import GaussianPrior, make_spline_flow
from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.base import MethodContext, to_cpu
from boltzgen.runner.methods.budget import largest_within
from boltzgen.samplers.snf import (
    LangevinBlock,
    MALABlock,
    MetropolisBlock,
    StochasticNormalizingFlow,
    snf_evaluations,
)
from boltzgen.systems import System
from boltzgen.training import train_snf

BLOCKS = {"langevin": LangevinBlock, "mala": MALABlock, "metropolis": MetropolisBlock}


@dataclass(frozen=True)
class SNFParams:
    """Flow layers and stochastic blocks alternating; λ_i = i / n_blocks."""

    n_blocks: int = 4
    block: Literal["langevin", "mala", "metropolis"] = "mala"
    block_steps: int = 5
    step_size: float = 0.05
    hidden: int = 64
    n_bins: int = 8
    tail_bound: float = 5.0
    train_steps: int = 500
    batch_size: int = 256
    lr: float = 1e-3
    n_samples: int = 10_000

    def __post_init__(self) -> None:
        if self.n_blocks < 1 or self.block_steps < 1:
            raise ValueError("snf needs n_blocks ≥ 1 and block_steps ≥ 1")


def build_snf(system: System, p: SNFParams, seed: int) -> StochasticNormalizingFlow:
    """The untrained SNF: spline layer i, then a stochastic block at λ = (i + 1) / n_blocks."""
    dim = system.energy.dim
    layers = list(
        make_spline_flow(dim, p.n_blocks, p.hidden, p.n_bins, p.tail_bound, seed=seed).layers
    )
    blocks: list[torch.nn.Module] = []
    for i, layer in enumerate(layers):
        blocks.append(layer)
        blocks.append(BLOCKS[p.block]((i + 1) / p.n_blocks, p.step_size, p.block_steps))
    return StochasticNormalizingFlow(GaussianPrior(dim), blocks, system.energy)


def run(
    system: System, params: SNFParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """Train (resuming from the task's checkpoint), then draw ``n_samples`` weighted paths."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    snf = build_snf(system, params, seed)
    g = torch.Generator().manual_seed(seed + 1)
    train_snf(
        snf, params.train_steps, params.batch_size, params.lr, g, checkpoint_dir=context.checkpoint
    )
    return to_cpu(snf.sample(params.n_samples, g))


def fit_budget(params: SNFParams, budget: int, system: System) -> SNFParams:
    """Training as planned (``train_steps · batch_size`` paths); the samples spend the rest."""
    trained = params.train_steps * params.batch_size
    n = largest_within(
        lambda n: snf_evaluations(trained + n, params.n_blocks, params.block_steps), budget
    )
    if n < 2:
        raise ValueError(f"snf: a budget of {budget} evaluations does not cover its training")
    return replace(params, n_samples=n)
