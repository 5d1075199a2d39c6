"""Score one sampler's output on one system: the numbers that go into ``result.json``.

Every estimate entry (``free_energies``, ``log_z``, ``observables``) carries ``converged``
and ``rhat``. Chains (``samples.n_chains`` set) get the rank-normalised split-R̂ of the
series the estimate uses (:mod:`boltzgen.metrics.convergence`); an estimate with R̂ > 1.01,
a state some chain never visits, or a non-finite value or error is ``converged: false``
and its ``stderr`` is null. Weighted draws have ``rhat: null``; their estimates need every
state it depends on (both states of a ΔF, every named state for log Z) sampled with a Kish
ESS ≥ 10 inside it, and by each run (SMC) or with a weight tail of Pareto k̂ below its
threshold inside it (independent draws; log Z also needs that tail over all draws, and
``metrics.pareto_k`` reports k̂ of all the weights). Samplers that return
correlated runs (SMC, ``n_runs`` set) get between-run errors (:mod:`boltzgen.metrics.runs`);
SMC's log Z always comes from its unclipped per-run estimates. Samplers whose error bars
failed the coverage benchmark (SNF, flow perturbation: ``UNCALIBRATED_SAMPLERS``) report
their values without a stderr and with ``errors_calibrated: false``.

Independent draws of a density the method can evaluate (a Boltzmann generator) against
reference frames also get ``metrics.held_out`` (:mod:`boltzgen.metrics.held_out`): per
state, ln Z from the draws alone and by BAR between draws and frames, their gap (mass the
draws miss, which no diagnostic of the draws alone can see), and ΔF from the BAR values.
It is a check against the reference, not an estimate of the method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from boltzgen import metrics
from boltzgen.metrics.convergence import Convergence, chain_convergence, state_coverage
from boltzgen.metrics.held_out import held_out_check
from boltzgen.metrics.pareto import pareto_k, tail_is_reliable
from boltzgen.metrics.torsions import backbone_torsions, mean_ramachandran_kl
from boltzgen.observables.peptides import phi_psi
from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.base import LogDensity
from boltzgen.systems import State, System

REFERENCE_SEED = 2_718_281
UNCALIBRATED_SAMPLERS = frozenset({"snf", "flow_perturbation"})
"""Samplers whose error bars failed the coverage benchmark (docs/calibration.md): their
estimates are reported without a stderr, and ``errors_calibrated: false``."""
MAX_TORSION_POINTS = 10_000


@dataclass(frozen=True)
class Reference:
    """What a system's samples are compared with: energies and, for peptides, the
    backbone vectors ``phi_psi: [n, 2K]`` = (φ_1, ψ_1, …, φ_K, ψ_K) of every frame."""

    energies: Tensor
    phi_psi: Tensor | None = None
    x: Tensor | None = None


def load_reference_for(system: System, n: int) -> Reference | None:
    """Up to ``n`` reference points: exact draws (fixed seed) or the *evaluation* part of
    the MD/PT reference set, never its training part (see :mod:`boltzgen.reference`),
    and only a set made for this system's energy and temperature
    (:meth:`~boltzgen.systems.System.stored_reference`); ``None`` otherwise. The free-energy
    and observable entries then say why in their ``reference_note``.

    These evaluations are bookkeeping, not a method's cost: they are made outside
    any sampler's cost meter.
    """
    generator = torch.Generator().manual_seed(REFERENCE_SEED)
    x = system.sample_reference(n, generator)
    if x is not None:
        return Reference(system.energy.energy(x).detach(), x=x)
    data = system.stored_reference("evaluation").data
    if data is None:
        return None
    keep = torch.linspace(0, len(data.energies) - 1, min(n, len(data.energies))).long()
    return Reference(
        data.energies[keep], backbone_torsions(data.phi[keep], data.psi[keep]), data.x[keep]
    )


def _estimate(
    value: float,
    stderr: float,
    reference: Any = None,
    note: str = "",
    convergence: Convergence | None = None,
    calibrated: bool = True,
) -> dict:
    """A result entry with its convergence verdict.

    A non-finite estimate (a state never sampled) is stored as null; an unconverged
    one keeps its value but no stderr, and so does one from a sampler whose error bars
    are not calibrated.
    """
    finite = math.isfinite(value) and math.isfinite(stderr)
    converged = finite and (convergence is None or convergence.converged)
    out: dict[str, Any] = {
        "value": float(value),
        "stderr": float(stderr) if converged and calibrated else None,
        "reference": reference,
        "converged": converged,
        "rhat": None if convergence is None else convergence.rhat,
    }
    if not math.isfinite(value):
        out["note"] = "a state was never sampled"
    elif convergence is not None and not convergence.all_visited:
        out["note"] = (
            "a state was not visited by every chain or run, or its weighted draws are too few "
            "or too heavy-tailed (Pareto k̂) for an error bar"
        )
    if not calibrated:
        out["errors_calibrated"] = False
    if note:
        out["reference_note"] = note
    return out


def _free_energy(samples: WeightedSamples, a: State, b: State, gen: torch.Generator):
    if samples.n_runs is not None:
        return metrics.runs_free_energy_difference(samples, a, b)
    if samples.n_chains == 1:
        return metrics.block_free_energy_difference(samples, a, b)
    return metrics.free_energy_difference(samples, a, b, generator=gen)


def _coverage(samples: WeightedSamples, states: list[State]) -> Convergence | None:
    """Convergence of an estimate that depends on ``states``.

    Chains: R̂ and visits of the state indicators. Weighted draws and runs: whether
    every state is sampled enough (:func:`boltzgen.metrics.convergence.state_coverage`).
    ``None`` when there is nothing to check (no states).
    """
    if not states:
        return None
    masks = [state(samples.x) for state in states]
    if samples.is_chain:
        return chain_convergence((), [samples.chains(m.to(torch.float64)) for m in masks])
    return Convergence(None, state_coverage(samples.log_weights, masks, samples.n_runs))


def _log_z_coverage(
    samples: WeightedSamples, states: list[State], k: float | None
) -> Convergence | None:
    """Convergence of log Z: every named state covered and, for independent draws, a tail
    of all the weights light enough for the delta-method error (Pareto k̂, fitted as ``k``)."""
    coverage = _coverage(samples, states)
    if samples.n_runs is not None or tail_is_reliable(samples.log_weights, k):
        return coverage
    return Convergence(None, False)


def _only_a_log_z_ratio(samples: WeightedSamples) -> bool:
    """A population annealed from a temperature whose ln Z is unknown: its resampled, equal
    weights say nothing of ln Z, and only a ratio (``info["log_z_ratio"]``) was measured."""
    return "log_z_ratio" in samples.info and "run_log_z" not in samples.info


def _log_z(samples: WeightedSamples) -> metrics.Estimate:
    """log Z: between runs for correlated runs (unclipped), else from the weights."""
    if samples.n_runs is not None:
        return metrics.samples_runs_log_z(samples)
    return metrics.log_partition_function(samples)


def _torsion_metrics(system: System, samples: WeightedSamples, reference: Reference, gen) -> dict:
    """T-W2 over whole backbone vectors and the per-residue mean Ramachandran KL."""

    finite = torch.isfinite(samples.energies)
    points = backbone_torsions(*phi_psi(samples.x[finite], system.topology))
    log_w = samples.log_weights[finite]
    return {
        "t_w2": metrics.torus_w2(reference.phi_psi, points, log_w, MAX_TORSION_POINTS, gen),
        "ramachandran_kl": mean_ramachandran_kl(reference.phi_psi, points, log_w),
    }


def _observables(system: System, samples: WeightedSamples, calibrated: bool) -> dict:
    """The system's named observables with stderr, τ_int and their reference (exact or from
    a reference set made for this system) with its ``reference_note``. Independent weighted
    draws whose weights are too heavy-tailed (Pareto k̂, as for log Z) get no error bar."""
    references = system.reference_observable_estimates()
    out = {}
    tail = None
    if system.observables and not samples.is_chain and samples.n_runs is None:
        tail = Convergence(None, tail_is_reliable(samples.log_weights))
    for name, observable in system.observables.items():
        values = observable.values(samples.x, samples.energies, system.energy.temperature).detach()
        est = metrics.observable_estimate(samples, values, observable.statistic)
        convergence = chain_convergence([samples.chains(values)]) if samples.is_chain else tail
        ref = references[name]
        entry = _estimate(est.value, est.stderr, ref.value, ref.note, convergence, calibrated)
        out[name] = {**entry, "tau_int": est.tau_int}
    return out


def evaluate(
    system: System,
    samples: WeightedSamples,
    reference: Reference | None,
    generator: torch.Generator,
    log_density: LogDensity | None = None,
) -> dict[str, Any]:
    """ESS, free energies, log Z, E-W2 (and T-W2 for peptides) of ``samples``; with
    ``log_density`` (the density the samples were drawn from), the held-out check."""
    indicators = [state(samples.x).to(torch.float64) for state in system.states.values()]
    ess = metrics.sample_ess(samples, indicators)
    out: dict[str, Any] = {
        "n_samples": len(samples),
        "ess": ess,
        "ess_fraction": ess / len(samples),
        "free_energies": {},
        "observables": {},
        "metrics": {
            "ess_per_1k_evals": 1000.0 * metrics.ess_per_energy_eval(samples, ess),
            "ess_per_s": metrics.ess_per_second(samples, ess),
        },
    }
    references = system.reference_estimates()
    calibrated = samples.info.get("sampler") not in UNCALIBRATED_SAMPLERS
    for a, b in system.free_energy_pairs:
        name = f"{b}_vs_{a}"
        state_a, state_b = system.states[a], system.states[b]
        est = _free_energy(samples, state_a, state_b, generator)
        ref = references[name]
        convergence = _coverage(samples, [state_a, state_b])
        entry = _estimate(est.value, est.stderr, ref.value, ref.note, convergence, calibrated)
        out["free_energies"][name] = entry
    out["observables"] = _observables(system, samples, calibrated)
    if not samples.is_chain and not _only_a_log_z_ratio(samples):
        k = None
        if samples.n_runs is None:
            k = out["metrics"]["pareto_k"] = pareto_k(samples.log_weights)
        est = _log_z(samples)
        coverage = _log_z_coverage(samples, list(system.states.values()), k)
        reference_log_z = system.reference_log_z()
        out["log_z"] = _estimate(est.value, est.stderr, reference_log_z, "", coverage, calibrated)
    if reference is not None:
        finite = torch.isfinite(samples.energies)
        w2 = metrics.energy_w2(
            reference.energies, samples.energies[finite], samples.log_weights[finite]
        )
        out["metrics"]["e_w2"] = w2 if math.isfinite(w2) else None
        if reference.phi_psi is not None and system.topology is not None:
            out["metrics"].update(_torsion_metrics(system, samples, reference, generator))
        if log_density is not None and reference.x is not None and system.free_energy_pairs:
            out["metrics"]["held_out"] = held_out_metrics(system, samples, reference, log_density)
    return out


def held_out_metrics(
    system: System, samples: WeightedSamples, reference: Reference, log_density: LogDensity
) -> dict[str, Any]:
    """The per-state BAR check of independent draws of ``log_density`` against the
    reference frames (``reference.x``, weighed by ``reference.energies``), for the states
    of the system's free energies: what ``metrics.held_out`` holds."""
    frames = reference.x
    if frames is None:
        raise ValueError("the held-out check needs the reference frames (reference.x)")
    frame_log_w = -reference.energies.to(torch.float64).cpu() - log_density(frames)
    outside = ~torch.isfinite(frame_log_w)
    if bool(outside.any()):
        return {"frames_outside_support": float(outside.double().mean())}
    names = sorted({n for pair in system.free_energy_pairs for n in pair})
    check = held_out_check(
        samples.log_weights,
        frame_log_w,
        {n: system.states[n](samples.x).cpu() for n in names},
        {n: system.states[n](frames).cpu() for n in names},
    )
    states = {
        name: {
            "log_z_draws": s.log_z_draws,
            "log_z_bar": s.log_z_bar,
            "stderr": s.stderr,
            "gap": s.gap,
            "misses_mass": s.misses_mass,
            "frames_beyond_draws": s.frames_beyond_draws,
            "n_frames": s.n_frames,
        }
        for name, s in check.states.items()
    }
    free_energies = {}
    for a, b in system.free_energy_pairs:
        fe = check.free_energy(a, b)
        free_energies[f"{b}_vs_{a}"] = (
            None if fe is None else {"value": fe.value, "stderr": fe.stderr}
        )
    return {"states": states, "free_energies": free_energies}
