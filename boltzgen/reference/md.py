"""The MD route: OpenMM Langevin dynamics at the card's temperature.

``boltzgen reference SYSTEM --method md --ns N`` writes ``DATA/<system>/md/``:
``reference.npz`` (subsampled positions ``x [n, N, 3]`` in nm, reduced energies
``u [n]``, backbone torsions ``phi``/``psi [n, K]``), ``manifest.json`` (force field,
temperature, length, seed, MD settings, versions, the training/evaluation ``split`` and
the checksum; see :mod:`boltzgen.records.reference_sets`), the trajectory of a molecule,
and ``checkpoint.npz`` while running, so an interrupted run resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from boltzgen.records import WeightedSamples
from boltzgen.records.provenance import versions
from boltzgen.records.reference_sets import reference_dir, split_manifest, write_manifest
from boltzgen.reference.frames import save_frames
from boltzgen.samplers.md import MDConfig, MolecularDynamics, write_trajectory
from boltzgen.systems import System


@dataclass(frozen=True)
class MDReferenceSettings:
    """How an MD reference is run: length, frames kept, integrator."""

    ns: float = 1.0
    n_frames: int = 10_000
    timestep_fs: float = 1.0
    friction_per_ps: float = 1.0
    hydrogen_mass: float | None = None
    equilibration_ps: float = 100.0
    seed: int = 0

    def md_config(self) -> MDConfig:
        steps = self.ns * 1e6 / self.timestep_fs
        interval = max(1, round(steps / self.n_frames))
        return MDConfig(
            timestep_fs=self.timestep_fs,
            friction_per_ps=self.friction_per_ps,
            frame_interval=interval,
            hydrogen_mass=self.hydrogen_mass,
            checkpoint_every=max(1, self.n_frames // 20),
        )


def generate_md_reference(
    system: System,
    settings: MDReferenceSettings,
    root: Path | None = None,
    progress: bool = True,
) -> Path:
    """Run MD on ``system`` and write its reference set; resumes an interrupted run."""
    if system.openmm_system is None:
        raise ValueError(f"{system.name} has no OpenMM system: an MD reference needs one")
    out = reference_dir(system.name, "md", root)
    out.mkdir(parents=True, exist_ok=True)
    config = settings.md_config()
    md = MolecularDynamics(system.openmm_system, system.temperature, config)
    n_equilibration = round(settings.equilibration_ps * 1e3 / settings.timestep_fs)
    samples = md.sample(
        system.initial_positions,
        settings.n_frames,
        torch.Generator().manual_seed(settings.seed),
        n_equilibration=n_equilibration,
        progress=progress,
        checkpoint=out / "checkpoint.npz",
    )
    save_frames(system, out, samples.x, samples.energies)
    if system.topology is not None:
        write_trajectory(samples, system.topology, out)
    write_manifest(out, _manifest(system, settings, config, samples))
    (out / "checkpoint.npz").unlink(missing_ok=True)
    return out


def _manifest(
    system: System, settings: MDReferenceSettings, config: MDConfig, samples: WeightedSamples
) -> dict[str, Any]:
    return {
        "system": system.name,
        "method": "md",
        "energy": system.card.get("energy"),
        "temperature": system.temperature,
        "ns": settings.ns,
        "seed": settings.seed,
        "n_frames": len(samples),
        "frame_interval_steps": config.frame_interval,
        "settings": settings.__dict__,
        "cost": samples.cost.to_dict(),
        "split": split_manifest(len(samples)),
        "versions": versions(),
    }
