"""The SNF method: a stochastic normalizing flow trained end to end by the path KL.

Wu, Köhler, Noé 2020, "Stochastic normalizing flows", arXiv 2002.06707: coupling layers
interleaved with stochastic blocks (Langevin, MALA or Metropolis) on
u_λ = (1 − λ)u_Z + λu, λ_i = i / n_blocks rising to 1; every block's target evaluation
is charged. The layers and prior are the system's: on a lattice action the family of
:func:`~boltzgen.runner.methods.flows.lattice_flow_kind` (U(1) links: gauge-equivariant
couplings and the uniform Haar prior; scalar fields: checkerboard couplings and a normal
prior), elsewhere spline couplings with a standard normal prior.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch

from boltzgen.flows import Flatten, Flow, GaussianPrior, Prior, make_spline_flow
from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.base import MethodContext, to_cpu
from boltzgen.runner.methods.budget import largest_within
from boltzgen.runner.methods.flows import FlowParams, build_generator, lattice_flow_kind
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


def flow_layers(system: System, p: SNFParams, seed: int) -> tuple[Prior, list[Flow]]:
    """The prior and ``n_blocks`` flow layers on flat ``[B, D]`` (untrained, the identity).

    A lattice action gets its own family (:func:`lattice_flow_kind`), built as the flow
    methods build it, with ``hidden`` channels and ``n_bins`` components or bins, less the
    final reshape to the event shape (the blocks work on flat ``y``); any other system
    spline couplings with ``hidden`` units, ``n_bins`` bins on ±``tail_bound``.
    """
    kind = lattice_flow_kind(system.energy)
    if kind is None:
        dim = system.energy.dim
        flow = make_spline_flow(dim, p.n_blocks, p.hidden, p.n_bins, p.tail_bound, seed=seed)
        return GaussianPrior(dim), list(flow.layers)
    sizes = FlowParams(
        kind=kind, n_layers=p.n_blocks, hidden=p.hidden, n_bins=p.n_bins, tail_bound=p.tail_bound
    )
    model = build_generator(system, sizes, seed)
    return model.prior, [layer for layer in model.flow.layers if not isinstance(layer, Flatten)]


def build_snf(system: System, p: SNFParams, seed: int) -> StochasticNormalizingFlow:
    """The untrained SNF: flow layer i, then a stochastic block at λ = (i + 1) / n_blocks."""
    prior, layers = flow_layers(system, p, seed)
    blocks: list[torch.nn.Module] = []
    for i, layer in enumerate(layers):
        blocks.append(layer)
        blocks.append(BLOCKS[p.block]((i + 1) / p.n_blocks, p.step_size, p.block_steps))
    return StochasticNormalizingFlow(prior, blocks, system.energy)


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
