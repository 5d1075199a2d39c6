"""Score a Boltzmann generator's samples of alanine dipeptide against a reference.

Works for either dipeptide card (the system is read from the run's ``result.json``).
Prints the Kish ESS, the share of the weight and the Pareto k̂ of the weights inside each
φ state (beside the share of the card's held-out reference frames there), ΔF(φ ∈ (0, 2) vs
φ < 0) with its standard error (unless the run withheld it) and the run's convergence
verdict next to the reference's
MBAR value (a PT or umbrella ``manifest.json``), E-W2 and T-W2 (from the
run's ``result.json``), the worst bond stretch (length over the minimised structure's),
the ψ profile inside φ ∈ (0, 2) (draws, weight and reference frames per ψ range),
the share of D samples, and the target evaluations spent, training included. With
``--plot``, Ramachandran histograms of the flow's samples (raw and reweighted) beside
the held-out evaluation frames of the card's reference set. With ``--held-out-check``,
the per-state BAR check between the generator's draws and those frames
(:mod:`boltzgen.metrics.held_out`): ln Z of each φ state from the draws alone and by BAR,
the gap (mass the draws miss), and ΔF from the BAR values. A task whose samples are not
independent draws of the flow (SMC, flow MCMC) is checked on ``--draws`` fresh draws of its
trained flow::

    python benchmarks/aldp_generator_report.py runs/aldp_fab/alanine_dipeptide_implicit/fab/seed0 \\
        --reference data/alanine_dipeptide_implicit/umbrella/manifest.json --plot rama.png \\
        --held-out-check
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np
import torch

import boltzgen as bg
from boltzgen.flows.internal import ChiralCentres
from boltzgen.metrics.pareto import pareto_k
from boltzgen.observables.peptides import phi_psi
from boltzgen.reference import load_reference
from boltzgen.runner.evaluate import held_out_metrics, load_reference_for
from boltzgen.runner.methods.boltzmann_generator import model_log_density
from boltzgen.runner.methods.flows import minimise
from boltzgen.runner.trained import load_trained_generator


def bond_stretch(system: bg.System, x: torch.Tensor) -> float:
    """max over samples and bonds of |r| / |r_min| (r_min: the minimised structure)."""
    bonds = torch.tensor([[a.index, b.index] for a, b in system.topology.bonds])
    x0 = minimise(system.energy, system.initial_positions)[None]
    r0 = (x0[:, bonds[:, 0]] - x0[:, bonds[:, 1]]).norm(dim=-1)
    finite = torch.isfinite(x.flatten(1)).all(dim=1)
    r = (x[finite][:, bonds[:, 0]] - x[finite][:, bonds[:, 1]]).norm(dim=-1)
    return float((r / r0).max())


def ramachandran_plot(system: bg.System, samples: bg.WeightedSamples, path: Path) -> None:
    """(φ, ψ) panels of −ln p in kT above the fullest bin (0–12; empty bins blank):
    the flow's samples raw and reweighted, and the held-out reference frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = torch.isfinite(samples.log_weights)
    phi, psi = (t[:, 0] for t in phi_psi(samples.x[finite], system.topology))
    weights = torch.softmax(samples.log_weights[finite], dim=0)
    reference = load_reference(system.name, system.reference_kind, part="evaluation")
    panels = [("flow, raw", phi, psi, None), ("flow, reweighted", phi, psi, weights)]
    if reference is not None:
        panels.append(
            ("reference (evaluation part)", reference.phi[:, 0], reference.psi[:, 0], None)
        )
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), sharey=True)
    edges = np.linspace(-math.pi, math.pi, 61)
    for ax, (title, a, b, w) in zip(axes, panels, strict=True):
        weights_np = None if w is None else w.numpy()
        counts, _, _ = np.histogram2d(a.numpy(), b.numpy(), bins=[edges, edges], weights=weights_np)
        free_energy = -np.log(np.where(counts > 0, counts, np.nan))
        free_energy -= np.nanmin(free_energy)
        free_energy[free_energy > 12] = np.nan
        extent = (-math.pi, math.pi, -math.pi, math.pi)
        ax.imshow(free_energy.T, origin="lower", extent=extent, cmap="viridis", vmin=0, vmax=12)
        ax.set_title(title)
        ax.set_xlabel("φ (rad)")
    axes[0].set_ylabel("ψ (rad)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def held_out_report(task_dir: Path, result: dict, samples: bg.WeightedSamples, draws: int) -> None:
    """Print the per-state BAR check of the task's generator against all the held-out frames."""
    system, trained = load_trained_generator(task_dir)
    if result["method_kind"] != "boltzmann_generator":
        samples = trained.model.sample(draws, torch.Generator().manual_seed(result["seed"] + 1))
        print(f"held-out check on {draws} fresh draws of the task's trained flow")
    reference = load_reference_for(system, ALL_FRAMES)
    if reference is None or reference.x is None:
        raise SystemExit("--held-out-check needs the card's reference set (BOLTZGEN_DATA)")
    check = held_out_metrics(system, samples, reference, model_log_density(trained.model))
    if "frames_outside_support" in check:
        print(f"{check['frames_outside_support']:.2%} of the frames lie outside the flow")
        return
    for name, s in check["states"].items():
        bar = "—" if s["log_z_bar"] is None else f"{s['log_z_bar']:.3f} ± {s['stderr']:.3f}"
        gap = "—" if s["gap"] is None else f"{s['gap']:+.3f}"
        print(
            f"{name}: ln Z from the draws {s['log_z_draws']:.3f}, BAR with {s['n_frames']} "
            f"frames {bar}, gap {gap}, frames beyond every draw {s['frames_beyond_draws']}, "
            f"misses mass: {s['misses_mass']}"
        )
    for name, fe in check["free_energies"].items():
        if fe is not None:
            print(
                f"ΔF({name}) by BAR with the held-out frames = "
                f"{fe['value']:.3f} ± {fe['stderr']:.3f} kT"
            )


ALL_FRAMES = 10**9

# ψ ranges inside φ ∈ (0, 2): the C7ax-like corner (about 6 % of the basin's weight under the
# PT reference), the bridge to it, αL, and the ψ ≈ 2 shoulder where p holds almost nothing.
PSI_EDGES = (-math.pi, -1.05, 0.0, 1.6, math.pi)


def psi_breakdown(
    system: bg.System, samples: bg.WeightedSamples, frames: bg.WeightedSamples | None
) -> None:
    """Inside φ ∈ (0, 2), per ψ range: the share of the flow's draws, of their weight and of
    the held-out reference frames, and the Pareto k̂ of the weights there. A range where the
    frames' share exceeds the draws' by far is mass the flow reaches only through rare,
    heavy weights."""
    inside = system.states["phi_pos"](samples.x)
    _, psi = (t[:, 0] for t in phi_psi(samples.x[inside], system.topology))
    log_w = samples.log_weights[inside]
    w = torch.softmax(log_w.to(torch.float64), dim=0)
    frame_psi = None
    if frames is not None:
        frame_psi = phi_psi(frames.x[system.states["phi_pos"](frames.x)], system.topology)[1]
        frame_psi = frame_psi[:, 0]
    print("inside φ ∈ (0, 2), by ψ: draws / their weight / held-out frames, Pareto k̂")
    for lo, hi in itertools.pairwise(PSI_EDGES):
        b = (psi >= lo) & (psi < hi)
        ref = (
            "—"
            if frame_psi is None
            else f"{float(((frame_psi >= lo) & (frame_psi < hi)).double().mean()):.2%}"
        )
        print(
            f"  ψ ∈ [{lo:+.2f}, {hi:+.2f}): {float(b.double().mean()):.2%} / "
            f"{float(w[b].sum()):.2%} / {ref}, k̂ {pareto_k(log_w[b])}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task_dir", type=Path)
    parser.add_argument(
        "--reference", type=Path, default=None, help="a PT or umbrella manifest.json"
    )
    parser.add_argument("--plot", type=Path, default=None, help="write Ramachandran plots here")
    parser.add_argument(
        "--held-out-check",
        action="store_true",
        help="BAR per φ state between the generator and the held-out frames",
    )
    parser.add_argument(
        "--draws", type=int, default=100_000, help="fresh flow draws for a non-IS task's check"
    )
    args = parser.parse_args()
    result = json.loads((args.task_dir / "result.json").read_text())
    system = bg.load_system(result["system"])
    samples = bg.WeightedSamples.load(args.task_dir / "samples.npz")
    fe = bg.metrics.free_energy_difference(
        samples, system.states["phi_neg"], system.states["phi_pos"]
    )
    d_share = float((~ChiralCentres.from_topology(system.topology).is_l(samples.x)).double().mean())
    print(
        f"samples {len(samples.x)}  ESS fraction {bg.metrics.ess_fraction(samples.log_weights):.4f}"
    )
    weights = torch.softmax(samples.log_weights.to(torch.float64), dim=0)
    frames = system.stored_reference("evaluation").data
    for name in ("phi_neg", "phi_pos"):
        inside = system.states[name](samples.x)
        k = pareto_k(samples.log_weights[inside])
        held_out = ""
        if frames is not None:
            share = float(system.states[name](frames.x).double().mean())
            held_out = f" (held-out reference frames: {share:.2%})"
        print(
            f"{name}: {int(inside.sum())} draws carrying {float(weights[inside].sum()):.2%} of "
            f"the weight{held_out}, Pareto k̂ of their weights {k}"
        )
    psi_breakdown(system, samples, frames)
    entry = result["free_energies"]["phi_pos_vs_phi_neg"]
    if entry["stderr"] is None:
        print(
            f"ΔF(phi_pos vs phi_neg) = {fe.value:.3f} kT, error bar withheld by the run "
            f"(converged {entry['converged']}: heavy-tailed weights, so this set's own "
            f"bootstrap error, {fe.stderr:.3f} kT, understates the spread)"
        )
    else:
        print(
            f"ΔF(phi_pos vs phi_neg) = {fe.value:.3f} ± {fe.stderr:.3f} kT "
            f"(result.json: converged {entry['converged']}, stderr {entry['stderr']})"
        )
    if args.reference is not None:
        ref = json.loads(args.reference.read_text())["free_energies"]["phi_pos_vs_phi_neg"]
        method = json.loads(args.reference.read_text()).get("method", "?")
        print(f"reference ({method}, MBAR) = {ref['value']:.3f} ± {ref['stderr']:.3f} kT")
    metrics = result.get("metrics", {})
    print(f"E-W2 {metrics.get('e_w2')}  T-W2 {metrics.get('t_w2')}")
    print(f"worst bond stretch {bond_stretch(system, samples.x):.3f}×  D share {d_share:.4f}")
    c = result["cost"]
    train = c["train_energy_evals"] + c.get("train_force_evals", 0)
    total = c["energy_evals"] + c["force_evals"] + train
    wall = c["wall_s"] + c["train_wall_s"]
    print(f"target evaluations {total} (training {train}), wall {wall:.0f} s")
    if args.plot is not None:
        ramachandran_plot(system, samples, args.plot)
        print(f"Ramachandran plots: {args.plot}")
    if args.held_out_check:
        held_out_report(args.task_dir, result, samples, args.draws)


if __name__ == "__main__":
    main()
