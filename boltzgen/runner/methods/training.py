"""Training stages of the flow-based methods and their training data, with its charge.

A stage is a :class:`~boltzgen.training.generator.TrainConfig` (the YAML keys are its fields)
plus ``n_data``, the number of reference draws that feed forward or mixed KL. The data
are charged as target evaluations: exact toy draws :data:`EXACT_DRAW_EVALS` each,
reference frames the cost per frame of the run that made them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from boltzgen.records import Cost
from boltzgen.reference import ReferenceSet
from boltzgen.runner.methods.base import ADDED_SETTING, library_config
from boltzgen.systems import System
from boltzgen.training.generator import TrainConfig, training_evaluations

DATA_SOURCES = ("auto", "md", "pt")
"""Where forward-KL data come from (``TrainParams.data``)."""


@dataclass
class TrainParams(TrainConfig):
    """One training stage: the training loop's settings and ``n_data`` reference draws.

    ``oversample`` repeats the reference frames that lie in a named state of the card
    (``{phi_pos: 8}``: each such frame enters the training rows 8 times, after the
    validation rows are held out), so forward KL gives a rare basin more of the flow's mass
    than its Boltzmann share. Importance weights correct the proposal; a basin the flow
    under-covers is what ruins them (a few draws there carry most of the weight), and
    reverse KL sees a basin only through the draws that land in it. Only distinct frames
    are charged. ``data`` says where the draws come from: ``auto`` (exact draws on a toy
    system, else the card's reference set), or ``md`` / ``pt`` (that reference set of the
    system, also for a toy system: a head-to-head where the generator pays for its data as
    a real user would). ``seed`` is not a setting: every stage is seeded from the task's
    generator.

    ``temperature`` (kelvin; default: the system's) trains the stage against the target at
    another temperature, u_T = u · T_system / T, charged as the system's energy: a stage at a
    high temperature, where a rare basin holds more weight, before the stages at the
    system's, as in temperature-annealed Boltzmann generators (Schopmans & Friederich,
    ICML 2025, arXiv 2501.19077). Only losses without data take it (``reverse_kl``,
    ``fab``): the reference frames are at the system's temperature.
    """

    seed: int = field(default=0, init=False)
    n_data: int = 20_000
    oversample: dict[str, int] = field(default_factory=dict)
    data: str = field(default="auto", metadata=ADDED_SETTING)
    temperature: float | None = field(default=None, metadata=ADDED_SETTING)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data not in DATA_SOURCES:
            raise ValueError(f"data must be one of {DATA_SOURCES}, got {self.data!r}")
        if self.temperature is not None:
            if not self.temperature > 0:
                raise ValueError(f"temperature must be positive, got {self.temperature}")
            if self.needs_data:
                raise ValueError(
                    f"temperature applies to losses without data (reverse_kl, fab), not "
                    f"{self.loss!r}: the reference frames are at the system's temperature"
                )
        bad = {k: v for k, v in self.oversample.items() if not (isinstance(v, int) and v >= 1)}
        if bad:
            raise ValueError(f"oversample factors must be integers ≥ 1, got {bad}")

    def config(self, seed: int) -> TrainConfig:
        """The training loop's configuration of this stage, seeded by ``seed``."""
        return library_config(self, TrainConfig, seed=seed)


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
    ``order`` is the task's permutation of the reference frames (``x`` its first ``n``),
    so that a later stage draws the same frames first (:func:`later_stage_data`).
    """

    x: Tensor | None
    cost: Cost
    source: str
    order: Tensor | None = None

    repeats: Tensor | None = None

    def record(self) -> dict[str, Any]:
        """What ``result.json`` says about the data (``info.training_data``)."""
        record = {
            "source": self.source,
            "n": 0 if self.x is None else len(self.x),
            "charged_evals": self.cost.energy_evals + self.cost.force_evals,
        }
        if self.repeats is None:
            return record
        return record | {"repeated_rows": int(self.repeats.sum()) - len(self.repeats)}


def oversampling(system: System, x: Tensor, factors: dict[str, int]) -> Tensor | None:
    """``[n]`` counts: a frame of state ``name`` enters the training rows ``factors[name]``
    times (the largest factor of the states it lies in), any other frame once."""
    if not factors:
        return None
    unknown = sorted(set(factors) - set(system.states))
    if unknown:
        raise ValueError(
            f"oversample names states {unknown}; {system.name} has {sorted(system.states)}"
        )
    counts = torch.ones(len(x), dtype=torch.long)
    for name, k in factors.items():
        counts = torch.where(system.states[name](x), torch.clamp(counts, min=k), counts)
    return counts


def training_reference(system: System, data: str = "auto") -> ReferenceSet:
    """The training part of the system's MD/PT reference set (never its evaluation part),
    only if made for this system (:meth:`~boltzgen.systems.System.stored_reference`):
    the card's set, or the ``md`` / ``pt`` set that ``data`` names."""
    kind = None if data == "auto" else data
    stored = system.stored_reference("training", kind=kind)
    if stored.data is None:
        method = kind or "md --ns N"
        raise ValueError(
            f"{system.name} has no reference data for forward-KL training ({stored.note}): run "
            f"`boltzgen reference {system.name} --method {method}` or use train.loss: reverse_kl"
        )
    return stored.data


def uses_exact_draws(system: System, params: TrainParams) -> bool:
    """Whether a stage trains on exact draws (a toy system, ``data: auto``)."""
    return params.data == "auto" and system.has_exact_reference


def frame_cost(reference: ReferenceSet, n: int) -> Cost:
    """The charge of ``n`` frames: the reference run's cost per frame, times ``n`` (rounded up)."""
    per = reference.cost_per_frame()
    return Cost(
        math.ceil(per["energy_evals"] * n), math.ceil(per["force_evals"] * n), per["wall_s"] * n
    )


def extra_frames_cost(reference: ReferenceSet, n_before: int, n_after: int) -> Cost:
    """The charge of growing a task's frames from ``n_before`` to ``n_after`` (zero if not)."""
    before = frame_cost(reference, min(n_before, len(reference.x)))
    after = frame_cost(reference, min(max(n_before, n_after), len(reference.x)))
    fields = ("energy_evals", "force_evals", "wall_s")
    return Cost(*(getattr(after, f) - getattr(before, f) for f in fields))


def data_charge(system: System, params: TrainParams, before: TrainParams | None = None) -> int:
    """Target evaluations the training data of one stage will be charged (for planning).

    ``before`` is the first stage when ``params`` is a later one: reference frames that
    stage already drew (and paid for) are not charged again (:func:`later_stage_data`).
    """
    if not params.needs_data:
        return 0
    if uses_exact_draws(system, params):
        return params.n_data * EXACT_DRAW_EVALS
    reference = training_reference(system, params.data)
    drawn = before.n_data if before is not None and before.needs_data else 0
    cost = extra_frames_cost(reference, drawn, params.n_data)
    return cost.energy_evals + cost.force_evals


def training_data(system: System, params: TrainParams, generator: torch.Generator) -> TrainingData:
    """Training samples for forward/mixed KL and their charge.

    Toy systems draw exact samples, charged :data:`EXACT_DRAW_EVALS` each. Molecules draw
    frames of the training part of their reference set, charged per frame.
    """
    if not params.needs_data:
        return TrainingData(None, Cost(), "none")
    if uses_exact_draws(system, params):
        data = system.sample_reference(params.n_data, generator)
        return TrainingData(data, Cost(params.n_data * EXACT_DRAW_EVALS), "exact")
    reference = training_reference(system, params.data)
    order = torch.randperm(len(reference.x), generator=generator)
    index = order[: params.n_data]
    x = reference.x[index]
    repeats = oversampling(system, x, params.oversample)
    source = system.reference_kind if params.data == "auto" else params.data
    return TrainingData(x, frame_cost(reference, len(index)), source, order, repeats)


def later_stage_data(
    system: System, first: TrainingData, params: TrainParams, generator: torch.Generator
) -> TrainingData:
    """The data of a stage after the first (e.g. ``finetune``), and what is left to charge.

    Reference frames are drawn once per task: a later stage takes the first ``n_data``
    frames of the first stage's permutation, so it reuses the frames already paid for and
    is charged only for frames beyond them. Exact toy draws are fresh draws, charged again.
    """
    if first.order is None or not params.needs_data:
        return training_data(system, params, generator)
    reference = training_reference(system, params.data)
    index = first.order[: params.n_data]
    cost = extra_frames_cost(reference, len(first.x), len(index))
    x = reference.x[index]
    return TrainingData(
        x, cost, first.source, first.order, oversampling(system, x, params.oversample)
    )


def stage_evaluations(
    system: System, stage: TrainParams, before: TrainParams | None = None
) -> float:
    """Target evaluations one stage plans to spend: its training loop and its data's charge
    (``before``: the first stage, when ``stage`` comes after it)."""
    return training_evaluations(stage) + data_charge(system, stage, before)
