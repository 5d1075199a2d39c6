"""Checkpointed, exactly resumable training of a Boltzmann generator.

:func:`train` runs Adam (Kingma & Ba, arXiv 1412.6980) with gradient-norm clipping
on one of the objectives of :mod:`boltzgen.samplers.objectives`. All randomness — latent
draws and data batches (drawn with replacement) — comes from one ``torch.Generator``
seeded by ``TrainConfig.seed``. A checkpoint holds the model, the optimiser, the step,
that generator's state, the loss/ESS history, the validation state and the cost so
far (:func:`boltzgen.training.optimise.optimise`), so a run that is interrupted and
resumed from ``checkpoint_dir`` ends with bitwise the same parameters as an
uninterrupted run (on the same machine and thread count).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.flows.base import Prior
from boltzgen.metrics.weights import batch_ess
from boltzgen.records import Cost
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.objectives import (
    forward_kl,
    log_variance,
    mixed_kl,
    reverse_kl,
    symmetric_reverse_kl,
)
from boltzgen.samplers.symmetrized import negate
from boltzgen.training.fab import FABObjective, ReplayBuffer, ais_evaluations
from boltzgen.training.optimise import Checkpointing, Optimiser, optimise

LossName = Literal[
    "forward_kl", "reverse_kl", "reverse_kl_symmetric", "log_variance", "mixed", "fab", "fab_mixed"
]
LOSSES: tuple[LossName, ...] = get_args(LossName)
CHECKPOINT_NAME = "checkpoint.pt"
_MAY_CHANGE_ON_RESUME = frozenset({"steps", "checkpoint_every"})


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train`.

    Attributes:
        steps: total optimiser steps (a resumed run continues up to this number).
        batch_size: samples per step (data rows and/or latent draws).
        lr, weight_decay: Adam's learning rate and L2 weight decay.
        grad_clip: maximum global gradient norm, ``None`` for no clipping.
        loss: ``"forward_kl"`` (needs data), ``"reverse_kl"``, ``"reverse_kl_symmetric"``
            (reverse KL of the flow averaged over x ↦ −x, for a target with u(−x) = u(x):
            :func:`~boltzgen.samplers.objectives.symmetric_reverse_kl`), ``"log_variance"``
            (Var[log w] over latent draws of ``train``'s ``reference``, the prior by default:
            :func:`~boltzgen.samplers.objectives.log_variance`), ``"mixed"`` (needs data),
            ``"fab"`` (flow annealed importance sampling bootstrap, α = 2, no data;
            :mod:`boltzgen.training.fab`) or ``"fab_mixed"`` (w·forward KL on data plus
            (1 − w)·FAB).
        forward_weight: w in w·forward + (1 − w)·reverse (``"mixed"``) or + (1 − w)·FAB
            (``"fab_mixed"``).
        energy_cap: reduced energy above which the reverse-KL loss compresses u
            logarithmically (:func:`boltzgen.samplers.objectives.soft_cap`); raise it for
            systems whose typical reduced energies are above 10³.
        checkpoint_every: steps between checkpoints (a final one is always written).
        monitor_every: with ``"forward_kl"``, every this many steps draw one extra batch
            from the model to report its ESS (charged as energy evaluations; 0: never).
        seed: seeds the generator of every latent draw and data batch.
        lr_schedule: ``"constant"`` or ``"cosine"`` (decay from ``lr`` to 0 over
            ``steps``), after a linear warm-up of ``lr_warmup`` steps.
        validation_fraction: share of ``data`` held out to measure the validation
            NLL −E_val[log q(x)] every ``validate_every`` steps (0: no validation).
        patience: stop after this many validations without a new best NLL and keep
            the best parameters (0: never stop early).
        ais_distributions: FAB: M annealed distributions after the flow (M − 1 HMC
            transitions), β_j = j/M.
        ais_leapfrog: FAB: leapfrog steps per HMC transition.
        ais_step_size: FAB: initial HMC step size of every transition (then adapted
            towards acceptance 0.65 between AIS batches).
        buffer_size: FAB: capacity of the prioritised replay buffer (0: no buffer, one
            AIS batch per step).
        buffer_updates: FAB with a buffer: optimiser steps per AIS batch.
        ema_decay: d > 0 keeps an exponential moving average of the parameters,
            θ̄ ← d·θ̄ + (1 − d)·θ after every step, and the trained model ends with θ̄
            (0: the last iterate). It cannot be combined with validation, which keeps
            the parameters of its best step instead.
    """

    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 100.0
    loss: LossName = "reverse_kl"
    forward_weight: float = 0.5
    energy_cap: float = 1e3
    checkpoint_every: int = 500
    monitor_every: int = 100
    seed: int = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    lr_warmup: int = 0
    validation_fraction: float = 0.0
    validate_every: int = 100
    patience: int = 0
    ais_distributions: int = 8
    ais_leapfrog: int = 4
    ais_step_size: float = 0.05
    buffer_size: int = 0
    buffer_updates: int = 4
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"TrainConfig.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.steps < 0 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("TrainConfig needs steps ≥ 0, batch_size ≥ 1, checkpoint_every ≥ 1")
        if not 0.0 <= self.forward_weight <= 1.0:
            raise ValueError(f"forward_weight must lie in [0, 1], got {self.forward_weight}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        if self.lr_schedule not in ("constant", "cosine") or self.lr_warmup < 0:
            raise ValueError("lr_schedule must be 'constant' or 'cosine' and lr_warmup ≥ 0")
        if not 0.0 <= self.validation_fraction < 1.0 or self.validate_every < 1:
            raise ValueError("validation_fraction must lie in [0, 1) and validate_every ≥ 1")
        if self.patience < 0:
            raise ValueError(f"patience must be ≥ 0, got {self.patience}")
        if self.ais_distributions < 1 or self.ais_leapfrog < 1 or not self.ais_step_size > 0:
            raise ValueError("FAB needs ais_distributions ≥ 1, ais_leapfrog ≥ 1, ais_step_size > 0")
        if self.buffer_size < 0 or self.buffer_updates < 1:
            raise ValueError("FAB needs buffer_size ≥ 0 and buffer_updates ≥ 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.ema_decay > 0.0 and self.validation_fraction > 0.0:
            raise ValueError(
                "ema_decay and validation_fraction exclude each other: validation keeps "
                "its best step's parameters, the average keeps θ̄; set one of them to 0"
            )

    def learning_rate_factor(self, step: int) -> float:
        """Multiplier of ``lr`` at ``step``: linear warm-up, then constant or cosine decay."""
        if step < self.lr_warmup:
            return (step + 1) / self.lr_warmup
        if self.lr_schedule == "constant":
            return 1.0
        span = max(1, self.steps - self.lr_warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - self.lr_warmup) / span)))

    @property
    def needs_data(self) -> bool:
        return self.loss in ("forward_kl", "mixed", "fab_mixed")

    @property
    def is_fab(self) -> bool:
        return self.loss in ("fab", "fab_mixed")


@dataclass
class TrainResult:
    """Per-step history and the cost of training.

    Attributes:
        losses: loss of every step ``[steps]`` (including steps before a resume).
        ess_fractions: Kish ESS fraction of each step's model batch, NaN where none
            was drawn (forward KL between monitoring steps).
        cost: energy/force evaluations and wall seconds of training, in the sampling
            fields (merge into a sampler's cost with :meth:`Cost.with_training`).
        resumed_from: the step of the checkpoint this run started from (0 if none).
        validation_nll: ``(step, NLL)`` of every validation.
        best_step: the step whose parameters were kept (best validation NLL).
        stopped_early: whether training stopped on ``patience``.
    """

    losses: list[float] = field(default_factory=list)
    ess_fractions: list[float] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)
    resumed_from: int = 0
    validation_nll: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    stopped_early: bool = False

    @property
    def steps(self) -> int:
        return len(self.losses)


def _check_data(config: TrainConfig, data: Tensor | None, energy: Energy) -> None:
    if config.loss == "reverse_kl_symmetric" and "negate" not in energy.symmetries:
        raise ValueError(
            "loss reverse_kl_symmetric needs a target with u(−x) = u(x); this energy declares "
            f"{sorted(energy.symmetries) or 'no symmetry'} (Energy.symmetries)"
        )
    if not config.needs_data:
        return
    if data is None:
        raise ValueError(f"loss {config.loss!r} needs data: pass samples [N, *event_shape]")
    if data.dim() < 1 or data.shape[0] < 1 or tuple(data.shape[1:]) != energy.event_shape:
        raise ValueError(
            f"data must have shape [N, {', '.join(map(str, energy.event_shape))}] with N ≥ 1, "
            f"got {list(data.shape)}"
        )
    if not bool(torch.isfinite(data).all()):
        raise ValueError("data contain NaN or infinite entries: remove those rows")


def _model_batch_ess(
    model: BoltzmannGenerator, energy: Energy, n: int, generator: torch.Generator
) -> float:
    """Kish ESS fraction of ``n`` fresh model draws (no gradients)."""
    with torch.no_grad():
        x, log_q = model.sample_with_log_prob(n, generator)
        return batch_ess(-energy.energy(x) - log_q) / n


@dataclass
class _Objective:
    """The step's KL loss and the ESS fraction of its model batch (NaN if none)."""

    model: BoltzmannGenerator
    energy: Energy
    config: TrainConfig
    data: Tensor | None
    reference: Prior | None = None

    def __call__(self, step: int, g: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        m, c, b = self.model, self.config, self.config.batch_size
        if c.loss == "reverse_kl":
            loss, log_w = reverse_kl(m.prior, m.flow, self.energy, b, g, c.energy_cap)
            return loss, {"ess_fractions": batch_ess(log_w) / b}
        if c.loss == "log_variance":
            reference = m.prior if self.reference is None else self.reference
            loss, log_w = log_variance(m.prior, m.flow, self.energy, reference, b, g, c.energy_cap)
            return loss, {"ess_fractions": batch_ess(log_w) / b}
        if c.loss == "reverse_kl_symmetric":
            loss, log_w = symmetric_reverse_kl(
                m.prior, m.flow, self.energy, negate, b, g, c.energy_cap
            )
            return loss, {"ess_fractions": batch_ess(log_w) / b}
        assert self.data is not None
        x = self.data[torch.randint(self.data.shape[0], (b,), generator=g, device=g.device)]
        if c.loss == "mixed":
            loss, log_w = mixed_kl(
                m.prior, m.flow, self.energy, x, g, c.forward_weight, c.energy_cap
            )
            return loss, {"ess_fractions": batch_ess(log_w) / b}
        loss = forward_kl(m.prior, m.flow, x)
        if c.monitor_every > 0 and (step + 1) % c.monitor_every == 0:
            return loss, {"ess_fractions": _model_batch_ess(m, self.energy, b, g)}
        return loss, {"ess_fractions": math.nan}


@dataclass
class _Validation:
    """Validation NLL −E_val[log q(x)] every ``every`` steps; early stopping on patience.

    Keeps the parameters of the best NLL (``best_state``); a :class:`Monitor`.
    """

    model: BoltzmannGenerator
    rows: Tensor | None
    every: int
    patience: int
    name: str = "validation"
    nll: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    stopped: bool = False
    best_nll: float = math.inf
    bad: int = 0
    best_state: dict[str, Any] | None = None

    def after_step(self, step: int) -> bool:
        """Record the validation NLL after ``step``; ``True`` if training should stop."""
        if self.rows is None or (step + 1) % self.every:
            return False
        with torch.no_grad():
            nll = float(-self.model.log_prob(self.rows).mean())
        self.nll.append((step + 1, nll))
        if nll < self.best_nll:
            self.best_nll, self.bad = nll, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.best_step = step + 1
        else:
            self.bad += 1
        self.stopped = self.patience > 0 and self.bad >= self.patience
        return self.stopped

    def postfix(self) -> dict[str, str]:
        return {"val_nll": f"{self.nll[-1][1]:.4g}"} if self.nll else {}

    def keep_best(self) -> None:
        """Load the parameters of the best validation NLL, if validation ran."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {
            "nll": self.nll,
            "best_step": self.best_step,
            "stopped_early": self.stopped,
            "best_nll": self.best_nll,
            "bad": self.bad,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.nll = [(int(a), float(b)) for a, b in state["nll"]]
        self.best_step, self.stopped = state["best_step"], state["stopped_early"]
        self.best_nll, self.bad, self.best_state = (
            state["best_nll"],
            state["bad"],
            state["best_state"],
        )


def _device(model: BoltzmannGenerator) -> torch.device:
    tensors = [*model.parameters(), *model.buffers()]
    return tensors[0].device if tensors else torch.device("cpu")


def train(
    model: BoltzmannGenerator,
    energy: Energy,
    config: TrainConfig,
    data: Tensor | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    repeats: Tensor | None = None,
    reference: Prior | None = None,
) -> TrainResult:
    """Train ``model.flow`` on ``energy`` and/or ``data``; resume from ``checkpoint_dir``.

    Args:
        model: the generator (its prior and flow); trained in place. Its
            ``training_cost`` is set to the returned cost.
        energy: the target u, charged for every evaluation (may differ from
            ``model.energy``, e.g. a tempered view).
        config: hyper-parameters; a resumed run must match the checkpoint's config
            except for ``steps`` and ``checkpoint_every``.
        data: ``[N, *event_shape]`` samples of the target, for ``"forward_kl"`` and
            ``"mixed"`` (unused by ``"reverse_kl"``).
        checkpoint_dir: where ``checkpoint.pt`` is written every
            ``config.checkpoint_every`` steps and at the end; if it already holds one,
            training continues from it.
        progress: show a tqdm bar with the loss, batch ESS fraction, validation NLL
            and target evaluations so far.
        repeats: ``[N]`` integers ≥ 1, how often each row of ``data`` enters the
            training rows (oversampling, e.g. of a rare basin); the validation rows are
            held out first and count once, so no copy of a training row is validated on.
        reference: the latent distribution the ``"log_variance"`` loss draws z from
            (default: the model's prior); e.g. a broader one, so that the flow is fitted
            also where its own draws are rare. Not saved in the checkpoint: a resumed
            run must pass the same.

    With validation (``config.validation_fraction > 0``) the parameters of the best
    validation NLL are kept at the end, whether or not training stopped early.

    Returns:
        :class:`TrainResult` with the full history and cumulative training cost.
    """
    _check_data(config, data, energy)
    device = _device(model)
    data, validation_rows = _split(config, data, repeats)
    if data is not None:
        dtype = next(model.parameters()).dtype
        data = data.to(device=device, dtype=dtype)
        if validation_rows is not None:
            validation_rows = validation_rows.to(device=device, dtype=dtype)
    optimiser = Optimiser.adam(
        model,
        config.lr,
        config.weight_decay,
        config.grad_clip,
        lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, config.learning_rate_factor),
        "lower TrainConfig.lr, set grad_clip, or lower energy_cap",
        config.ema_decay,
    )
    free = _MAY_CHANGE_ON_RESUME if config.lr_schedule == "constant" else {"checkpoint_every"}
    checkpointing = Checkpointing.at(
        checkpoint_dir, CHECKPOINT_NAME, config.checkpoint_every, asdict(config), frozenset(free)
    )
    validation = _Validation(model, validation_rows, config.validate_every, config.patience)
    if reference is not None and config.loss != "log_variance":
        raise ValueError(f"a reference is used by loss 'log_variance' only, not {config.loss!r}")
    objective, monitor = _objective(model, energy, config, data, validation, reference)
    history = optimise(
        optimiser,
        objective,
        torch.Generator(device=device).manual_seed(config.seed),
        config.steps,
        checkpointing,
        ("ess_fractions",),
        energy,
        monitor,
        progress,
    )
    validation.keep_best()
    optimiser.use_average()
    model.training_cost = history.cost
    return TrainResult(
        history.losses,
        history.metrics["ess_fractions"],
        history.cost,
        history.resumed_from,
        validation.nll,
        validation.best_step,
        validation.stopped,
    )


def _objective(
    model: BoltzmannGenerator,
    energy: Energy,
    config: TrainConfig,
    data: Tensor | None,
    validation: _Validation,
    reference: Prior | None = None,
) -> tuple[Any, Any]:
    """The step's objective and the run's monitor: the KL losses with validation, or FAB."""
    if not config.is_fab:
        return _Objective(model, energy, config, data, reference), validation
    if validation.rows is not None:
        raise ValueError("validation_fraction must be 0 with loss fab / fab_mixed")
    dtype = next(model.parameters()).dtype
    steps = torch.full((max(config.ais_distributions - 1, 0),), config.ais_step_size, dtype=dtype)
    fab = FABObjective(
        model,
        energy,
        config.batch_size,
        steps.to(_device(model)),
        config.ais_leapfrog,
        ReplayBuffer(config.buffer_size),
        config.buffer_updates,
        data,
        config.forward_weight if config.loss == "fab_mixed" else 0.0,
    )
    return fab, fab


def _split(
    config: TrainConfig, data: Tensor | None, repeats: Tensor | None = None
) -> tuple[Tensor | None, Tensor | None]:
    """Training rows (each ``repeats`` times) and validation rows of ``data`` (a seeded
    permutation)."""
    if data is None or (config.validation_fraction == 0.0 and repeats is None):
        if config.validation_fraction > 0.0:
            raise ValueError("validation_fraction > 0 needs data to hold out")
        return data, None
    if repeats is not None and (repeats.shape != data.shape[:1] or bool((repeats < 1).any())):
        raise ValueError(f"repeats must be [{data.shape[0]}] integers ≥ 1")
    n_val = int(config.validation_fraction * data.shape[0])
    n_val = max(1, n_val) if config.validation_fraction > 0.0 else 0
    if n_val >= data.shape[0]:
        raise ValueError(f"validation_fraction leaves no training rows of {data.shape[0]}")
    order = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(config.seed + 1))
    train_rows = order[n_val:]
    if repeats is not None:
        train_rows = train_rows.repeat_interleave(repeats[train_rows].long())
    validation = data[order[:n_val].to(data.device)] if n_val else None
    return data[train_rows.to(data.device)], validation


def training_evaluations(config: TrainConfig) -> float:
    """Target evaluations :func:`train` plans for: steps·B, or steps·B/m for forward KL.

    FAB: one AIS batch (B·(1 + (M − 1)·L) evaluations) per step, or per ``buffer_updates``
    steps with a buffer.

    Reverse, log-variance and mixed KL evaluate u on every batch of B; forward KL evaluates only
    the monitoring batch drawn every m = ``monitor_every`` steps (none when m = 0).
    """
    if config.is_fab:
        batches = (
            config.steps if config.buffer_size == 0 else -(-config.steps // config.buffer_updates)
        )
        return batches * ais_evaluations(
            config.batch_size, config.ais_distributions, config.ais_leapfrog
        )
    if config.loss != "forward_kl":
        return config.steps * config.batch_size
    if config.monitor_every == 0:
        return 0.0
    return config.steps * (config.batch_size / config.monitor_every)
