"""Checkpoints of a torch parallel-tempering reference run, so a long one can go on later.

A precise reference ΔF needs long runs (hours on a CPU); a wall-clock limit, a killed job
or a queue's time limit should not throw the work away. During sampling the run writes
``DATA/<system>/pt/checkpoint/pt_state.pt`` every few minutes and when it stops: the
replicas (positions, energies, forces, tuned step sizes, walker ids, round-trip
bookkeeping), everything kept so far (T_0 frames, every rung's energies and state
indicators, acceptance sums), the random generator's state and the cost paid so far.
``boltzgen reference ... --resume`` loads it, skips the warm-up and continues the same
chains: the result of a run stopped and resumed is the result of one uninterrupted run
(same frames, same ΔF, bit for bit on the same device), and its cost is the sum of the
pieces.

A resumed run must use the same settings except those that only say how far to go:
``n_iterations`` (the new total), ``max_wall_s`` (this invocation's limit), ``n_frames``
and ``min_entries``; anything else is refused, naming the settings that differ.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from boltzgen.errors import ConfigError
from boltzgen.records import Cost
from boltzgen.samplers.parallel_tempering import PTState, RoundTrips

FORMAT = 1
CHECKPOINT_NAME = "pt_state.pt"
FREE_SETTINGS = ("n_iterations", "max_wall_s", "n_frames", "min_entries")
"""Settings a resumed run may change: they say how far to go, not how to sample."""
EVERY_S = 300.0
"""Seconds between checkpoints while sampling."""


@dataclass
class PTProgress:
    """A PT run's progress: the replicas, what was kept, the generator and the cost.

    ``trace`` is the sampler's trace cut to its ``kept`` rows.
    """

    state: PTState
    trace: Any
    kept: int
    generator_state: Tensor
    cost: Cost


def checkpoint_path(out: Path) -> Path:
    """Where the run of reference folder ``out`` keeps its checkpoint."""
    return out / "checkpoint" / CHECKPOINT_NAME


def sampling_settings(settings: Any) -> dict[str, Any]:
    """The settings that fix the chains: all but :data:`FREE_SETTINGS`."""
    return {k: v for k, v in asdict(settings).items() if k not in FREE_SETTINGS}


def save_progress(path: Path, system: str, settings: Any, progress: PTProgress) -> None:
    """Write ``progress`` to ``path`` atomically (a killed write leaves the last one)."""
    state, trace = progress.state, progress.trace
    data = {
        "format": FORMAT,
        "system": system,
        "settings": sampling_settings(settings),
        "state": {
            **{f.name: getattr(state, f.name) for f in fields(state) if f.name != "trips"},
            "trips_phase": state.trips.phase,
            "trips_start": state.trips.start,
        },
        "trace": {f.name: _own(getattr(trace, f.name)) for f in fields(trace)},
        "kept": progress.kept,
        "generator_state": progress.generator_state,
        "cost": progress.cost.to_dict(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(data, partial)
    os.replace(partial, path)


def _own(value: Any) -> Any:
    """A tensor (or a mapping of them) copied out of any larger storage it views, so that
    saving a trace cut to its kept rows writes those rows only."""
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _own(v) for k, v in value.items()}
    return value


def load_progress(
    path: Path, system: str, settings: Any, trace_type: type, device: torch.device
) -> PTProgress:
    """The progress saved at ``path`` by a run of ``system`` with compatible ``settings``.

    Raises:
        ConfigError: no checkpoint there, or one of another system or other settings.
    """
    where = "boltzgen reference --resume"
    if not path.exists():
        raise ConfigError(where, "checkpoint", "no checkpoint to resume from", str(path))
    data = torch.load(path, map_location=device, weights_only=True)
    if data.get("format") != FORMAT or data.get("system") != system:
        raise ConfigError(where, "checkpoint", f"was not written for {system}", str(path))
    changed = _changed(data["settings"], sampling_settings(settings))
    if changed:
        raise ConfigError(
            where,
            "settings",
            f"differ from the checkpointed run's ({changed}); resume with the same ones, "
            "or run without --resume to start afresh",
            str(path),
        )
    raw = dict(data["state"])
    trips = RoundTrips(raw.pop("trips_phase"), raw.pop("trips_start"))
    state = PTState(**raw, trips=trips)
    return PTProgress(
        state,
        trace_type(**data["trace"]),
        int(data["kept"]),
        data["generator_state"].cpu(),
        Cost.from_dict(data["cost"]),
    )


def checkpointed_settings(path: Path) -> dict[str, Any] | None:
    """The sampling settings of the run checkpointed at ``path``, ``None`` if none is."""
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)["settings"]


def _changed(saved: dict[str, Any], now: dict[str, Any]) -> str:
    names = sorted(set(saved) | set(now))
    diffs = [
        f"{k}: {saved.get(k)!r} → {now.get(k)!r}"
        for k in names
        if _norm(saved.get(k)) != _norm(now.get(k))
    ]
    return "; ".join(diffs)


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def grow(trace: Any, n_keep: int) -> Any:
    """``trace`` (of ``kept`` rows) with room for ``n_keep`` rows, the kept ones first."""
    kept = trace.x.shape[0]
    if n_keep <= kept:
        return trace

    def extend(t: Tensor, fill: Any) -> Tensor:
        extra = torch.full((n_keep - kept, *t.shape[1:]), fill, dtype=t.dtype, device=t.device)
        return torch.cat([t, extra])

    trace.x = extend(trace.x, 0)
    trace.energies = extend(trace.energies, 0)
    trace.states = {name: extend(v, False) for name, v in trace.states.items()}
    return trace
