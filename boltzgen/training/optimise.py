"""One checkpointed, exactly resumable optimisation loop for every trained model.

:func:`optimise` minimises an objective ``(step, generator) -> (loss, metrics)`` over the
parameters of an ``nn.Module`` with Adam (Kingma & Ba, arXiv 1412.6980), optional
gradient-norm clipping and an optional learning-rate schedule. All randomness comes
from one ``torch.Generator``. Every ``every`` steps, and at the end, a checkpoint is
written atomically holding the module, the optimiser (and schedule), the step, that
generator's state, the loss and metric histories and the cost so far; a run killed
and restarted from it ends with bitwise the same parameters as an uninterrupted run
(on the same machine and thread count). The Boltzmann generator, the stochastic
normalizing flow, the temperature-steerable flow, flow matching and the
flow-perturbation scale are all trained by it (:mod:`boltzgen.training`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from boltzgen.records import Cost, CostMeter, EvaluationCounter
from boltzgen.records.cost import CountsEvaluations
from boltzgen.records.files import notice
from boltzgen.training.checkpoint import check_resumable, load_good_checkpoint, save_checkpoint

Objective = Callable[[int, torch.Generator], tuple[Tensor, Mapping[str, float]]]
"""``(step, generator) -> (loss: [], metrics)``: the step's loss and named per-step numbers."""


class Monitor(Protocol):
    """Watches the run after every step (e.g. validation); its state is checkpointed.

    Attributes:
        name: the checkpoint key its state is saved under.
        stopped: whether it has stopped the run (a resumed, stopped run takes no step).
    """

    name: str
    stopped: bool

    def after_step(self, step: int) -> bool:
        """Record what step ``step`` left; ``True`` stops the run."""
        ...

    def postfix(self) -> dict[str, str]:
        """Numbers to show on the progress bar."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass
class _Uncounted:
    """An evaluation counter nothing charges: objectives that evaluate no energy."""

    counter: EvaluationCounter = field(default_factory=EvaluationCounter)


class ParameterAverage:
    """θ̄ ← d·θ̄ + (1 − d)·θ over a module's parameters (torch's ``AveragedModel`` on a
    list of them, so buffers and attached energies are never copied)."""

    def __init__(self, module: nn.Module, decay: float):
        self.tracked = nn.ParameterList(list(module.parameters()))
        self.average = AveragedModel(self.tracked, multi_avg_fn=get_ema_multi_avg_fn(decay))

    def update(self) -> None:
        self.average.update_parameters(self.tracked)

    def copy_into(self) -> None:
        """Overwrite the module's parameters with θ̄."""
        with torch.no_grad():
            for mine, averaged in zip(self.tracked, self.average.module, strict=True):
                mine.copy_(averaged)

    def state_dict(self) -> dict[str, Any]:
        return self.average.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.average.load_state_dict(state)


@dataclass
class Optimiser:
    """Adam on ``module``'s parameters, gradient-norm clipping and a learning-rate schedule.

    Attributes:
        module: the trained parameters; its ``state_dict`` is what a checkpoint keeps.
        optimizer: ``torch.optim.Adam`` over ``module.parameters()``.
        scheduler: stepped after every optimiser step, or ``None``.
        grad_clip: maximum global gradient norm, ``None`` for no clipping.
        hint: what to do when the loss is not finite, for the error message.
        average: an exponential moving average of the parameters, updated after every
            step (``None``: none); :meth:`use_average` copies it into ``module``.
    """

    module: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler | None = None
    grad_clip: float | None = None
    hint: str = "lower the learning rate"
    average: ParameterAverage | None = None

    @classmethod
    def adam(
        cls,
        module: nn.Module,
        lr: float,
        weight_decay: float = 0.0,
        grad_clip: float | None = None,
        schedule: Callable[[torch.optim.Optimizer], LRScheduler] | None = None,
        hint: str = "lower the learning rate",
        ema_decay: float = 0.0,
    ) -> Optimiser:
        """Adam with learning rate ``lr`` and L2 ``weight_decay``; ``schedule`` wraps it.

        ``ema_decay`` > 0 keeps θ̄ ← d·θ̄ + (1 − d)·θ after every step (Polyak & Juditsky,
        SIAM J. Control Optim. 30, 838 (1992)): the average of the last ~1/(1 − d) iterates,
        which a noisy stochastic gradient leaves scattered around a better point.
        """
        optimizer = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
        scheduler = None if schedule is None else schedule(optimizer)
        average = ParameterAverage(module, ema_decay) if ema_decay > 0.0 else None
        return cls(module, optimizer, scheduler, grad_clip, hint, average)

    def step(self, loss: Tensor, step: int) -> None:
        """θ ← Adam(θ, ∇loss) with ‖∇loss‖ clipped; raises on a non-finite loss or gradient."""
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError(
                f"training loss is {float(loss.detach())} at step {step}: {self.hint}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            params = self.module.parameters()
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip, error_if_nonfinite=True)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.average is not None:
            self.average.update()

    def use_average(self) -> None:
        """Load the averaged parameters into ``module`` (nothing without an average)."""
        if self.average is not None:
            self.average.copy_into()

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        if self.average is not None:
            state["average"] = self.average.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often :func:`optimise` saves, and what a resumed run must match.

    Attributes:
        path: the checkpoint file (``None``: never save, never resume).
        every: steps between checkpoints (a final one is always written).
        config: the settings saved with the checkpoint; a resumed run must match them
            outside ``free``.
        free: settings that may change on resume (e.g. the number of steps).
    """

    path: Path | None = None
    every: int = 100
    config: Mapping[str, Any] = field(default_factory=dict)
    free: frozenset[str] = frozenset({"steps", "checkpoint_every"})

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"checkpoint_every must be ≥ 1, got {self.every}")

    @classmethod
    def at(
        cls,
        folder: str | Path | None,
        name: str,
        every: int,
        config: Mapping[str, Any],
        free: frozenset[str] = frozenset({"steps", "checkpoint_every"}),
    ) -> Checkpointing:
        """Checkpoints at ``folder/name`` (none if ``folder`` is ``None``)."""
        return cls(None if folder is None else Path(folder) / name, every, config, free)


@dataclass
class History:
    """Losses and named metrics of every step so far, the cost, the step resumed from.

    ``cost`` holds the energy/force evaluations and wall seconds of training in the
    sampling fields (merge into a sampler's cost with :meth:`Cost.with_training`).
    """

    losses: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    resumed_from: int = 0

    @property
    def steps(self) -> int:
        return len(self.losses)


def _state(
    optimiser: Optimiser,
    generator: torch.Generator,
    history: History,
    checkpointing: Checkpointing,
    monitor: Monitor | None,
) -> dict[str, Any]:
    """Everything a resumed run needs; metrics and the monitor's state as top-level keys."""
    state = {
        **optimiser.state_dict(),
        "generator": generator.get_state(),
        "step": history.steps,
        "losses": history.losses,
        **history.metrics,
        "cost": history.cost.to_dict(),
        "config": dict(checkpointing.config),
    }
    if monitor is not None:
        state[monitor.name] = monitor.state_dict()
    return state


def _restore(
    optimiser: Optimiser,
    generator: torch.Generator,
    steps: int,
    checkpointing: Checkpointing,
    metrics: Sequence[str],
    monitor: Monitor | None,
) -> History:
    """The history so far, after loading the checkpoint if there is one."""
    path = checkpointing.path
    state, damaged = (None, None) if path is None else load_good_checkpoint(path)
    if damaged is not None:
        notice(damaged)
    if state is None:
        return History(metrics={name: [] for name in metrics})
    check_resumable(path, state.get("config", {}), checkpointing.config, checkpointing.free)
    done = len(state["losses"])
    if done > steps:
        raise ValueError(f"{path} is at step {done}, past the {steps} steps asked for")
    optimiser.load_state_dict(state)
    generator.set_state(state["generator"])
    if monitor is not None:
        monitor.load_state_dict(state[monitor.name])
    recorded = {name: state[name] for name in metrics}
    return History(state["losses"], recorded, Cost.from_dict(state["cost"]), done)


SHORT_NAMES = {"ess_fractions": "ess"}
"""How a recorded metric is labelled on the progress bar."""

RECENT = 50
"""Steps over which the progress bar averages a metric."""


def recent_mean(values: Sequence[float], window: int = RECENT) -> float:
    """Mean of the last ``window`` finite values (NaN when there is none).

    A batch ESS from a few hundred draws is noisy, and metrics measured only every few
    steps are NaN in between; the progress bar shows this mean instead of the last value.
    """
    finite = [v for v in values if math.isfinite(v)][-window:]
    return sum(finite) / len(finite) if finite else math.nan


def _show(bar: Any, history: History, monitor: Monitor | None) -> None:
    """Progress-bar postfix: the last loss, recent metrics, the monitor's numbers, evaluations."""
    shown = {"loss": f"{history.losses[-1]:.4g}"}
    shown |= {
        SHORT_NAMES.get(name, name): f"{recent_mean(values):.3f}"
        for name, values in history.metrics.items()
    }
    if monitor is not None:
        shown |= monitor.postfix()
    shown["evals"] = str(history.cost.energy_evals + history.cost.force_evals)
    bar.set_postfix(shown)


def optimise(
    optimiser: Optimiser,
    objective: Objective,
    generator: torch.Generator,
    steps: int,
    checkpointing: Checkpointing | None = None,
    metrics: Sequence[str] = (),
    counter: CountsEvaluations | None = None,
    monitor: Monitor | None = None,
    progress: bool = False,
) -> History:
    """Run steps ``0 … steps − 1`` of ``objective`` (resuming from a checkpoint if any).

    Args:
        optimiser: the module, Adam, the schedule and the clipping.
        objective: ``(step, generator) -> (loss, metrics)``; ``metrics`` holds at
            least the names in ``metrics``.
        generator: the only source of randomness; its state is checkpointed.
        steps: total optimiser steps (a resumed run continues up to this number).
        checkpointing: where and how often to save (``None``: no checkpoints).
        metrics: names of the per-step numbers kept in the history.
        counter: the energy whose evaluations are charged to the cost (``None``: none).
        monitor: called after every step; may stop the run.
        progress: show a tqdm bar with the loss, metrics and evaluations.
    """
    checkpointing = Checkpointing() if checkpointing is None else checkpointing
    history = _restore(optimiser, generator, steps, checkpointing, metrics, monitor)
    base, meter = history.cost, CostMeter(_Uncounted() if counter is None else counter)
    bar = tqdm(total=steps, initial=history.steps, desc="training", disable=not progress)
    start = steps if monitor is not None and monitor.stopped else history.steps
    for step in range(start, steps):
        with meter.measure():
            loss, values = objective(step, generator)
            optimiser.step(loss, step)
        history.losses.append(float(loss.detach()))
        for name in metrics:
            history.metrics[name].append(values[name])
        history.cost = base + meter.cost
        stop = monitor is not None and monitor.after_step(step)
        if (step + 1) % 10 == 0:
            _show(bar, history, monitor)
        bar.update()
        if stop or (step + 1) % checkpointing.every == 0:
            _save(optimiser, generator, history, checkpointing, monitor)
        if stop:
            break
    bar.close()
    _save(optimiser, generator, history, checkpointing, monitor)
    return history


def _save(
    optimiser: Optimiser,
    generator: torch.Generator,
    history: History,
    checkpointing: Checkpointing,
    monitor: Monitor | None,
) -> None:
    if checkpointing.path is not None:
        state = _state(optimiser, generator, history, checkpointing, monitor)
        save_checkpoint(checkpointing.path, state)
