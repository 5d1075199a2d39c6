"""The Boltzmann-generator method: a flow, its training stages, then weighted draws.

The generator (Noé et al. 2019, "Boltzmann generators", arXiv 1812.01729) draws
x = f(z), z ~ q_Z, with importance weights w = exp(−u(x)) / q_X(x). It pays for
everything on the system's energy: building the flow (a minimisation for internal
coordinates), training, the charge of its training data, and the draws.

**One trained flow per settings.** The methods of one experiment that train a generator
with the same settings and seed — this one and the flow-based samplers built on it (SMC,
flow MCMC, flow HMC) — share one trained flow: it is trained once, in
``RUN_DIR/<system>/_generators/<key>-seed<k>/``, under a file lock, and every method that
uses it is charged its full training cost, so the comparison stays fair.

**Symmetrised draws.** ``symmetrize: negate`` averages the trained flow over x ↦ −x,
q_g(x) = ½[q(x) + q(−x)] (:class:`~boltzgen.samplers.symmetrized.SymmetrizedGenerator`),
for a target that declares that symmetry (``Energy.symmetries``: φ⁴, U(1), the Ising field).
Near a symmetry-breaking transition reverse KL trains a flow onto one sector; its average
covers both. The setting does not change training, so it is no part of the shared key:
one trained flow serves the method with and without it.

**A flow trained elsewhere** (``flow.init_from: TASK_DIR``) starts from the finished
generator of another run's task: its parameters, moved to this lattice size for the
lattice flows (:func:`boltzgen.flows.lattice.load_at_any_volume`), or loaded as they are
for the other kinds (same shapes). Its whole training cost is charged to this generator.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from boltzgen.flows.lattice import load_at_any_volume
from boltzgen.records import Cost, CostMeter, WeightedSamples
from boltzgen.records.files import readable_json
from boltzgen.runner.lock import locked
from boltzgen.runner.methods.base import (
    ADDED_SETTING,
    LogDensity,
    MethodContext,
    settings_of,
    to_cpu,
)
from boltzgen.runner.methods.budget import largest_within, too_small
from boltzgen.runner.methods.flows import LATTICE_COUPLINGS, FlowParams, build_generator
from boltzgen.runner.methods.training import (
    TrainingData,
    TrainParams,
    later_stage_data,
    stage_evaluations,
    training_data,
)
from boltzgen.samplers.importance import BoltzmannGenerator, importance_evaluations
from boltzgen.samplers.symmetrized import SymmetrizedGenerator, negate
from boltzgen.systems import System
from boltzgen.training.generator import train


@dataclass(frozen=True)
class BoltzmannGeneratorParams:
    """A Boltzmann generator: spline flow, training, then ``n_samples`` weighted draws.

    ``finetune`` is an optional second training stage that continues from the first,
    e.g. forward KL on data, then reverse KL on the energy; ``polish`` an optional third
    that continues from the second, e.g. FAB (α = 2), which gives back to a rare basin the
    mass reverse KL takes from it (``experiments/aldp_bg.yaml``).
    """

    flow: FlowParams = field(default_factory=FlowParams)
    train: TrainParams = field(default_factory=TrainParams)
    finetune: TrainParams | None = None
    polish: TrainParams | None = None
    n_samples: int = 20_000
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    symmetrize: Literal["none", "negate"] = field(default="none", metadata=ADDED_SETTING)

    def __post_init__(self) -> None:
        if self.symmetrize not in SYMMETRIES:
            raise ValueError(
                f"symmetrize must be one of {sorted(SYMMETRIES)}, got {self.symmetrize!r}"
            )


SYMMETRIES = {"none": None, "negate": negate}
"""The involutions a generator may be averaged over (``symmetrize``), by name."""


def _device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for an absent CUDA is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was requested but torch sees no CUDA device")
    return torch.device(name)


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


GeneratorLoader = Callable[[Path], tuple[System, TrainedGenerator]]
"""Loads the finished generator of a task folder (``boltzgen.runner.trained``)."""


def train_generator(
    system: System,
    params: BoltzmannGeneratorParams,
    generator: torch.Generator,
    folder: Path | None,
    progress: bool,
    load_generator: GeneratorLoader | None = None,
) -> TrainedGenerator:
    """Build and train the generator; its ``training_cost`` holds everything it cost,
    the charge of its training data included.

    Training resumes from ``folder`` (one sub-folder per stage), so a finished
    training is loaded rather than repeated. ``load_generator`` loads the generator that
    ``flow.init_from`` names.
    """
    symmetry = _symmetry(system, params.symmetrize)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    data = training_data(system, params.train, generator)
    meter = CostMeter(system.energy)
    with meter.measure():
        model = build_generator(system, params.flow, seed, data.x).to(_device(params.device))
    start = Cost()
    records: list[dict[str, Any]] = []
    if params.flow.init_from is not None:
        source = _source(params.flow.init_from, load_generator)
        start = initialise_from(model, source, params.flow.kind)
        charged = start.energy_evals + start.force_evals
        records.append({"stage": "init", "source": params.flow.init_from, "charged_evals": charged})
    cost, last_loss, stage_records = _train_stages(
        model, system, params, seed, data, generator, folder, progress
    )
    model.training_cost = cost + meter.cost + start
    if symmetry is not None:
        model = SymmetrizedGenerator(model, symmetry)
    return TrainedGenerator(model, last_loss, seed + 1, records + stage_records)


def _symmetry(system: System, name: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The involution ``symmetrize`` names, if ``system``'s energy declares it."""
    if name == "none":
        return None
    declared = system.energy.symmetries
    if name not in declared:
        raise ValueError(
            f"symmetrize: {name} needs a target with u({name}(x)) = u(x); {system.name} declares "
            f"{sorted(declared) or 'no symmetry'} (Energy.symmetries)"
        )
    return SYMMETRIES[name]


def _source(task_dir: str, load_generator: GeneratorLoader | None) -> BoltzmannGenerator:
    """The finished generator of the task in ``task_dir`` (``flow.init_from``)."""
    if load_generator is None:
        raise ValueError(
            f"flow.init_from {task_dir}: loading another task's generator needs the runner "
            "(boltzgen run)"
        )
    _, trained = load_generator(Path(task_dir))
    return trained.model


def initialise_from(model: BoltzmannGenerator, source: BoltzmannGenerator, kind: str) -> Cost:
    """Load ``source``'s flow parameters into ``model``'s flow; return ``source``'s whole
    training cost (charged to ``model``).

    Lattice flows (``kind`` ``lattice`` or ``u1_gauge``) move to ``model``'s lattice size
    (the conditioners are circular convolutions: the same weights act on any L the masks
    fit); other flows must have the same shapes.

    Raises:
        ValueError: the two flows differ in architecture (the message says where).
    """
    state = source.flow.state_dict()
    try:
        if kind in LATTICE_COUPLINGS:
            load_at_any_volume(model.flow, state)
        else:
            model.flow.load_state_dict(state)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"flow.init_from: {error}") from error
    return source.training_cost


def _train_stages(
    model: BoltzmannGenerator,
    system: System,
    params: BoltzmannGeneratorParams,
    seed: int,
    first_data: TrainingData,
    generator: torch.Generator,
    folder: Path | None,
    progress: bool,
) -> tuple[Cost, float | None, list[dict[str, Any]]]:
    """Run ``train``, then ``finetune`` and ``polish`` (if set), each resumable in its own folder.

    The data of the first stage are given (they also set the flow's scales). A later stage
    reuses the first stage's reference frames and is charged only for frames beyond them
    (:func:`~boltzgen.runner.methods.training.later_stage_data`); exact toy draws are new
    draws, charged again.
    """
    data, total, last, records = first_data, Cost(), None, []
    for name, stage in stages(params):
        if name != "train":
            data = later_stage_data(system, first_data, stage, generator)
        total = total + data.cost
        records.append({"stage": name, **data.record()})
        where = None if folder is None else folder / name
        config = stage.config(seed)
        energy = model.energy
        if stage.temperature is not None:
            energy = energy.at_temperature(stage.temperature)
        result = train(model, energy, config, data.x, where, progress, data.repeats)
        total = total + result.cost
        last = result.losses[-1] if result.losses else last
    return total, last, records


def stages(params: BoltzmannGeneratorParams) -> list[tuple[str, TrainParams]]:
    """The training stages that are set, in order, by the name of their checkpoint folder."""
    named = (("train", params.train), ("finetune", params.finetune), ("polish", params.polish))
    return [(name, stage) for name, stage in named if stage is not None]


def settings_key(params: BoltzmannGeneratorParams | Mapping[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of the settings that make the trained flow (keys
    sorted): all but :data:`SAMPLING_ONLY` (the number of draws, their symmetrisation),
    which do not change the flow.
    ``params`` may also be those settings as written in a task's ``settings.json``."""
    settings = {k: v for k, v in settings_of(params).items() if k not in SAMPLING_ONLY}
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


SAMPLING_ONLY = ("n_samples", "symmetrize")
"""Settings of how the trained flow is drawn from, which do not change its training."""


GENERATOR_METHODS = ("boltzmann_generator", "smc", "flow_mcmc", "flow_hmc")
"""The methods that train (or load) a shared generator."""


def shared_folder_name(method: str, params: Mapping[str, Any], seed: int) -> str | None:
    """``<key>-seed<k>``, the shared folder where a task of ``method`` with these settings
    (as in its ``settings.json``) trains its generator; ``None`` for other methods."""
    if method not in GENERATOR_METHODS:
        return None
    generator = params if method == "boltzmann_generator" else params.get("generator", {})
    return _folder_name(generator, seed)


def training_folders(directory: Path) -> list[Path]:
    """Where a task's training checkpoints are: its ``checkpoint/`` folder and, for a method
    that shares its generator, that generator's folder under ``<system>/_generators/``."""
    folders = [directory / "checkpoint"]
    record = readable_json(directory / "checkpoint" / "settings.json")
    settings = {} if record is None else record.get("settings", {})
    name = shared_folder_name(
        str(settings.get("method")), settings.get("params") or {}, int(settings.get("seed", 0))
    )
    if name is not None:
        folders.append(directory.parent.parent / "_generators" / name)
    return folders


def _folder_name(params: BoltzmannGeneratorParams | Mapping[str, Any], seed: int) -> str:
    return f"{settings_key(params)}-seed{seed}"


def shared_generator(
    system: System,
    params: BoltzmannGeneratorParams,
    generator: torch.Generator,
    context: MethodContext,
) -> TrainedGenerator:
    """Train (or load) the generator shared by every method with these settings and seed.

    Without a shared folder the generator is trained for this task alone, resuming from
    the task's checkpoint folder when it has one.
    """
    load = context.load_generator
    if context.shared is None:
        return train_generator(
            system, params, generator, context.checkpoint, context.progress, load
        )
    folder = context.shared / _folder_name(params, context.seed)
    with locked(folder / "lock"):
        return train_generator(system, params, generator, folder, context.progress, load)


def run(
    system: System,
    params: BoltzmannGeneratorParams,
    generator: torch.Generator,
    context: MethodContext,
) -> WeightedSamples:
    """Train (or load) the shared generator, then draw ``n_samples`` weighted samples."""
    trained = shared_generator(system, params, generator, context)
    samples = trained.model.sample(params.n_samples, trained.draws(), progress=context.progress)
    samples.info["train_loss_final"] = trained.final_loss
    return to_cpu(trained.label(samples))


def log_density(
    system: System, params: BoltzmannGeneratorParams, context: MethodContext
) -> LogDensity:
    """log q of the task's trained flow, loaded from where :func:`run` trained it.

    Call after :func:`run`: the training is then finished, so it is loaded, not repeated.
    """
    quiet = replace(context, progress=False)
    trained = shared_generator(system, params, torch.Generator().manual_seed(context.seed), quiet)
    return model_log_density(trained.model)


def model_log_density(model: BoltzmannGenerator, batch_size: int = 5000) -> LogDensity:
    """``x -> log q(x)`` of ``model``: batched, without gradients, in the model's device and
    dtype, returned as float64 on the CPU."""
    parameter = next(model.parameters())

    def log_q(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            parts = [
                model.log_prob(batch.to(device=parameter.device, dtype=parameter.dtype))
                for batch in x.split(batch_size)
            ]
        return torch.cat(parts).to(device="cpu", dtype=torch.float64)

    return log_q


def planned_training_evals(params: BoltzmannGeneratorParams, system: System) -> int:
    """Target evaluations the generator's training stages will spend, data charges included."""
    later = sum(stage_evaluations(system, stage, params.train) for _, stage in stages(params)[1:])
    return int(stage_evaluations(system, params.train) + later)


def fit_budget(
    params: BoltzmannGeneratorParams, budget: int, system: System
) -> BoltzmannGeneratorParams:
    """Training as planned (so flow methods can share it); ``n_samples`` spends the rest.

    The training data's charge (:func:`~boltzgen.runner.methods.training.data_charge`) is
    part of the plan.
    """
    planned = planned_training_evals(params, system)
    n = largest_within(lambda n: planned + importance_evaluations(n), budget)
    if n < 2:
        raise too_small("boltzmann_generator", budget, planned + 2)
    return replace(params, n_samples=n)
