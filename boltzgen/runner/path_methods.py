"""Experiment methods with path weights: stochastic normalizing flows, flow perturbation.

* ``snf`` — spline coupling layers interleaved with stochastic blocks (Langevin, MALA
  or Metropolis) on u_λ = (1−λ)u_Z + λu, λ rising to 1, trained end to end by the path
  KL (Wu, Köhler, Noé 2020).
* ``flow_perturbation`` — a continuous normalizing flow trained by flow matching on
  reference samples, weighted without its log-determinant by perturbations with a
  trained scale (Peng & Gao 2024); ``n_segments > 1`` perturbs every piece of the ODE
  (the multi-step, variance-reduced form).

Both charge every target evaluation; flow matching evaluates no energy, but its
training data are charged (exact toy draws one evaluation each, reference frames the
cost per frame of the run that made them; see :func:`boltzgen.runner.methods.data_charge`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from boltzgen.flows import GaussianPrior, make_spline_flow
from boltzgen.flows.ode import ContinuousFlow, VectorField
from boltzgen.records import Cost, WeightedSamples
from boltzgen.runner.methods import (
    TrainingData,
    TrainParams,
    _training_data,
    data_charge,
    to_cpu,
)
from boltzgen.samplers.flow_perturbation import FlowPerturbation
from boltzgen.samplers.snf import (
    LangevinBlock,
    MALABlock,
    MetropolisBlock,
    StochasticNormalizingFlow,
)
from boltzgen.systems import System
from boltzgen.training import train_flow_matching, train_perturbation_scale, train_snf

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
    dim = system.energy.dim
    layers = list(
        make_spline_flow(dim, p.n_blocks, p.hidden, p.n_bins, p.tail_bound, seed=seed).layers
    )
    blocks: list[torch.nn.Module] = []
    for i, layer in enumerate(layers):
        blocks.append(layer)
        blocks.append(BLOCKS[p.block]((i + 1) / p.n_blocks, p.step_size, p.block_steps))
    return StochasticNormalizingFlow(GaussianPrior(dim), blocks, system.energy)


def run_snf(
    system: System,
    params: SNFParams,
    generator: torch.Generator,
    checkpoint_dir: Path | None,
    progress: bool,
) -> WeightedSamples:
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    snf = build_snf(system, params, seed)
    g = torch.Generator().manual_seed(seed + 1)
    train_snf(
        snf, params.train_steps, params.batch_size, params.lr, g, checkpoint_dir=checkpoint_dir
    )
    return to_cpu(snf.sample(params.n_samples, g))


def _per_path(p: SNFParams) -> int:
    """Target evaluations (with forces) of one path: each block's start and its steps."""
    return p.n_blocks * (p.block_steps + 1)


def fit_snf(params: SNFParams, budget: int, system: System) -> SNFParams:
    """Training as planned; the samples spend the rest."""
    per_path = _per_path(params)
    left = budget - params.train_steps * params.batch_size * per_path
    n = left // per_path
    if n < 2:
        raise ValueError(f"snf: a budget of {budget} evaluations does not cover its training")
    return replace(params, n_samples=int(n))


@dataclass(frozen=True)
class FlowPerturbationParams:
    """A flow-matched CNF weighted by trained perturbations."""

    hidden: int = 64
    n_layers: int = 2
    ode_steps: int = 10
    train_steps: int = 1000
    batch_size: int = 256
    lr: float = 3e-3
    n_data: int = 20_000
    sigma: float = 1e-3
    estimator: Literal["path", "radial"] = "path"
    n_segments: int = 1
    scale_steps: int = 300
    n_samples: int = 10_000


def _data_stage(p: FlowPerturbationParams) -> TrainParams:
    """Flow matching's data, drawn and charged as forward-KL data of ``n_data`` samples."""
    return TrainParams(loss="forward_kl", n_data=p.n_data)


def _trained_field(
    system: System, p: FlowPerturbationParams, seed: int, g: torch.Generator, folder: Path | None
) -> tuple[VectorField, Cost, TrainingData]:
    """Flow matching on the training data (charged, see :func:`~boltzgen.runner.methods.
    data_charge`); the field is saved and reloaded from ``folder``."""
    field = VectorField(system.energy.dim, p.hidden, p.n_layers, seed=seed)
    data = _training_data(system, _data_stage(p), g)
    saved = None if folder is None else folder / "field.pt"
    if saved is not None and saved.exists():
        state = torch.load(saved, weights_only=True)
        field.load_state_dict(state["field"])
        return field, Cost.from_dict(state["cost"]), data
    start = time.perf_counter()
    rows = data.x.reshape(len(data.x), -1).to(torch.float64)
    train_flow_matching(field, rows, p.train_steps, p.batch_size, p.lr, g, folder)
    cost = Cost(
        data.cost.energy_evals,
        data.cost.force_evals,
        data.cost.wall_s + time.perf_counter() - start,
    )
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"field": field.state_dict(), "cost": cost.to_dict()}, saved)
    return field, cost, data


def run_flow_perturbation(
    system: System,
    params: FlowPerturbationParams,
    generator: torch.Generator,
    checkpoint_dir: Path | None,
    progress: bool,
) -> WeightedSamples:
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    g = torch.Generator().manual_seed(seed + 1)
    field, cost, data = _trained_field(system, params, seed, g, checkpoint_dir)
    cnf = ContinuousFlow(field, n_steps=params.ode_steps)
    steps = cnf if params.n_segments == 1 else cnf.segments(params.n_segments)
    prior = GaussianPrior(system.energy.dim)
    fp = FlowPerturbation(prior, steps, system.energy, params.sigma, estimator=params.estimator)
    train_perturbation_scale(fp, params.scale_steps, params.batch_size, 1e-2, g)
    samples = fp.sample(params.n_samples, g)
    samples.cost = samples.cost.with_training(cost)
    samples.info["training_data"] = [{"stage": "flow_matching", **data.record()}]
    return to_cpu(samples)


def fit_flow_perturbation(
    params: FlowPerturbationParams, budget: int, system: System
) -> FlowPerturbationParams:
    """One target evaluation per sample; flow matching spends only its data's charge."""
    left = budget - data_charge(system, _data_stage(params))
    if left < 2:
        raise ValueError(
            f"flow_perturbation: a budget of {budget} evaluations leaves {left} after the "
            f"charge of its {params.n_data} training samples"
        )
    return replace(params, n_samples=int(left))
