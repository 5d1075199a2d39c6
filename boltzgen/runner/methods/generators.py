"""The trained generator that the flow-based methods of one system and seed share.

Methods of one experiment with the same generator settings and seed share one trained
flow: it is trained once, in ``RUN_DIR/<system>/_generators/<key>-seed<k>/``, under a
file lock, and every method that uses it is charged its full training cost — the
comparison stays fair.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from boltzgen.runner.methods.base import MethodContext, settings_of
from boltzgen.runner.methods.boltzmann_generator import (
    BoltzmannGeneratorParams,
    TrainedGenerator,
    train_generator,
)
from boltzgen.systems import System


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/lock`` (the folder created) while the block runs."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def settings_key(params: BoltzmannGeneratorParams) -> str:
    """First 12 hex digits of the SHA-256 of the generator settings (keys sorted)."""
    text = json.dumps(settings_of(params), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def shared_generator(
    system: System,
    params: BoltzmannGeneratorParams,
    generator: torch.Generator,
    context: MethodContext,
) -> TrainedGenerator:
    """Train (or load) the generator shared by every method with these settings and seed.

    Without a shared folder the generator is trained for this task alone.
    """
    if context.shared is None:
        return train_generator(system, params, generator, None, context.progress)
    folder = context.shared / f"{settings_key(params)}-seed{context.seed}"
    with _locked(folder):
        return train_generator(system, params, generator, folder, context.progress)
