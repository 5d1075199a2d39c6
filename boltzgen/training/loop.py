"""Checkpointed, exactly resumable training of a Boltzmann generator.

:func:`train` runs Adam (Kingma & Ba, arXiv 1412.6980) with gradient-norm clipping
on one of the objectives of :mod:`boltzgen.training.losses`. All randomness — latent
draws and data batches (drawn with replacement) — comes from one ``torch.Generator``
seeded by ``TrainConfig.seed``. A checkpoint holds the model, the optimiser, the step,
that generator's state, the loss/ESS history and the cost so far, so a run that is
interrupted and resumed from ``checkpoint_dir`` ends with bitwise the same parameters
as an uninterrupted run (on the same machine and thread count).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzgen.energies.base import Energy
from boltzgen.metrics.weights import batch_ess
from boltzgen.records import Cost, CostMeter
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.training.losses import forward_kl, mixed_kl, reverse_kl

LossName = Literal["forward_kl", "reverse_kl", "mixed"]
LOSSES: tuple[LossName, ...] = ("forward_kl", "reverse_kl", "mixed")
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
        loss: ``"forward_kl"`` (needs data), ``"reverse_kl"`` or ``"mixed"`` (needs data).
        forward_weight: w in w·forward + (1 − w)·reverse (``"mixed"`` only).
        energy_cap: reduced energy above which the reverse-KL loss compresses u
            logarithmically (:func:`boltzgen.training.losses.soft_cap`); raise it for
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
        return self.loss in ("forward_kl", "mixed")


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


def _save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a crash leaves the old checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _check_resumable(path: Path, saved: dict[str, Any], config: TrainConfig) -> None:
    free = _MAY_CHANGE_ON_RESUME if config.lr_schedule == "constant" else {"checkpoint_every"}
    ours = {k: v for k, v in asdict(config).items() if k not in free}
    theirs = {k: saved.get(k, v) for k, v in ours.items()}
    if ours != theirs:
        changed = sorted(k for k in ours if ours[k] != theirs.get(k))
        raise ValueError(
            f"{path} was written with a different TrainConfig ({', '.join(changed)} differ): "
            "use the same config or another checkpoint_dir"
        )


@dataclass
class _Session:
    """One training run: the objects a step touches and a checkpoint restores."""

    model: BoltzmannGenerator
    energy: Energy
    config: TrainConfig
    data: Tensor | None
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    path: Path | None
    scheduler: torch.optim.lr_scheduler.LambdaLR
    validation: Tensor | None = None
    best_state: dict[str, Any] | None = None
    best_nll: float = math.inf
    bad_validations: int = 0

    def loss(self, step: int) -> tuple[Tensor, float]:
        """The step's loss and the ESS fraction of its model batch (NaN if none)."""
        m, c, g, b = self.model, self.config, self.generator, self.config.batch_size
        if c.loss == "reverse_kl":
            loss, log_w = reverse_kl(m.prior, m.flow, self.energy, b, g, c.energy_cap)
            return loss, batch_ess(log_w) / b
        assert self.data is not None
        x = self.data[torch.randint(self.data.shape[0], (b,), generator=g, device=g.device)]
        if c.loss == "mixed":
            loss, log_w = mixed_kl(
                m.prior, m.flow, self.energy, x, g, c.forward_weight, c.energy_cap
            )
            return loss, batch_ess(log_w) / b
        loss = forward_kl(m.prior, m.flow, x)
        if c.monitor_every > 0 and (step + 1) % c.monitor_every == 0:
            return loss, _model_batch_ess(m, self.energy, b, g)
        return loss, math.nan

    def step(self, loss: Tensor, step: int) -> None:
        """One Adam step on ``loss`` with gradient-norm clipping."""
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError(
                f"training loss is {float(loss.detach())} at step {step}: lower "
                "TrainConfig.lr, set grad_clip, or lower energy_cap"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            params = self.model.parameters()
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip, error_if_nonfinite=True)
        self.optimizer.step()
        self.scheduler.step()

    def validate(self, step: int, history: TrainResult) -> bool:
        """Record the validation NLL after ``step``; ``True`` if training should stop."""
        if self.validation is None or (step + 1) % self.config.validate_every:
            return False
        with torch.no_grad():
            nll = float(-self.model.log_prob(self.validation).mean())
        history.validation_nll.append((step + 1, nll))
        if nll < self.best_nll:
            self.best_nll, self.bad_validations = nll, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
            history.best_step = step + 1
        else:
            self.bad_validations += 1
        patience = self.config.patience
        history.stopped_early = patience > 0 and self.bad_validations >= patience
        return history.stopped_early

    def keep_best(self) -> None:
        """Load the parameters of the best validation NLL, if validation ran."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def save(self, history: TrainResult) -> None:
        if self.path is None:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "step": history.steps,
            "losses": history.losses,
            "ess_fractions": history.ess_fractions,
            "cost": history.cost.to_dict(),
            "config": asdict(self.config),
            "scheduler": self.scheduler.state_dict(),
            "validation": {
                "nll": history.validation_nll,
                "best_step": history.best_step,
                "stopped_early": history.stopped_early,
                "best_nll": self.best_nll,
                "bad": self.bad_validations,
                "best_state": self.best_state,
            },
        }
        _save(self.path, state)

    def restore(self) -> TrainResult:
        """The history so far, after loading the checkpoint at ``path`` if there is one."""
        if self.path is None or not self.path.exists():
            return TrainResult()
        ckpt = torch.load(self.path, map_location="cpu", weights_only=True)
        _check_resumable(self.path, ckpt["config"], self.config)
        if ckpt["step"] > self.config.steps:
            raise ValueError(
                f"{self.path} is at step {ckpt['step']}, past TrainConfig.steps={self.config.steps}"
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.generator.set_state(ckpt["generator"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        v = ckpt["validation"]
        self.best_nll, self.bad_validations, self.best_state = (
            v["best_nll"],
            v["bad"],
            v["best_state"],
        )
        cost = Cost.from_dict(ckpt["cost"])
        nll = [(int(a), float(b)) for a, b in v["nll"]]
        return TrainResult(
            ckpt["losses"],
            ckpt["ess_fractions"],
            cost,
            ckpt["step"],
            nll,
            v["best_step"],
            v["stopped_early"],
        )

    def run(self, history: TrainResult, progress: bool) -> None:
        """Steps ``history.steps … config.steps − 1``, appending to ``history``."""
        base_cost, meter = history.cost, CostMeter(self.energy)
        bar = tqdm(
            total=self.config.steps, initial=history.steps, desc="training", disable=not progress
        )
        start = self.config.steps if history.stopped_early else history.steps
        for step in range(start, self.config.steps):
            with meter.measure():
                loss, ess = self.loss(step)
                self.step(loss, step)
            history.losses.append(float(loss.detach()))
            history.ess_fractions.append(ess)
            history.cost = base_cost + meter.cost
            stop = self.validate(step, history)
            if (step + 1) % 10 == 0:
                self._report(bar, history, ess)
            bar.update()
            if stop or (step + 1) % self.config.checkpoint_every == 0:
                self.save(history)
            if stop:
                break
        bar.close()

    @staticmethod
    def _report(bar: Any, history: TrainResult, ess: float) -> None:
        shown = {"loss": f"{history.losses[-1]:.4g}", "ess": f"{ess:.3f}"}
        if history.validation_nll:
            shown["val_nll"] = f"{history.validation_nll[-1][1]:.4g}"
        shown["evals"] = str(history.cost.energy_evals + history.cost.force_evals)
        bar.set_postfix(shown)


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

    With validation (``config.validation_fraction > 0``) the parameters of the best
    validation NLL are kept at the end, whether or not training stopped early.

    Returns:
        :class:`TrainResult` with the full history and cumulative training cost.
    """
    _check_data(config, data, energy)
    device = _device(model)
    data, validation = _split(config, data)
    if data is not None:
        dtype = next(model.parameters()).dtype
        data = data.to(device=device, dtype=dtype)
        validation = None if validation is None else validation.to(device=device, dtype=dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    session = _Session(
        model,
        energy,
        config,
        data,
        optimizer,
        torch.Generator(device=device).manual_seed(config.seed),
        None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_NAME,
        torch.optim.lr_scheduler.LambdaLR(optimizer, config.learning_rate_factor),
        validation,
    )
    history = session.restore()
    session.run(history, progress)
    session.save(history)
    session.keep_best()
    model.training_cost = history.cost
    return history


def _split(config: TrainConfig, data: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """Training and validation rows of ``data`` (a seeded permutation)."""
    if config.validation_fraction == 0.0:
        return data, None
    if data is None:
        raise ValueError("validation_fraction > 0 needs data to hold out")
    n_val = max(1, int(config.validation_fraction * data.shape[0]))
    if n_val >= data.shape[0]:
        raise ValueError(f"validation_fraction leaves no training rows of {data.shape[0]}")
    order = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(config.seed + 1))
    return data[order[n_val:].to(data.device)], data[order[:n_val].to(data.device)]


def training_evaluations(config: TrainConfig) -> float:
    """Target evaluations :func:`train` plans for: steps·B, or steps·B/m for forward KL.

    Reverse and mixed KL evaluate u on every model batch of B; forward KL evaluates only
    the monitoring batch drawn every m = ``monitor_every`` steps (none when m = 0).
    """
    if config.loss != "forward_kl":
        return config.steps * config.batch_size
    if config.monitor_every == 0:
        return 0.0
    return config.steps * (config.batch_size / config.monitor_every)
