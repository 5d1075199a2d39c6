"""The flow-perturbation method: a flow-matched CNF weighted by trained perturbations.

Peng & Gao 2024, "Flow perturbation to accelerate unbiased sampling of Boltzmann
distribution", arXiv 2407.10666: a continuous normalizing flow trained by flow matching
on reference samples, weighted without its log-determinant by perturbations with a
trained scale; ``n_segments > 1`` perturbs every piece of the ODE (the multi-step,
variance-reduced form). Flow matching evaluates no energy, but its training data are
charged (see :func:`~boltzgen.runner.methods.training.data_charge`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from boltzgen.flows import GaussianPrior
from boltzgen.flows.ode import ContinuousFlow, VectorField
from boltzgen.records import Cost, WeightedSamples
from boltzgen.records.files import notice
from boltzgen.runner.methods.base import MethodContext, to_cpu
from boltzgen.runner.methods.budget import largest_within
from boltzgen.runner.methods.training import TrainingData, TrainParams, data_charge, training_data
from boltzgen.samplers.flow_perturbation import FlowPerturbation, flow_perturbation_evaluations
from boltzgen.systems import System
from boltzgen.training import train_flow_matching, train_perturbation_scale
from boltzgen.training.checkpoint import load_good_checkpoint, save_checkpoint


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


def trained_field(
    system: System, p: FlowPerturbationParams, seed: int, g: torch.Generator, folder: Path | None
) -> tuple[VectorField, Cost, TrainingData]:
    """Flow matching on the training data (charged); the field is saved to and reloaded
    from ``folder``."""
    field = VectorField(system.energy.dim, p.hidden, p.n_layers, seed=seed)
    data = training_data(system, _data_stage(p), g)
    saved = None if folder is None else folder / "field.pt"
    state, damaged = (None, None) if saved is None else load_good_checkpoint(saved)
    if damaged is not None:
        notice(damaged)
    if state is not None:
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
        save_checkpoint(saved, {"field": field.state_dict(), "cost": cost.to_dict()})
    return field, cost, data


def run(
    system: System,
    params: FlowPerturbationParams,
    generator: torch.Generator,
    context: MethodContext,
) -> WeightedSamples:
    """Flow matching (saved in the task's checkpoint), scale training, then the draws."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    g = torch.Generator().manual_seed(seed + 1)
    field, cost, data = trained_field(system, params, seed, g, context.checkpoint)
    cnf = ContinuousFlow(field, n_steps=params.ode_steps)
    steps = cnf if params.n_segments == 1 else cnf.segments(params.n_segments)
    prior = GaussianPrior(system.energy.dim)
    fp = FlowPerturbation(prior, steps, system.energy, params.sigma, estimator=params.estimator)
    train_perturbation_scale(fp, params.scale_steps, params.batch_size, 1e-2, g)
    samples = fp.sample(params.n_samples, g)
    samples.cost = samples.cost.with_training(cost)
    samples.info["training_data"] = [{"stage": "flow_matching", **data.record()}]
    return to_cpu(samples)


def fit_budget(
    params: FlowPerturbationParams, budget: int, system: System
) -> FlowPerturbationParams:
    """Flow matching spends only its data's charge; the samples spend the rest."""
    left = budget - data_charge(system, _data_stage(params))
    n = largest_within(flow_perturbation_evaluations, left)
    if n < 2:
        raise ValueError(
            f"flow_perturbation: a budget of {budget} evaluations leaves {left} after the "
            f"charge of its {params.n_data} training samples"
        )
    return replace(params, n_samples=n)
