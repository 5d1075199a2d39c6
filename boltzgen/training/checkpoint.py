"""Atomic checkpoint files: a crash while writing leaves the previous checkpoint intact."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: to ``path.tmp`` first, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(dict(state), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state saved at ``path`` (tensors on the CPU; plain tensors and containers only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def check_resumable(
    path: Path, saved: Mapping[str, Any], config: Mapping[str, Any], free: frozenset[str]
) -> None:
    """Raise unless ``config`` equals the ``saved`` one outside the keys in ``free``.

    A key missing from ``saved`` (a checkpoint written before it existed) is not checked.
    """
    ours = {k: v for k, v in config.items() if k not in free}
    theirs = {k: saved.get(k, v) for k, v in ours.items()}
    if ours != theirs:
        changed = sorted(k for k in ours if ours[k] != theirs[k])
        raise ValueError(
            f"{path} was written with different settings ({', '.join(changed)} differ): "
            "use the same settings or another checkpoint_dir"
        )
