"""The torch route: parallel tempering in torch on any system's energy.

``boltzgen reference SYSTEM --method pt --backend torch`` (the default for systems
without an OpenMM system) runs :class:`~boltzgen.samplers.ParallelTempering` — HMC or
MALA moves (:mod:`boltzgen.kernels`) with one step size per temperature, tuned by dual
averaging during warm-up, at every temperature of a geometric ladder T_0 < … < T_{K−1},
neighbour swaps with probability min(1, exp((s_i − s_j)(u(x_i) − u(x_j)))), s = T_0/T
(Swendsen & Wang 1986; Earl & Deem, arXiv physics/0508111) — on ``C`` independent chains,
all ``K·C`` replicas in one tensor. For molecules the energy is the batched
:class:`~boltzgen.energies.TorchForceField`, moved to the requested device and dtype
(float32 is several times faster on CPU and GPU; the stored frames' energies are
re-evaluated in the system's own dtype).

It writes the same reference set as the openmmtools route to ``DATA/<system>/pt/``:
frames at the card's temperature split into training and evaluation halves
(:mod:`boltzgen.records.reference_sets`), the MBAR ΔF of each named pair over every
temperature of the iterations of the evaluation half, the transitions between the states
along the T_0 chains, the entries into each state and the ladder round trips.

**Refusal.** A reference whose T_0 chains entered some named state of a free-energy pair
fewer than ``min_entries`` times (default 10) has not crossed the barrier often enough
for its ΔF to mean anything: :class:`ReferenceRefused` is raised, nothing is written but
``refused.json`` (the manifest, with the reason), and the set already in place is kept.
**Resuming.** The run checkpoints its chains every few minutes and when it stops
(:mod:`boltzgen.reference.pt_checkpoint`); ``resume=True`` (``--resume``) continues them
up to the new ``n_iterations`` and rewrites the set from everything sampled so far, so a
reference can be made precise over several invocations (or queue jobs).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzgen.energies.base import Energy
from boltzgen.energies.forcefield import TorchForceField
from boltzgen.flows.internal import ChiralCentres
from boltzgen.records import Cost, WeightedSamples
from boltzgen.records.files import write_json
from boltzgen.records.provenance import versions
from boltzgen.records.reference_sets import reference_dir, split_manifest, write_manifest
from boltzgen.reference.frames import chain_transitions, rung_free_energies, save_frames
from boltzgen.reference.pt_checkpoint import (
    EVERY_S,
    PTProgress,
    checkpoint_path,
    grow,
    load_progress,
    save_progress,
)
from boltzgen.samplers.parallel_tempering import ParallelTempering, geometric_ladder
from boltzgen.systems import System

T_MAX_FACTOR = 2.0
"""Default hottest temperature, in multiples of the system's (600 K for 300 K)."""

MIN_ENTRIES = 10
"""Entries into each named state the T_0 chains must make for a reference to count."""

DTYPES = {"float64": torch.float64, "float32": torch.float32}


class ReferenceRefused(RuntimeError):
    """The run did not cross between the named states often enough to be a reference."""


@dataclass(frozen=True)
class TorchPTReferenceSettings:
    """How a torch parallel-tempering reference is run.

    Attributes:
        n_temperatures: K, rungs of the geometric ladder.
        t_max: the hottest temperature (the energy's units); ``None``: ``T_MAX_FACTOR``·T_0.
        n_iterations: PT steps kept after warm-up, each a move of every replica and
            a round of neighbour swaps.
        n_leapfrog: leapfrog steps per HMC move (1 for ``move="langevin"``).
        step_size: initial ε at T_0 (ε_k = ε·√(T_k/T_0) elsewhere), or one ε per
            temperature; warm-up then tunes each rung's ε towards ``target_acceptance``.
        n_chains: C independent PT chains (at least 4 give a jackknife standard error).
        n_discard: warm-up steps (step-size tuning), discarded.
        n_frames: frames kept, evenly spaced over the T_0 samples of every chain.
        seed: seed of the only random generator.
        move: ``"hmc"`` or ``"langevin"`` (MALA).
        target_acceptance: mean move acceptance each rung's ε is tuned towards.
        thin: keep every ``thin``-th PT step (frames, ladder energies and states).
        dtype: ``"float64"`` or ``"float32"`` for a :class:`TorchForceField` energy.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when present) for a
            :class:`TorchForceField` energy; other energies run where they are.
        min_entries: refuse the reference unless the T_0 chains entered each named state
            of every free-energy pair at least this often.
        max_wall_s: stop sampling this many seconds after the start, warm-up included
            (``None``: run every iteration); the manifest records the iterations run.
    """

    n_temperatures: int = 8
    t_max: float | None = None
    n_iterations: int = 2000
    n_leapfrog: int = 10
    step_size: float | tuple[float, ...] = 0.1
    n_chains: int = 8
    n_discard: int = 100
    n_frames: int = 10_000
    seed: int = 0
    move: Literal["hmc", "langevin"] = "hmc"
    target_acceptance: float = 0.75
    thin: int = 1
    dtype: Literal["float64", "float32"] = "float64"
    device: str = "cpu"
    min_entries: int = MIN_ENTRIES
    max_wall_s: float | None = None


def resolve_device(device: str) -> torch.device:
    """``"auto"``: CUDA when a GPU is present, else the CPU; other names as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def sampling_energy(system: System, settings: Any) -> Energy:
    """The system's energy on the settings' ``device`` and ``dtype`` (force fields only;
    PT and umbrella settings both carry the two fields)."""
    if isinstance(system.energy, TorchForceField):
        return system.energy.to(resolve_device(settings.device), DTYPES[settings.dtype])
    return system.energy


def generate_torch_pt_reference(
    system: System,
    settings: TorchPTReferenceSettings,
    root: Path | None = None,
    progress: bool = False,
    resume: bool = False,
) -> Path:
    """Parallel tempering of the system's energy in torch; frames at T_0 and ΔF by MBAR.

    The reference ΔF of each named pair is MBAR over every temperature of the ladder,
    from the iterations whose T_0 samples all lie in the evaluation half (disjoint from
    the training frames). ``resume`` continues the run checkpointed in the output folder.

    Raises:
        ReferenceRefused: some named state was entered fewer than ``min_entries`` times.
    """
    out = reference_dir(system.name, "pt", root)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = checkpoint_path(out)
    samples, ladder = run_parallel_tempering(system, settings, progress, checkpoint, resume)
    keep = torch.linspace(0, len(samples) - 1, min(settings.n_frames, len(samples))).long()
    split = split_manifest(len(keep))
    steps_per_row = settings.n_chains
    first_iteration = math.ceil(int(keep[split["evaluation"][0]]) / steps_per_row)
    crossing = crossing_statistics(system, samples)
    rungs = rung_free_energies(system, samples, first_iteration)
    manifest = _manifest(system, settings, ladder, samples, len(keep), rungs, crossing)
    reason = refusal_reason(crossing["entries"], settings.min_entries)
    if reason is not None:
        write_json(out / "refused.json", {**manifest, "refused": reason})
        raise ReferenceRefused(f"{system.name}: no reference written: {reason}")
    x = samples.x[keep].detach().cpu().to(torch.float64)
    u = system.energy.energy(x.to(system.initial_positions.dtype)).to(torch.float64)
    save_frames(system, out, x, u.cpu())
    (out / "refused.json").unlink(missing_ok=True)
    write_manifest(out, manifest)
    return out


def run_parallel_tempering(
    system: System,
    settings: TorchPTReferenceSettings,
    progress: bool = False,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> tuple[WeightedSamples, list[float]]:
    """Warm-up, then up to ``n_iterations`` PT steps (fewer if ``max_wall_s`` runs out),
    checkpointed to ``checkpoint`` when given; ``resume`` continues from it instead of
    warming up afresh."""
    energy = sampling_energy(system, settings)
    t_max = settings.t_max if settings.t_max is not None else T_MAX_FACTOR * system.temperature
    ladder = geometric_ladder(system.temperature, t_max, settings.n_temperatures)
    sampler = ParallelTempering(
        energy,
        ladder,
        move=settings.move,
        step_size=settings.step_size,
        n_leapfrog=settings.n_leapfrog,
        target_acceptance=settings.target_acceptance,
    )
    device = getattr(energy, "device", system.initial_positions.device)
    dtype = getattr(energy, "dtype", system.initial_positions.dtype)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    before = None
    if resume:
        if checkpoint is None:
            raise ValueError("resume needs the checkpoint path")
        before = load_progress(checkpoint, system.name, settings, sampler.trace_type, device)
        generator.set_state(before.generator_state)
    limit = math.inf if settings.max_wall_s is None else settings.max_wall_s
    prior = Cost() if before is None else before.cost
    run = _Segment(energy, time.monotonic() + limit, checkpoint, system.name, settings, prior)
    if before is None:
        start = system.initial_positions.to(device=device, dtype=dtype)
        x0 = start.expand(settings.n_chains, *energy.event_shape).clone()
        state = sampler.warmup(sampler.init(x0), settings.n_discard, generator, progress)
        trace, kept = None, 0
    else:
        state, trace, kept = before.state, before.trace, before.kept
    state, trace, n_steps = _sample_until(
        sampler, state, settings, generator, system, run, progress, trace, kept
    )
    x = trace.x.reshape((-1, *trace.x.shape[2:]))
    u = trace.energies[:, 0].reshape(-1)
    info = sampler._info(state, trace, settings.n_discard, n_steps, settings.thin)
    info["stopped_by_wall_clock"] = n_steps < settings.n_iterations
    samples = WeightedSamples(x, torch.zeros_like(u), u, run.cost(), info, settings.n_chains)
    return samples, ladder


class _Segment:
    """One invocation's sampling: its deadline, its checkpoints, and the cost of the run so
    far — ``prior`` (what earlier invocations paid) plus what this one has spent."""

    def __init__(
        self,
        energy: Energy,
        deadline: float,
        checkpoint: Path | None,
        system: str,
        settings: TorchPTReferenceSettings,
        prior: Cost,
    ):
        self.energy, self.deadline, self.checkpoint = energy, deadline, checkpoint
        self.system, self.settings, self.prior = system, settings, prior
        self.start = time.perf_counter()
        self.counter = energy.counter.snapshot()
        self.last_save = time.monotonic()

    def cost(self) -> Cost:
        spent = self.energy.counter.since(self.counter)
        wall = time.perf_counter() - self.start
        return self.prior + Cost(spent.energy, spent.force, wall)

    def save(self, state: Any, trace: Any, kept: int, generator: torch.Generator) -> None:
        """Checkpoint the chains and the first ``kept`` rows of ``trace``."""
        if self.checkpoint is None:
            return
        cut = _cut(trace, kept)
        progress = PTProgress(state, cut, kept, generator.get_state(), self.cost())
        save_progress(self.checkpoint, self.system, self.settings, progress)
        self.last_save = time.monotonic()

    def due(self) -> bool:
        return self.checkpoint is not None and time.monotonic() - self.last_save > EVERY_S


def _cut(trace: Any, kept: int) -> Any:
    """A shallow copy of ``trace`` holding its first ``kept`` rows."""
    return replace(
        trace,
        x=trace.x[:kept],
        energies=trace.energies[:kept],
        states={name: v[:kept] for name, v in trace.states.items()},
    )


def _sample_until(
    sampler: ParallelTempering,
    state: Any,
    settings: TorchPTReferenceSettings,
    generator: torch.Generator,
    system: System,
    run: _Segment,
    progress: bool,
    trace: Any = None,
    kept: int = 0,
) -> tuple[Any, Any, int]:
    """The sampling loop of :meth:`ParallelTempering.sample` from row ``kept`` of
    ``trace`` (``None``: a fresh one), stopping at ``run.deadline`` (``time.monotonic``;
    the wall-clock limit counts from before the warm-up) and checkpointing on the way.

    Returns the final state, the trace cut to the kept rows and the steps taken in all.
    """
    states = dict(system.states)
    n_keep = settings.n_iterations // settings.thin
    if trace is None:
        trace = sampler.trace_type.empty(state, n_keep, list(states))
    else:
        trace = grow(trace, n_keep)
    bar = tqdm(
        total=settings.n_iterations,
        initial=kept * settings.thin,
        desc="PT sampling",
        disable=not progress,
        mininterval=30,
    )
    for i in range(kept * settings.thin, settings.n_iterations):
        state, info = sampler.step(state, generator)
        trace.add(info)
        bar.update()
        if (i + 1) % settings.thin == 0:
            trace.keep(kept, state, states)
            kept += 1
            if time.monotonic() > run.deadline:
                break
            if run.due():
                run.save(state, trace, kept, generator)
    bar.close()
    run.save(state, trace, kept, generator)
    return state, _cut(trace, kept), kept * settings.thin


def state_entries(system: System, samples: WeightedSamples) -> dict[str, int]:
    """Entries into each state of every named pair along the T_0 chains.

    An entry into b is a switch from a to b along one chain (frames in neither state
    are skipped), so the first visit from the start does not count.
    """
    n_chains = samples.n_chains or 1
    out: dict[str, int] = {}
    for a, b in system.free_energy_pairs:
        in_a, in_b = system.states[a](samples.x), system.states[b](samples.x)
        into = {a: 0, b: 0}
        for c in range(n_chains):
            label = _labels(in_a[c::n_chains], in_b[c::n_chains])
            into[b] += int(((label[1:] == 1) & (label[:-1] == -1)).sum())
            into[a] += int(((label[1:] == -1) & (label[:-1] == 1)).sum())
        for name, count in into.items():
            out[name] = min(out.get(name, count), count)
    return out


def _labels(in_a: Tensor, in_b: Tensor) -> Tensor:
    """+1 in b, −1 in a, frames in neither dropped."""
    label = in_b.to(torch.int8) - in_a.to(torch.int8)
    return label[label != 0].cpu()


def mirror_frames(system: System, x: Tensor) -> int | None:
    """Frames of ``x`` with a D stereocentre (peptides; ``None`` for other systems).

    Force fields are mirror symmetric, so a hot replica that inverts a centre carries D
    frames down the ladder; a reference for the L peptide should have none.
    """
    if system.topology is None:
        return None
    centres = ChiralCentres.from_topology(system.topology)
    if centres.atoms.shape[0] == 0:
        return None
    return int((~centres.is_l(x.reshape(-1, *x.shape[-2:]).cpu().double())).sum())


def crossing_statistics(system: System, samples: WeightedSamples) -> dict[str, Any]:
    """Transitions per named pair, entries per state, ladder round trips, D frames."""
    return {
        "d_frames": mirror_frames(system, samples.x),
        "transitions": chain_transitions(system, samples),
        "entries": state_entries(system, samples),
        "round_trips": samples.info["round_trips"],
        "mean_round_trip_steps": samples.info["mean_round_trip_steps"],
    }


def refusal_reason(entries: dict[str, int], min_entries: int) -> str | None:
    """Why a run is no reference (a state entered fewer than ``min_entries`` times), or None."""
    short = {name: n for name, n in entries.items() if n < min_entries}
    if not short:
        return None
    listed = ", ".join(f"{name} entered {n}×" for name, n in short.items())
    return (
        f"{listed} by the T_0 chains, fewer than the {min_entries} entries a reference needs; "
        "run longer (--iterations), with more chains or a hotter ladder (--t-max)"
    )


def _manifest(
    system: System,
    settings: TorchPTReferenceSettings,
    ladder: list[float],
    samples: WeightedSamples,
    n_frames: int,
    rungs: list[dict[str, Any]],
    crossing: dict[str, Any],
) -> dict[str, Any]:
    return {
        "system": system.name,
        "method": "pt",
        "backend": "torch",
        "energy": system.card.get("energy"),
        "temperature": system.temperature,
        "ladder": ladder,
        "settings": asdict(settings),
        "device": str(resolve_device(settings.device)),
        "n_frames": n_frames,
        "free_energies": rungs[0]["free_energies"],
        "free_energies_from": "evaluation part: MBAR over the iterations of its frames",
        "rung_free_energies": rungs,
        **crossing,
        "split": split_manifest(n_frames),
        "cost": samples.cost.to_dict(),
        "step_size": samples.info["step_size"],
        "move_acceptance": samples.info["move_acceptance"],
        "swap_acceptance": samples.info["swap_acceptance"],
        "iterations_run": samples.info["n_steps"],
        "stopped_by_wall_clock": samples.info["stopped_by_wall_clock"],
        "versions": versions(),
    }
