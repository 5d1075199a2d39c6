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

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzgen.energies.base import Energy
from boltzgen.samplers.base import Cost, CostMeter
from boltzgen.samplers.importance import BoltzmannGenerator, batch_ess
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

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"TrainConfig.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.steps < 0 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("TrainConfig needs steps ≥ 0, batch_size ≥ 1, checkpoint_every ≥ 1")
        if not 0.0 <= self.forward_weight <= 1.0:
            raise ValueError(f"forward_weight must lie in [0, 1], got {self.forward_weight}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")

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
    """

    losses: list[float] = field(default_factory=list)
    ess_fractions: list[float] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)
    resumed_from: int = 0

    @property
    def steps(self) -> int:
        return len(self.losses)


def _add(a: Cost, b: Cost) -> Cost:
    return Cost(**{k: getattr(a, k) + getattr(b, k) for k in Cost.__dataclass_fields__})


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
    ours = {k: v for k, v in asdict(config).items() if k not in _MAY_CHANGE_ON_RESUME}
    theirs = {k: v for k, v in saved.items() if k not in _MAY_CHANGE_ON_RESUME}
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
        cost = Cost.from_dict(ckpt["cost"])
        return TrainResult(ckpt["losses"], ckpt["ess_fractions"], cost, ckpt["step"])

    def run(self, history: TrainResult, progress: bool) -> None:
        """Steps ``history.steps … config.steps − 1``, appending to ``history``."""
        base_cost, meter = history.cost, CostMeter(self.energy)
        bar = tqdm(total=self.config.steps, initial=history.steps, disable=not progress)
        for step in range(history.steps, self.config.steps):
            with meter.measure():
                loss, ess = self.loss(step)
                self.step(loss, step)
            history.losses.append(float(loss.detach()))
            history.ess_fractions.append(ess)
            history.cost = _add(base_cost, meter.cost)
            if (step + 1) % 10 == 0:
                evals = history.cost.energy_evals
                bar.set_postfix(loss=f"{history.losses[-1]:.4g}", ess=f"{ess:.3f}", evals=evals)
            bar.update()
            if (step + 1) % self.config.checkpoint_every == 0:
                self.save(history)
        bar.close()


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
        progress: show a tqdm bar with the loss, batch ESS fraction and energy evals.

    Returns:
        :class:`TrainResult` with the full history and cumulative training cost.
    """
    _check_data(config, data, energy)
    device = _device(model)
    if data is not None:
        data = data.to(device=device, dtype=next(model.parameters()).dtype)
    session = _Session(
        model,
        energy,
        config,
        data,
        torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay),
        torch.Generator(device=device).manual_seed(config.seed),
        None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_NAME,
    )
    history = session.restore()
    session.run(history, progress)
    session.save(history)
    model.training_cost = history.cost
    return history
