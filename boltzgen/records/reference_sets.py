"""Reference-set files: frames, reduced energies, torsions and a manifest, split in two.

A reference set of a system lives in ``DATA/<system>/<method>/``:

* ``reference.npz`` — positions ``x [n, *event_shape]``, reduced energies ``u [n]`` and,
  for peptides, backbone torsions ``phi [n, K]`` and ``psi [n, K]`` (radians; ``K = 0``
  for other systems);
* ``manifest.json`` — how the set was made (method, settings, cost, versions), the
  training/evaluation ``split`` and the SHA-256 checksum of ``reference.npz``.

``DATA`` is ``$BOLTZGEN_DATA`` or ``data/`` at the repository root. The routes that
generate sets (MD, parallel tempering) live in :mod:`boltzgen.reference`; this module
only reads and writes the files.

**Training and evaluation parts.** Every set is split into two disjoint, contiguous
halves in time order: frames ``[0, n_train)`` are the *training* part (forward-KL and
flow-matching data) and ``[n_train, n)`` the *evaluation* part (E-W2/T-W2 reference
frames and the reference ΔF). A method is never scored against frames it trained on.
The split is written to the manifest (``split``); a set written before splits existed
gets the same deterministic rule on load (``split.rule`` says so). Contiguous halves,
not interleaved frames, keep the two parts as nearly independent as one trajectory
allows (only the frames near the cut are correlated across it).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzgen.records.files import write_json
from boltzgen.records.samples import WeightedSamples

REPOSITORY = Path(__file__).resolve().parent.parent.parent
PARTS = ("all", "training", "evaluation")
SPLIT_RULE = "contiguous halves in time order: training [0, n_train), evaluation [n_train, n)"


def data_dir() -> Path:
    """Where reference sets live: ``$BOLTZGEN_DATA`` or ``data/`` in the repository."""
    return Path(os.environ.get("BOLTZGEN_DATA", REPOSITORY / "data"))


def reference_dir(system_name: str, method: str = "md", root: Path | None = None) -> Path:
    """The folder ``DATA/<system>/<method>`` of one reference set."""
    return (root or data_dir()) / system_name / method


def sha256(path: Path) -> str:
    """Hex SHA-256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_manifest(n_frames: int) -> dict[str, Any]:
    """The deterministic training/evaluation split of ``n_frames`` frames in time order.

    ``n_train = n_frames // 2``: the evaluation part gets the later (better equilibrated)
    frame when ``n_frames`` is odd.
    """
    n_train = n_frames // 2
    return {"rule": SPLIT_RULE, "training": [0, n_train], "evaluation": [n_train, n_frames]}


def write_frames(out: Path, x: Tensor, u: Tensor, phi: Tensor, psi: Tensor) -> None:
    """Write ``reference.npz``: ``x [n, *event]``, ``u [n]``, ``phi``/``psi [n, K]``."""
    np.savez_compressed(
        out / "reference.npz", x=x.numpy(), u=u.numpy(), phi=phi.numpy(), psi=psi.numpy()
    )


def write_manifest(out: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json``: ``manifest`` plus the checksum of ``reference.npz``."""
    checksum = {"reference.npz": sha256(out / "reference.npz")}
    write_json(out / "manifest.json", {**manifest, "sha256": checksum})


@dataclass
class ReferenceSet:
    """A reference data set: frames, reduced energies, φ/ψ and its manifest.

    ``part`` says which frames it holds: ``"all"``, ``"training"`` or ``"evaluation"``
    (see the module docstring); ``manifest["split"]`` gives the index ranges.
    """

    x: Tensor
    energies: Tensor
    phi: Tensor
    psi: Tensor
    manifest: dict[str, Any] = field(default_factory=dict)
    part: str = "all"

    def samples(self) -> WeightedSamples:
        """The frames as one MD chain (zero log-weights)."""
        return WeightedSamples(self.x, torch.zeros_like(self.energies), self.energies, n_chains=1)

    def select(self, part: str) -> ReferenceSet:
        """The ``training`` or ``evaluation`` frames of a whole set (``all``: itself)."""
        if part not in PARTS:
            raise ValueError(f"reference part must be one of {PARTS}, got {part!r}")
        if part == self.part:
            return self
        if self.part != "all":
            raise ValueError(f"the {self.part} part of a reference set holds no {part} frames")
        start, stop = self.manifest["split"][part]
        return ReferenceSet(
            self.x[start:stop],
            self.energies[start:stop],
            self.phi[start:stop],
            self.psi[start:stop],
            self.manifest,
            part,
        )

    def cost_per_frame(self) -> dict[str, float]:
        """What producing one frame cost: the whole run's cost over its frame count.

        Training data drawn from the set are charged this per frame used (the run that
        made them, equilibration included, amortised over every frame it kept).
        """
        total = self.manifest.get("cost", {})
        n = max(1, int(self.manifest["split"]["evaluation"][1]))
        return {k: float(total.get(k, 0)) / n for k in ("energy_evals", "force_evals", "wall_s")}


def load_reference(
    system_name: str, method: str = "md", root: Path | None = None, part: str = "all"
) -> ReferenceSet | None:
    """The reference set of a system (``part``: all, training or evaluation frames).

    Returns ``None`` if it has not been generated. A manifest without a ``split`` (a set
    written before splits existed) gets :func:`split_manifest`'s deterministic split.
    Raises ``ValueError`` if the data no longer match the manifest's checksum.
    """
    out = reference_dir(system_name, method, root)
    npz, manifest_path = out / "reference.npz", out / "manifest.json"
    if not (npz.exists() and manifest_path.exists()):
        return None
    manifest = json.loads(manifest_path.read_text())
    if sha256(npz) != manifest["sha256"]["reference.npz"]:
        raise ValueError(f"{npz} does not match the checksum in {manifest_path}: regenerate it")
    with np.load(npz) as data:
        x, u, phi, psi = (torch.from_numpy(data[k]) for k in ("x", "u", "phi", "psi"))
    if "split" not in manifest:
        manifest["split"] = {**split_manifest(len(u)), "assigned": "on load"}
    return ReferenceSet(x, u, phi, psi, manifest).select(part)


def settings_mismatch(
    manifest: Mapping[str, Any], energy: Any, temperature: float, method: str = "reference"
) -> str | None:
    """Why a set's manifest does not fit a system, or ``None`` when it does.

    A set is made for one energy (the card's ``energy`` entry, parameters included) at one
    temperature, and the routes record both in its manifest. A system whose card was
    overridden (another L, β, m², λ, K, temperature, ...) or rewritten must not be scored
    against it; a manifest that records neither cannot be checked and does not fit either.
    """
    if "energy" not in manifest or "temperature" not in manifest:
        return (
            f"the {method} set records no energy and temperature (made before manifests "
            "recorded them): regenerate it"
        )
    made = (manifest["energy"], manifest["temperature"])
    if made == (energy, temperature):
        return None
    return (
        f"the {method} set was made for energy {json.dumps(made[0], default=str)} at "
        f"temperature {made[1]}, not for this system's {json.dumps(energy, default=str)} at "
        f"{temperature}: not used (regenerate it for these settings)"
    )


def load_manifest(system_name: str, method: str, root: Path | None = None) -> dict[str, Any] | None:
    """The ``manifest.json`` of ``DATA/<system>/<method>`` (``None`` if absent).

    For sets without frames, such as the umbrella route's ΔF. Raises ``ValueError`` if a
    file the manifest checksums no longer matches it.
    """
    out = reference_dir(system_name, method, root)
    if not (out / "manifest.json").exists():
        return None
    manifest = json.loads((out / "manifest.json").read_text())
    for name, digest in manifest.get("sha256", {}).items():
        if not (out / name).exists() or sha256(out / name) != digest:
            raise ValueError(
                f"{out / name} does not match the checksum in its manifest: regenerate it"
            )
    return manifest
