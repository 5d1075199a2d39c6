"""Atomic, checksummed checkpoint files with one previous generation kept.

A checkpoint ``NAME.pt`` is written by :func:`~boltzgen.records.files.write_atomic`
with its SHA-256 beside it (``NAME.pt.sha256``); before it is replaced, the current
one (if it checks out) becomes ``NAME.prev.pt``. A crash while writing leaves the
previous checkpoint intact, and a checkpoint found truncated or corrupted later is
passed over for the previous one (:func:`load_good_checkpoint`) — training resumes
from an earlier step and, being exactly resumable, ends with the same parameters.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from boltzgen.records.files import (
    DamagedFile,
    WriteError,
    checksum_path,
    damage,
    read_verified,
    recorded_checksum,
    write_atomic,
)


def previous_path(path: Path) -> Path:
    """Where the generation before ``path`` is kept: ``NAME.prev.pt`` for ``NAME.pt``."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _keep_previous(path: Path) -> None:
    """Move a checkpoint that checks out to :func:`previous_path`.

    The order keeps one good generation at every instant: the previous copy's checksum
    is rewritten to the current file's (which stays good), then the file is renamed
    over the previous copy (now good, the current one absent).
    """
    digest = recorded_checksum(path)
    if digest is None or damage(path) is not None:
        return
    previous = previous_path(path)
    write_atomic(checksum_path(previous), f"{digest}  {previous.name}\n".encode())
    try:
        os.replace(path, previous)
    except OSError as error:
        raise WriteError(previous, error) from error


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically with its checksum, keeping the last good one.

    Raises:
        WriteError: the disk is full or the folder unwritable (earlier checkpoints stay).
    """
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    _keep_previous(path)
    write_atomic(path, buffer.getvalue(), checksum=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state saved at ``path`` (tensors on the CPU; plain tensors and containers only).

    Raises:
        FileNotFoundError: there is no checkpoint at ``path``.
        DamagedFile: it does not match its recorded checksum.
    """
    data = read_verified(path)
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_good_checkpoint(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The newest checkpoint at ``path`` that checks out, and one line if one was damaged.

    Tries ``path``, then :func:`previous_path`. Returns ``(None, None)`` when there is
    no checkpoint at all; ``(None, line)`` when every copy is damaged (start over).
    """
    damaged = []
    for candidate in (path, previous_path(path)):
        try:
            state = load_checkpoint(candidate)
        except FileNotFoundError:
            continue
        except DamagedFile as error:
            damaged.append(error)
            continue
        if not damaged:
            return state, None
        where = f"step {state['step']}" if "step" in state else "its state"
        return state, f"{damaged[0]}; resuming from the previous checkpoint ({where})"
    if not damaged:
        return None, None
    return None, f"{damaged[0]}, and no good earlier checkpoint: starting this stage over"


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
