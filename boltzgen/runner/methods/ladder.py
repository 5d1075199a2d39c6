"""What the ladder methods (parallel tempering, TSF replica exchange) add to their output.

Samples returned are those of the lowest (the system's) temperature. The whole ladder's
energies and state indicators are saved next to the result in ``ladder.npz``, and ΔF by
MBAR over every temperature goes into ``info["mbar_free_energies"]``, beside the
estimate from the T₀ samples alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzgen.records import WeightedSamples
from boltzgen.systems import System

LADDER_KEYS = ("ladder_energies", "ladder_states")


def _mbar(samples: WeightedSamples, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """ΔF ``B_vs_A`` of every state pair (A, B), by MBAR over the ladder.

    pymbar, a slow import, is loaded only when a ladder method has run.
    """
    from boltzgen.metrics.mbar import ladder_state_free_energy

    out = {}
    for a, b in pairs:
        estimate = ladder_state_free_energy(samples, a, b)
        value = estimate.value if math.isfinite(estimate.value) else None
        out[f"{b}_vs_{a}"] = {"value": value, "stderr": estimate.stderr}
    return out


def mbar_from_file(
    folder: Path, temperatures: list[float], names: list[str]
) -> dict[str, Any] | None:
    """The ladder ΔF of each free energy ``B_vs_A`` in ``names``, recomputed by MBAR from a
    finished task's ``ladder.npz`` (the estimator as it is now, not as it was when the task
    ran); ``None`` where the folder has no ladder file."""
    path = folder / "ladder.npz"
    if not path.exists():
        return None
    with np.load(path) as data:
        energies = torch.as_tensor(data["energies"])
        states = {
            k.removeprefix("state_"): torch.as_tensor(data[k])
            for k in data.files
            if k.startswith("state_")
        }
    info = {"temperatures": temperatures, "ladder_energies": energies, "ladder_states": states}
    zeros = torch.zeros(1, dtype=torch.float64)
    samples = WeightedSamples(zeros[:, None], zeros, zeros, info=info)
    pairs = [tuple(reversed(name.split("_vs_"))) for name in names]
    return _mbar(samples, pairs)


def with_ladder(system: System, samples: WeightedSamples, output: Path | None) -> WeightedSamples:
    """Add MBAR free energies to ``info``; move the ladder arrays to ``output/ladder.npz``.

    Without an output folder the arrays are dropped.
    """
    samples.info["mbar_free_energies"] = _mbar(samples, list(system.free_energy_pairs))
    ladder = {k: samples.info.pop(k) for k in LADDER_KEYS if k in samples.info}
    if output is None:
        return samples
    states = ladder.get("ladder_states", {})
    output.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        output / "ladder.npz",
        energies=np.asarray(torch.as_tensor(ladder.get("ladder_energies", [])).cpu()),
        **{f"state_{k}": np.asarray(torch.as_tensor(v).cpu()) for k, v in states.items()},
    )
    return samples
