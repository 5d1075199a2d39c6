"""Umbrella sampling along one collective variable, combined by MBAR.

``boltzgen reference SYSTEM --method umbrella --backend torch`` samples K biased copies
of the target, window k with the reduced potential

    u_k(x) = u(x) + b_k(s(x)),   b_k(s) = k_s (1 − cos(s − s_k))   (periodic s, a torsion)
                                 b_k(s) = ½ k_s (s − s_k)²          (any other coordinate)

(Torrie & Valleau, J. Comput. Phys. 23, 187, 1977), with the centres s_k spread evenly
over the circle (or over ``cv_range``) and one spring k_s (kT per unit² of s: both forms
have curvature k_s at their centre). The collective variable s is the one of the card's
first free-energy pair: the φ torsion of a ``{phi: k}`` state, the coordinate of a
``{coordinate: i}`` state. All ``K·C`` walkers (C chains per window) are one tensor
moved by the shared HMC kernel (:mod:`boltzgen.kernels.hmc`) with one step size per
window, tuned by dual averaging during warm-up. For molecules the energy is the batched
:class:`~boltzgen.energies.TorchForceField` on the requested device and dtype; the bias
and the totals are float64.

**Estimator** (:mod:`boltzgen.reference.umbrella_mbar`): MBAR over every window, in which
u cancels, ΔF with the larger of MBAR's stderr (each window subsampled by its statistical
inefficiency) and the jackknife over groups of chains, and the two halves as a check.

It writes ``DATA/<system>/umbrella/manifest.json`` (the same ``free_energies`` entries
as the PT routes, so a card reads them with ``reference: {kind: pt, free_energies:
umbrella}``) and ``windows.npz``, the recorded s of every walker, for re-analysis.
Biased frames are no reference set: no ``reference.npz`` is written.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzgen.kernels import hmc
from boltzgen.kernels.adaptation import DualAveraging
from boltzgen.kernels.potential import Potential, from_energy
from boltzgen.observables.peptides import PhiInterval, dihedrals
from boltzgen.observables.states import IntervalState
from boltzgen.records import CostMeter
from boltzgen.records.files import write_json
from boltzgen.records.provenance import versions
from boltzgen.records.reference_sets import load_manifest, reference_dir, sha256
from boltzgen.reference.torch_pt import mirror_frames, resolve_device, sampling_energy
from boltzgen.reference.umbrella_mbar import (
    DRIFT_Z,
    Bounds,
    Windows,
    free_energy_profile,
    solve_mbar,
    subsample,
    umbrella_free_energy,
    window_strides,
)
from boltzgen.reference.umbrella_start import nearest_frames, start_distances
from boltzgen.reference.window_exchange import ExchangeRecord, bias_and_grad, exchange
from boltzgen.systems import System

PROFILE_BINS = 36


@dataclass(frozen=True)
class UmbrellaSettings:
    """How an umbrella-sampling reference is run.

    Attributes:
        n_windows: K windows, centres evenly spaced (on the circle for a torsion).
        spring: k_s in kT per unit² of s (rad² for a torsion); ``None``:
            4/Δ², Δ the spacing of the centres (each window about Δ/2 wide).
        cv_range: ``(low, high)`` of the centres for a non-periodic s (required there).
        n_chains: C independent walkers per window (≥ 4 for the jackknife).
        n_iterations: HMC steps after warm-up (fewer if ``max_wall_s`` runs out).
        n_discard: warm-up steps (step-size tuning, pulling walkers into their window).
        n_leapfrog: leapfrog steps per HMC move.
        step_size: initial ε of every window, then tuned towards ``target_acceptance``.
        target_acceptance: mean HMC acceptance each window's ε is tuned towards.
        thin: record s every ``thin``-th step.
        exchange_every: attempt swaps of configurations between neighbouring windows
            after every ``exchange_every``-th HMC step of sampling (0: never), see
            :mod:`boltzgen.reference.window_exchange`; they cost no energy evaluation.
        seed: seed of the only random generator.
        dtype, device: of a :class:`TorchForceField` energy (others run as they are).
        max_wall_s: stop sampling this many seconds after the start, warm-up included.
        max_samples: at most this many (subsampled) samples enter MBAR, whose cost grows
            with K·N: the strides are raised beyond ⌈g_k⌉ when needed.
        start: ``"structure"``: every walker starts from the card's structure;
            ``"reference"``: window k's walkers start from evaluation frames of the card's
            MD or PT reference set whose s is nearest to s_k
            (:mod:`boltzgen.reference.umbrella_start`).
    """

    n_windows: int = 36
    spring: float | None = None
    cv_range: tuple[float, float] | None = None
    n_chains: int = 8
    n_iterations: int = 2000
    n_discard: int = 200
    n_leapfrog: int = 10
    step_size: float = 0.01
    target_acceptance: float = 0.75
    thin: int = 1
    exchange_every: int = 1
    seed: int = 0
    dtype: Literal["float64", "float32"] = "float64"
    device: str = "cpu"
    max_wall_s: float | None = None
    max_samples: int = 100_000
    start: Literal["structure", "reference"] = "structure"


@dataclass(frozen=True)
class CollectiveVariable:
    """s(x) ``[B]`` of configurations ``x: [B, *event]``, differentiable in x.

    Either the dihedral of the four ``atoms`` (a torsion, ``period`` 2π) or the flat
    ``coordinate`` of x (``period`` ``None``).
    """

    atoms: Tensor | None = None
    coordinate: int | None = None

    @property
    def period(self) -> float | None:
        return 2.0 * math.pi if self.atoms is not None else None

    def __call__(self, x: Tensor) -> Tensor:
        if self.atoms is not None:
            return dihedrals(x, self.atoms)[:, 0]
        return x.reshape(x.shape[0], -1)[:, self.coordinate].to(torch.float64)

    def describe(self) -> dict[str, Any]:
        if self.atoms is not None:
            return {"kind": "torsion", "atoms": self.atoms[0].tolist(), "period": self.period}
        return {"kind": "coordinate", "coordinate": self.coordinate, "period": None}


def collective_variable(state: Any) -> CollectiveVariable:
    """The s of a named state: the torsion of a ``PhiInterval``, the coordinate of an
    ``IntervalState``; other states have no one-dimensional s."""
    if isinstance(state, PhiInterval):
        return CollectiveVariable(atoms=state.atoms.clone())
    if isinstance(state, IntervalState):
        return CollectiveVariable(coordinate=state.coordinate)
    raise ValueError(
        f"umbrella sampling needs states that are intervals of one torsion or coordinate, "
        f"got {type(state).__name__}"
    )


def make_windows(settings: UmbrellaSettings, period: float | None) -> Windows:
    """Evenly spaced centres (on the circle: [−π, π), spacing 2π/K) and the spring."""
    k = settings.n_windows
    if period is not None:
        centres = -math.pi + period * torch.arange(k, dtype=torch.float64) / k
        spacing = period / k
    else:
        if settings.cv_range is None:
            raise ValueError("a non-periodic collective variable needs cv_range (low, high)")
        low, high = settings.cv_range
        centres = torch.linspace(low, high, k, dtype=torch.float64)
        spacing = (high - low) / max(k - 1, 1)
    spring = settings.spring if settings.spring is not None else 4.0 / spacing**2
    return Windows(centres, float(spring), period)


def biased_potential(
    potential: Potential, cv: CollectiveVariable, windows: Windows, centres: Tensor
) -> Potential:
    """u(x) + b(s(x)) per row (``centres: [B]``, each row's window centre), float64 totals."""

    def biased(x: Tensor) -> tuple[Tensor, Tensor]:
        u, grad = potential(x)
        b, grad_b = bias_and_grad(cv, windows, x, centres)
        return u.to(torch.float64) + b, grad + grad_b.to(grad.dtype)

    return biased


@dataclass
class UmbrellaRun:
    """What sampling recorded: s ``[T, K, C]``, tuned ε ``[K]``, acceptance ``[K]``,
    the window exchanges' statistics and where the walkers started."""

    s: Tensor
    step_size: Tensor
    acceptance: Tensor
    d_frames: int | None
    n_steps: int
    cost: dict[str, float]
    exchanges: ExchangeRecord
    start: dict[str, Any]


def run_umbrella(
    system: System,
    cv: CollectiveVariable,
    windows: Windows,
    settings: UmbrellaSettings,
    progress: bool = False,
) -> UmbrellaRun:
    """Warm-up (tuning ε per window), then HMC on all windows at once until done or late."""
    energy = sampling_energy(system, settings)
    device = getattr(energy, "device", system.initial_positions.device)
    dtype = getattr(energy, "dtype", system.initial_positions.dtype)
    k, c = settings.n_windows, settings.n_chains
    centres = windows.centres.to(device).repeat_interleave(c)
    base = from_energy(energy)

    def potential_at(factor: float) -> Potential:
        return biased_potential(base, cv, replace(windows, spring=factor * windows.spring), centres)

    potential = potential_at(1.0)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    x0, start = _starts(system, cv, windows, settings)
    x0 = x0.to(device=device, dtype=dtype)
    limit = math.inf if settings.max_wall_s is None else settings.max_wall_s
    deadline = time.monotonic() + limit
    meter = CostMeter(energy)
    record = ExchangeRecord.start(k, c)
    with meter.measure():
        state, step = _warmup(x0.clone(), potential_at, settings, generator, progress)
        moves = _Moves(potential, cv, windows, settings, record)
        s, accepted, state = _sample(state, moves, step, (generator, deadline), progress)
    n_steps = s.shape[0] * settings.thin
    acceptance = accepted.reshape(k, c).mean(dim=1) / max(n_steps, 1)
    d_frames = mirror_frames(system, state.x.detach())
    cost = meter.cost.to_dict()
    s = s.reshape(-1, k, c)
    return UmbrellaRun(s, step, acceptance.cpu(), d_frames, n_steps, cost, record, start)


def _starts(
    system: System,
    cv: CollectiveVariable,
    windows: Windows,
    settings: UmbrellaSettings,
) -> tuple[Tensor, dict[str, Any]]:
    """The walkers' first configurations ``[K·C, *event]`` and a note for the manifest; the
    frames are drawn with a generator of their own, so the sampling stream is the same for
    either start."""
    k, c = settings.n_windows, settings.n_chains
    if settings.start == "structure":
        x0 = system.initial_positions.expand(k * c, *system.initial_positions.shape).clone()
        return x0, {"from": "structure", **_distances(cv(x0).cpu(), windows, c)}
    kind = system.reference_kind if system.reference_kind in ("md", "pt") else "pt"
    stored = system.stored_reference("evaluation", kind=kind)
    if stored.data is None:
        raise FileNotFoundError(
            f"umbrella walkers cannot start from reference frames: {stored.note} "
            f"(make it first: boltzgen reference {system.name} --method {kind})"
        )
    frames = stored.data.x
    s = cv(frames.to(system.initial_positions.dtype)).cpu()
    index = nearest_frames(s, windows, c, torch.Generator().manual_seed(settings.seed))
    note = {"from": "reference", "kind": kind, "frames": int(frames.shape[0])}
    return frames[index].to(system.initial_positions.dtype), {
        **note,
        **_distances(s[index], windows, c),
    }


def _distances(s: Tensor, windows: Windows, n_chains: int) -> dict[str, float]:
    """The mean and largest distance of the walkers' starts from their windows' centres."""
    d = start_distances(s, windows, n_chains)
    return {"mean_distance": float(d.mean()), "max_distance": float(d.max())}


@dataclass(frozen=True)
class _Moves:
    """What one sampling step needs: the biased potential for HMC, and s, the windows and
    the exchange record for the swaps between windows."""

    potential: Potential
    cv: CollectiveVariable
    windows: Windows
    settings: UmbrellaSettings
    record: ExchangeRecord

    def exchange(self, state: hmc.HMCState, i: int, generator: torch.Generator) -> hmc.HMCState:
        """Swaps after HMC step ``i`` (0-based) when it is an exchange step."""
        every = self.settings.exchange_every
        if every <= 0 or (i + 1) % every:
            return state
        parity = ((i + 1) // every) % 2
        c = self.settings.n_chains
        return exchange(state, self.cv, self.windows, c, parity, generator, self.record)


def jitter(step_size: Tensor, generator: torch.Generator) -> Tensor:
    """ε·u per row, u ~ U(0.5, 1.5): a trajectory length drawn afresh each step, so a
    window whose period matches the trajectory cannot stall (Neal, arXiv 1206.1901, §4.2);
    drawn independently of the state, it keeps detailed balance."""
    u = torch.rand(step_size.shape, generator=generator, device=step_size.device)
    return step_size * (0.5 + u.to(step_size.dtype))


def _warmup(
    x: Tensor,
    potential_at: Callable[[float], Potential],
    settings: UmbrellaSettings,
    generator: torch.Generator,
    progress: bool,
) -> tuple[hmc.HMCState, Tensor]:
    """``n_discard`` HMC steps from ``x: [K·C, *event]``, each window's ε tuned by dual
    averaging (Hoffman & Gelman, arXiv 1111.4246, Alg. 5) on its chains' mean acceptance.

    The spring grows linearly from 0 to its value over the first half (``potential_at``:
    the biased potential with the spring times a factor), so walkers are led into their
    windows instead of being thrown there. Returns the chains and the averaged ε ``[K]``.
    """
    k, c = settings.n_windows, settings.n_chains
    adapt = DualAveraging(settings.target_acceptance)
    start = torch.full((k,), settings.step_size, dtype=torch.float64, device=x.device)
    dual = adapt.init(start)
    ramp = max(1, settings.n_discard // 2)
    potential = potential_at(1.0 if settings.n_discard == 0 else 1.0 / ramp)
    state = hmc.init(x, potential)
    for t in tqdm(range(settings.n_discard), desc="umbrella warm-up", disable=not progress):
        if 0 < t < ramp:
            potential = potential_at((t + 1) / ramp)
            state = hmc.init(state.x, potential)
        eps = dual.log_step.exp().repeat_interleave(c).to(state.x.dtype)
        state, info = hmc.step(
            generator, state, potential, jitter(eps, generator), settings.n_leapfrog
        )
        dual = adapt.update(dual, info.acceptance_prob.reshape(k, c).mean(dim=1).double())
    step = dual.log_step_avg.exp() if settings.n_discard > 0 else start
    return state, step.cpu()


def _sample(
    state: hmc.HMCState,
    moves: _Moves,
    step: Tensor,
    clock: tuple[torch.Generator, float],
    progress: bool,
) -> tuple[Tensor, Tensor, hmc.HMCState]:
    """Up to ``n_iterations`` HMC steps, each followed by the window exchanges due; s of
    every walker every ``thin`` steps ``[T, K·C]``.

    ``clock``: the generator and the ``time.monotonic`` deadline after which sampling stops.
    """
    generator, deadline = clock
    settings, cv = moves.settings, moves.cv
    eps = step.to(state.x.device).repeat_interleave(settings.n_chains).to(state.x.dtype)
    cv_values, accepted = [], torch.zeros(state.x.shape[0], device=state.x.device)
    bar = tqdm(total=settings.n_iterations, desc="umbrella", disable=not progress, mininterval=30)
    for i in range(settings.n_iterations):
        state, info = hmc.step(
            generator, state, moves.potential, jitter(eps, generator), settings.n_leapfrog
        )
        accepted += info.accepted.to(accepted.dtype)
        state = moves.exchange(state, i, generator)
        bar.update()
        if (i + 1) % settings.thin == 0:
            cv_values.append(cv(state.x).detach().cpu())
            if time.monotonic() > deadline:
                break
    bar.close()
    return torch.stack(cv_values), accepted.cpu(), state


def pair_bounds(system: System, cv: CollectiveVariable) -> dict[str, Bounds]:
    """``{"b_vs_a": ((low_a, high_a), (low_b, high_b))}`` for every named pair whose two
    states are intervals of ``cv`` (the others cannot be estimated from s alone)."""
    out = {}
    for a, b in system.free_energy_pairs:
        states = (system.states[a], system.states[b])
        try:
            same = all(collective_variable(st).describe() == cv.describe() for st in states)
        except ValueError:
            same = False
        if same:
            out[f"{b}_vs_{a}"] = tuple((st.low, st.high) for st in states)
    return out


def generate_umbrella_reference(
    system: System, settings: UmbrellaSettings, root: Path | None = None, progress: bool = False
) -> Path:
    """Umbrella sampling along the s of the card's first free-energy pair; ΔF by MBAR.

    Writes ``manifest.json`` (free energies, their error analysis, the profile F(s),
    cost) and ``windows.npz`` (s ``[T, K, C]`` and the centres) to ``DATA/<system>/umbrella``.
    """
    if not system.free_energy_pairs:
        raise ValueError(f"{system.name} names no free-energy pair to sample along")
    cv = collective_variable(system.states[system.free_energy_pairs[0][0]])
    windows = make_windows(settings, cv.period)
    run = run_umbrella(system, cv, windows, settings, progress)
    out = reference_dir(system.name, "umbrella", root)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "windows.npz", s=run.s.numpy(), centres=windows.centres.numpy())
    analysis = analyse(system, cv, windows, run.s, settings.max_samples)
    manifest = {**_manifest(system, settings, cv, windows, run), **analysis}
    checksum = {"windows.npz": sha256(out / "windows.npz")}
    write_json(out / "manifest.json", {**manifest, "sha256": checksum})
    return out


def reanalyse_umbrella(
    system: System, root: Path | None = None, max_samples: int | None = None
) -> Path:
    """Analyse a stored run again (``windows.npz``), e.g. with another ``max_samples``;
    the manifest's sampling entries are kept, its analysis and checksum rewritten."""
    out = reference_dir(system.name, "umbrella", root)
    manifest = load_manifest(system.name, "umbrella", root)
    if manifest is None:
        raise FileNotFoundError(f"{out} holds no umbrella run")
    cv = collective_variable(system.states[system.free_energy_pairs[0][0]])
    with np.load(out / "windows.npz") as data:
        s, centres = torch.from_numpy(data["s"]), torch.from_numpy(data["centres"])
    windows = Windows(centres, float(manifest["spring"]), cv.period)
    limit = max_samples if max_samples is not None else manifest["settings"]["max_samples"]
    write_json(out / "manifest.json", {**manifest, **analyse(system, cv, windows, s, limit)})
    return out


def analyse(
    system: System, cv: CollectiveVariable, windows: Windows, s: Tensor, max_samples: int
) -> dict[str, Any]:
    """The manifest's ``free_energies`` (value, reported stderr), their checks (MBAR and
    jackknife errors, halves, strides) and the profile F(s), from one MBAR solution."""
    strides = window_strides(s, windows, max_samples)
    samples = subsample(s, strides)
    mbar = solve_mbar(samples, windows)
    estimates = {
        name: umbrella_free_energy(samples, windows, bounds, strides, mbar)
        for name, bounds in pair_bounds(system, cv).items()
    }
    return {
        "free_energies": {
            n: {"value": e.value, "stderr": e.stderr, "converged": e.converged}
            for n, e in estimates.items()
        },
        "free_energies_from": "MBAR over every window (u cancels); stderr: the larger of "
        "MBAR's (window k subsampled every strides[k] steps) and the chain jackknife's; "
        f"converged unless the two halves differ by more than {DRIFT_Z} standard errors",
        "free_energy_checks": {
            n: {**asdict(e), "drift_z": e.drift_z} for n, e in estimates.items()
        },
        "profile": _profile(mbar, samples.s, windows),
    }


def _profile(mbar: Any, s: Tensor, windows: Windows) -> dict[str, list[float | None]]:
    """F(s) on ``PROFILE_BINS`` bins over the circle (or the sampled range of s)."""
    low, high = float(s.min()), float(s.max())
    if windows.period is not None:
        low, high = -math.pi, math.pi
    edges = torch.linspace(low, high, PROFILE_BINS + 1, dtype=torch.float64)
    f = free_energy_profile(mbar, s, edges)
    return {
        "edges": edges.tolist(),
        "free_energy": [v if math.isfinite(v) else None for v in f.tolist()],
    }


def _manifest(
    system: System,
    settings: UmbrellaSettings,
    cv: CollectiveVariable,
    windows: Windows,
    run: UmbrellaRun,
) -> dict[str, Any]:
    return {
        "system": system.name,
        "method": "umbrella",
        "backend": "torch",
        "energy": system.card.get("energy"),
        "temperature": system.temperature,
        "collective_variable": cv.describe(),
        "centres": windows.centres.tolist(),
        "spring": windows.spring,
        "settings": asdict(settings),
        "device": str(resolve_device(settings.device)),
        "d_frames": run.d_frames,
        "step_size": run.step_size.tolist(),
        "acceptance": run.acceptance.tolist(),
        "exchange_acceptance": run.exchanges.acceptance(),
        "exchange_visited_fraction": run.exchanges.visited_fraction(),
        "start": run.start,
        "iterations_run": run.n_steps,
        "stopped_by_wall_clock": run.n_steps < settings.n_iterations,
        "cost": run.cost,
        "versions": versions(),
    }
