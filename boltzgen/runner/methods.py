"""Baseline and Boltzmann-generator methods of experiments, with typed parameters.

A :class:`Method` pairs a parameter dataclass (what the YAML may set, with
defaults) with a function ``run(system, params, generator, checkpoint_dir,
progress) -> WeightedSamples`` that pays for everything it does on the system's
energy, training included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from boltzgen.records import Cost, CostMeter, WeightedSamples
from boltzgen.runner.models import FlowParams, build_generator
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.mcmc import HMC
from boltzgen.samplers.md import MDConfig, MolecularDynamics, write_trajectory
from boltzgen.systems import System
from boltzgen.training.generator import TrainConfig, train


@dataclass(frozen=True)
class Method:
    """A registered method: its parameter dataclass, run function and budget rule.

    ``fit_budget(params, energy_evals, system)`` returns the parameters resized so that
    the run on ``system`` spends between 80 % and 100 % of ``energy_evals`` target
    evaluations (energy + force, training and the charge of training data included);
    it raises ``ValueError`` when the budget cannot cover the fixed part.
    """

    params: type
    run: Callable[[System, Any, torch.Generator, Path | None, bool], WeightedSamples]
    fit_budget: Callable[[Any, int, System], Any]


def _too_small(method: str, budget: int, needed: int) -> ValueError:
    return ValueError(f"{method}: a budget of {budget} evaluations is below the {needed} it needs")


@dataclass(frozen=True)
class HMCParams:
    """Batched HMC: ``n_chains`` chains from the system's dispersed starts."""

    n_chains: int = 256
    n_warmup: int = 500
    n_steps: int = 1000
    n_leapfrog: int = 10
    step_size: float = 0.1
    target_acceptance: float = 0.8
    thin: int = 1


def run_hmc(
    system: System,
    params: HMCParams,
    generator: torch.Generator,
    checkpoint_dir: Path | None,
    progress: bool,
) -> WeightedSamples:
    x0 = system.dispersed_starts(params.n_chains, generator)
    hmc = HMC(system.energy, params.step_size, params.n_leapfrog, params.target_acceptance)
    return hmc.sample(x0, params.n_steps, generator, params.n_warmup, params.thin, progress)


def fit_chain_steps(params: Any, total_steps: int, method: str, budget: int) -> Any:
    """``params`` with ``n_warmup`` (at most a third) and ``n_steps`` filling ``total_steps``.

    Shared by every chain method (``n_warmup``, ``n_steps``, ``thin`` fields).
    """
    warmup = min(params.n_warmup, total_steps // 3)
    steps = (total_steps - warmup) // params.thin * params.thin
    if steps < params.thin:
        raise ValueError(f"{method}: a budget of {budget} evaluations is too small")
    return replace(params, n_warmup=int(warmup), n_steps=int(steps))


def fit_hmc(params: HMCParams, budget: int, system: System) -> HMCParams:
    """n_chains·(1 + (n_warmup + n_steps)·n_leapfrog) ≤ budget; warm-up kept ≤ a third."""
    total = (budget - params.n_chains) // (params.n_chains * params.n_leapfrog)
    return fit_chain_steps(params, total, "hmc", budget)


@dataclass(frozen=True)
class TrainParams:
    """Training of the generator; ``n_data`` reference draws feed the forward KL.

    Defaults shared with :class:`~boltzgen.training.generator.TrainConfig` are taken from it,
    so a YAML file and a script that leave a field out train alike.
    """

    loss: Literal["forward_kl", "reverse_kl", "mixed"] = TrainConfig.loss
    steps: int = TrainConfig.steps
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    forward_weight: float = TrainConfig.forward_weight
    grad_clip: float = 100.0
    energy_cap: float = TrainConfig.energy_cap
    checkpoint_every: int = TrainConfig.checkpoint_every
    n_data: int = 20_000
    lr_schedule: Literal["constant", "cosine"] = "constant"
    lr_warmup: int = 0
    validation_fraction: float = 0.0
    validate_every: int = 100
    patience: int = 0

    def config(self, seed: int) -> TrainConfig:
        """The training-loop configuration of these settings."""
        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            grad_clip=self.grad_clip,
            loss=self.loss,
            forward_weight=self.forward_weight,
            energy_cap=self.energy_cap,
            checkpoint_every=self.checkpoint_every,
            seed=seed,
            lr_schedule=self.lr_schedule,
            lr_warmup=self.lr_warmup,
            validation_fraction=self.validation_fraction,
            validate_every=self.validate_every,
            patience=self.patience,
        )


@dataclass(frozen=True)
class BoltzmannGeneratorParams:
    """A Boltzmann generator: spline flow, training, then ``n_samples`` weighted draws.

    ``finetune`` is an optional second training stage that continues from the first,
    e.g. forward KL on data, then reverse KL on the energy.
    """

    flow: FlowParams = field(default_factory=FlowParams)
    train: TrainParams = field(default_factory=TrainParams)
    finetune: TrainParams | None = None
    n_samples: int = 20_000
    device: Literal["cpu", "cuda", "auto"] = "cpu"


def _device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for an absent CUDA is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was requested but torch sees no CUDA device")
    return torch.device(name)


EXACT_DRAW_EVALS = 1
"""Target evaluations charged per exact draw of a toy system used as training data.

An exact draw costs no energy evaluation here (inverse-CDF / rejection on a quadrature),
but no method could obtain it for less than one evaluation of u: even a perfect
rejection sampler must evaluate the target once to accept a draw. This charge is that
lower bound; ``train.loss: reverse_kl`` trains without data and is charged nothing.
"""


@dataclass(frozen=True)
class TrainingData:
    """Training samples ``x [n, *event_shape]`` (``None``: none), their charge and source.

    ``source`` is ``"none"``, ``"exact"`` (toy draws, :data:`EXACT_DRAW_EVALS` each) or
    ``"md"`` / ``"pt"`` (frames of the training part of that reference set, each charged
    the run's cost per frame, see :meth:`boltzgen.reference.ReferenceSet.cost_per_frame`).
    """

    x: Tensor | None
    cost: Cost
    source: str

    def record(self) -> dict[str, Any]:
        """What ``result.json`` says about the data (``info.training_data``)."""
        return {
            "source": self.source,
            "n": 0 if self.x is None else len(self.x),
            "charged_evals": self.cost.energy_evals + self.cost.force_evals,
        }


def _training_reference(system: System) -> Any:
    """The training part of the system's MD/PT reference set (never its evaluation part)."""
    from boltzgen.reference import load_reference

    kind = system.reference_kind
    reference = load_reference(system.name, kind, part="training") if kind in ("md", "pt") else None
    if reference is None:
        raise ValueError(
            f"{system.name} has no reference data for forward-KL training: run "
            f"`boltzgen reference {system.name} --method md --ns N` or use train.loss: reverse_kl"
        )
    return reference


def _frame_cost(reference: Any, n: int) -> Cost:
    """The charge of ``n`` frames: the reference run's cost per frame, times ``n`` (rounded up)."""
    per = reference.cost_per_frame()
    return Cost(
        math.ceil(per["energy_evals"] * n), math.ceil(per["force_evals"] * n), per["wall_s"] * n
    )


def data_charge(system: System, params: TrainParams) -> int:
    """Target evaluations the training data of one stage will be charged (for planning)."""
    if params.loss == "reverse_kl":
        return 0
    if system.has_exact_reference:
        return params.n_data * EXACT_DRAW_EVALS
    reference = _training_reference(system)
    cost = _frame_cost(reference, min(params.n_data, len(reference.x)))
    return cost.energy_evals + cost.force_evals


def _training_data(system: System, params: TrainParams, generator: torch.Generator) -> TrainingData:
    """Training samples for forward/mixed KL and their charge.

    Toy systems draw exact samples, charged :data:`EXACT_DRAW_EVALS` each. Molecules draw
    frames of the training part of their reference set, charged per frame.
    """
    if params.loss == "reverse_kl":
        return TrainingData(None, Cost(), "none")
    data = system.sample_reference(params.n_data, generator)
    if data is not None:
        return TrainingData(data, Cost(params.n_data * EXACT_DRAW_EVALS), "exact")
    reference = _training_reference(system)
    index = torch.randperm(len(reference.x), generator=generator)[: params.n_data]
    return TrainingData(
        reference.x[index], _frame_cost(reference, len(index)), system.reference_kind
    )


@dataclass
class TrainedGenerator:
    """A trained generator (its ``training_cost`` set), its last loss and sampling seed.

    ``training_data`` records, per stage with data, where the data came from and what
    they were charged (:meth:`TrainingData.record`).
    """

    model: BoltzmannGenerator
    final_loss: float | None
    sampling_seed: int
    training_data: list[dict[str, Any]] = field(default_factory=list)

    def draws(self) -> torch.Generator:
        """The generator of sampling randomness, on the model's device."""
        device = next(self.model.parameters()).device
        return torch.Generator(device=device).manual_seed(self.sampling_seed)

    def label(self, samples: WeightedSamples) -> WeightedSamples:
        """``samples`` with the training-data record in ``info["training_data"]``."""
        samples.info["training_data"] = self.training_data
        return samples


def train_generator(
    system: System,
    params: BoltzmannGeneratorParams,
    generator: torch.Generator,
    checkpoint_dir: Path | None,
    progress: bool,
) -> TrainedGenerator:
    """Build and train the generator; its ``training_cost`` holds everything it cost,
    the charge of its training data included.

    Training resumes from ``checkpoint_dir`` (one sub-folder per stage), so a
    finished training is loaded rather than repeated.
    """
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    data = _training_data(system, params.train, generator)
    meter = CostMeter(system.energy)
    with meter.measure():
        model = build_generator(system, params.flow, seed, data.x).to(_device(params.device))
    cost, last_loss, records = _train_stages(
        model, system, params, seed, data, generator, checkpoint_dir, progress
    )
    cost = _plus(cost, meter.cost)
    model.training_cost = cost
    return TrainedGenerator(model, last_loss, seed + 1, records)


def run_boltzmann_generator(
    system: System,
    params: BoltzmannGeneratorParams,
    generator: torch.Generator,
    checkpoint_dir: Path | None,
    progress: bool,
) -> WeightedSamples:
    trained = train_generator(system, params, generator, checkpoint_dir, progress)
    samples = trained.model.sample(params.n_samples, trained.draws())
    samples.info["train_loss_final"] = trained.final_loss
    return to_cpu(trained.label(samples))


def to_cpu(samples: WeightedSamples) -> WeightedSamples:
    return replace(
        samples,
        x=samples.x.cpu(),
        log_weights=samples.log_weights.cpu(),
        energies=samples.energies.cpu(),
    )


def _plus(a: Cost, b: Cost) -> Cost:
    """Sum of two sampling-field costs."""
    return Cost(a.energy_evals + b.energy_evals, a.force_evals + b.force_evals, a.wall_s + b.wall_s)


def _train_stages(
    model: BoltzmannGenerator,
    system: System,
    params: BoltzmannGeneratorParams,
    seed: int,
    first_data: TrainingData,
    generator: torch.Generator,
    checkpoint_dir: Path | None,
    progress: bool,
) -> tuple[Cost, float | None, list[dict[str, Any]]]:
    """Run ``train`` then ``finetune`` (if set), each resumable in its own folder.

    The data of the first stage are given (they also set the flow's scales). Each stage
    with data is charged for its own draws (a frame two stages both draw is charged
    twice: an upper bound).
    """
    data, total, last, records = first_data, Cost(), None, []
    for name, stage in (("train", params.train), ("finetune", params.finetune)):
        if stage is None:
            continue
        if name == "finetune":
            data = _training_data(system, stage, generator)
        total = _plus(total, data.cost)
        records.append({"stage": name, **data.record()})
        where = None if checkpoint_dir is None else checkpoint_dir / name
        result = train(model, system.energy, stage.config(seed), data.x, where, progress)
        total = _plus(total, result.cost)
        last = result.losses[-1] if result.losses else last
    return total, last, records


def planned_training_evals(params: BoltzmannGeneratorParams, system: System) -> int:
    """Target evaluations the generator's training stages will spend, data charges included."""
    stages = [s for s in (params.train, params.finetune) if s is not None]
    return int(sum(s.steps * _step_cost(s) + data_charge(system, s) for s in stages))


def _step_cost(stage: TrainParams) -> float:
    """Target evaluations of one training step (forward KL: a monitoring batch per 100)."""
    return stage.batch_size if stage.loss != "forward_kl" else stage.batch_size / 100


def fit_boltzmann_generator(
    params: BoltzmannGeneratorParams, budget: int, system: System
) -> BoltzmannGeneratorParams:
    """Training as planned (so flow methods can share it); ``n_samples`` spends the rest.

    The training data's charge (:func:`data_charge`) is part of the plan.
    """
    planned = planned_training_evals(params, system)
    if budget - planned < 2:
        raise _too_small("boltzmann_generator", budget, planned + 2)
    return replace(params, n_samples=int(budget - planned))


@dataclass(frozen=True)
class MDParams:
    """OpenMM Langevin dynamics from the card's initial positions (one chain)."""

    n_frames: int = 1000
    frame_interval: int = 250
    n_equilibration: int = 10_000
    timestep_fs: float = 1.0
    friction_per_ps: float = 1.0
    hydrogen_mass: float | None = None
    platform: str = "CPU"


def run_md(
    system: System,
    params: MDParams,
    generator: torch.Generator,
    checkpoint_dir: Path | None,
    progress: bool,
) -> WeightedSamples:
    if system.openmm_system is None:
        raise ValueError(f"method md needs an OpenMM system; {system.name} has none")
    config = MDConfig(
        timestep_fs=params.timestep_fs,
        friction_per_ps=params.friction_per_ps,
        frame_interval=params.frame_interval,
        hydrogen_mass=params.hydrogen_mass,
        platform=params.platform,
        threads=torch.get_num_threads(),
        checkpoint_every=max(1, params.n_frames // 10),
    )
    md = MolecularDynamics(system.openmm_system, system.temperature, config)
    checkpoint = None if checkpoint_dir is None else checkpoint_dir / "md.npz"
    samples = md.sample(
        system.initial_positions,
        params.n_frames,
        generator,
        params.n_equilibration,
        progress,
        checkpoint,
    )
    if system.topology is not None and checkpoint_dir is not None:
        write_trajectory(samples, system.topology, checkpoint_dir.parent)
    return samples


def fit_md(params: MDParams, budget: int, system: System) -> MDParams:
    """n_equilibration + n_frames·(frame_interval + 1) ≤ budget (a frame's energy counts)."""
    frames = (budget - params.n_equilibration) // (params.frame_interval + 1)
    if frames < 1:
        raise _too_small("md", budget, params.n_equilibration + params.frame_interval + 1)
    return replace(params, n_frames=int(frames))
