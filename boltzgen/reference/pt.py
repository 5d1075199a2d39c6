"""The openmmtools route: parallel tempering of an OpenMM system.

``boltzgen reference SYSTEM --method pt`` (``--backend openmm``, the default for
OpenMM-backed systems) runs replica exchange over a geometric temperature ladder with
openmmtools and writes ``DATA/<system>/pt/``: the frames at the card's temperature
(:mod:`boltzgen.records.reference_sets`), the MBAR ΔF of each named pair over every
temperature of the evaluation part, the transitions between the states along the
bottom chain, and ``pt.nc``, the sampler's storage, so an interrupted run resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from boltzgen.records.provenance import versions
from boltzgen.records.reference_sets import reference_dir, split_manifest, write_manifest
from boltzgen.reference.frames import chain_transitions, rung_free_energies, save_frames
from boltzgen.samplers.parallel_tempering import geometric_ladder
from boltzgen.systems import System


@dataclass(frozen=True)
class PTReferenceSettings:
    """How a parallel-tempering reference is run (openmmtools, geometric ladder)."""

    n_temperatures: int = 8
    t_max: float = 600.0
    n_iterations: int = 2000
    steps_per_iteration: int = 500
    timestep_fs: float = 2.0
    n_discard: int = 100
    n_frames: int = 10_000
    seed: int = 0


def generate_pt_reference(
    system: System, settings: PTReferenceSettings, root: Path | None = None
) -> Path:
    """Parallel tempering of ``system``; frames at its temperature and ΔF by MBAR.

    The NetCDF storage (``pt.nc``) makes an interrupted run resume. The reference ΔF
    of each named pair is MBAR over every temperature of the ladder, from the iterations
    of the evaluation part only (disjoint from the training frames).
    """
    # openmmtools is loaded on first use: its import takes seconds
    from boltzgen.samplers.openmm_replica_exchange import openmm_parallel_tempering

    if system.openmm_system is None:
        raise ValueError(f"{system.name} has no OpenMM system: a PT reference needs one")
    out = reference_dir(system.name, "pt", root)
    out.mkdir(parents=True, exist_ok=True)
    ladder = geometric_ladder(system.temperature, settings.t_max, settings.n_temperatures)
    samples, info = openmm_parallel_tempering(
        system.openmm_system,
        system.initial_positions,
        ladder,
        settings.n_iterations,
        settings.steps_per_iteration,
        out / "pt.nc",
        settings.timestep_fs,
        settings.seed,
        n_discard=settings.n_discard,
        states=dict(system.states),
    )
    samples.info.update(info)
    keep = torch.linspace(0, len(samples) - 1, min(settings.n_frames, len(samples))).long()
    split = split_manifest(len(keep))
    first_evaluation_iteration = int(keep[split["evaluation"][0]])
    rungs = rung_free_energies(system, samples, first_evaluation_iteration)
    save_frames(
        system, out, samples.x[keep].to(torch.float64), samples.energies[keep].to(torch.float64)
    )
    manifest = {
        "system": system.name,
        "method": "pt",
        "energy": system.card.get("energy"),
        "temperature": system.temperature,
        "ladder": ladder,
        "settings": settings.__dict__,
        "n_frames": len(keep),
        "free_energies": rungs[0]["free_energies"],
        "free_energies_from": "evaluation part: MBAR over the iterations of its frames",
        "rung_free_energies": rungs,
        "transitions": chain_transitions(system, samples),
        "split": split,
        "cost": samples.cost.to_dict(),
        "swap_acceptance": info.get("swap_acceptance"),
        "versions": versions(),
    }
    write_manifest(out, manifest)
    return out
