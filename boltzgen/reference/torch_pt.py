"""The torch route: parallel tempering in torch on any system's energy.

``boltzgen reference SYSTEM --method pt --backend torch`` (the default for systems
without an OpenMM system) runs :class:`~boltzgen.samplers.ParallelTempering` — HMC moves
at every temperature of a geometric ladder T_0 < … < T_{K−1}, neighbour swaps with
probability min(1, exp((s_i − s_j)(u(x_i) − u(x_j)))), s = T_0/T (Swendsen & Wang 1986;
Earl & Deem, arXiv physics/0508111) — on ``C`` independent chains, and writes the same
reference set as the openmmtools route to ``DATA/<system>/pt/``: frames at the card's
temperature split into training and evaluation halves
(:mod:`boltzgen.records.reference_sets`), the MBAR ΔF of each named pair over every
temperature of the iterations of the evaluation half, and the transitions between the
states along the bottom chains. A run is not resumable: an interrupted one starts over.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from boltzgen.records import WeightedSamples
from boltzgen.records.provenance import versions
from boltzgen.records.reference_sets import reference_dir, split_manifest, write_manifest
from boltzgen.reference.frames import chain_transitions, ladder_free_energies, save_frames
from boltzgen.samplers.parallel_tempering import ParallelTempering, geometric_ladder
from boltzgen.systems import System

T_MAX_FACTOR = 2.0
"""Default hottest temperature, in multiples of the system's (600 K for 300 K)."""


@dataclass(frozen=True)
class TorchPTReferenceSettings:
    """How a torch parallel-tempering reference is run.

    Attributes:
        n_temperatures: K, rungs of the geometric ladder.
        t_max: the hottest temperature (the energy's units); ``None``: ``T_MAX_FACTOR``·T_0.
        n_iterations: PT steps kept after warm-up, each an HMC move of every replica and
            a round of neighbour swaps.
        n_leapfrog: leapfrog steps per HMC move.
        step_size: leapfrog step at T_0 before warm-up tunes each rung's step.
        n_chains: C independent PT chains (at least 4 give a jackknife standard error).
        n_discard: warm-up steps (step-size tuning), discarded.
        n_frames: frames kept, evenly spaced over the T_0 samples of every chain.
        seed: seed of the only random generator.
    """

    n_temperatures: int = 8
    t_max: float | None = None
    n_iterations: int = 2000
    n_leapfrog: int = 10
    step_size: float = 0.1
    n_chains: int = 8
    n_discard: int = 100
    n_frames: int = 10_000
    seed: int = 0


def generate_torch_pt_reference(
    system: System,
    settings: TorchPTReferenceSettings,
    root: Path | None = None,
    progress: bool = False,
) -> Path:
    """Parallel tempering of ``system.energy`` in torch; frames at T_0 and ΔF by MBAR.

    The reference ΔF of each named pair is MBAR over every temperature of the ladder,
    from the iterations whose T_0 samples all lie in the evaluation half (disjoint from
    the training frames).
    """
    out = reference_dir(system.name, "pt", root)
    out.mkdir(parents=True, exist_ok=True)
    t_max = settings.t_max if settings.t_max is not None else T_MAX_FACTOR * system.temperature
    ladder = geometric_ladder(system.temperature, t_max, settings.n_temperatures)
    sampler = ParallelTempering(
        system.energy, ladder, step_size=settings.step_size, n_leapfrog=settings.n_leapfrog
    )
    starts = system.initial_positions.expand(settings.n_chains, *system.energy.event_shape)
    samples = sampler.sample(
        starts.clone(),
        settings.n_iterations,
        torch.Generator().manual_seed(settings.seed),
        n_warmup=settings.n_discard,
        progress=progress,
        states=dict(system.states),
    )
    keep = torch.linspace(0, len(samples) - 1, min(settings.n_frames, len(samples))).long()
    split = split_manifest(len(keep))
    first_iteration = math.ceil(int(keep[split["evaluation"][0]]) / settings.n_chains)
    free_energies = ladder_free_energies(system, samples, first_iteration)
    x, u = (v[keep].detach().cpu().to(torch.float64) for v in (samples.x, samples.energies))
    save_frames(system, out, x, u)
    write_manifest(out, _manifest(system, settings, ladder, samples, len(keep), free_energies))
    return out


def _manifest(
    system: System,
    settings: TorchPTReferenceSettings,
    ladder: list[float],
    samples: WeightedSamples,
    n_frames: int,
    free_energies: dict[str, dict[str, float]],
) -> dict[str, Any]:
    return {
        "system": system.name,
        "method": "pt",
        "backend": "torch",
        "energy": system.card.get("energy"),
        "temperature": system.temperature,
        "ladder": ladder,
        "settings": asdict(settings),
        "n_frames": n_frames,
        "free_energies": free_energies,
        "free_energies_from": "evaluation part: MBAR over the iterations of its frames",
        "transitions": chain_transitions(system, samples),
        "split": split_manifest(n_frames),
        "cost": samples.cost.to_dict(),
        "swap_acceptance": samples.info["swap_acceptance"],
        "round_trips": samples.info["round_trips"],
        "versions": versions(),
    }
