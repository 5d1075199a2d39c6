"""Report figures: samples over the energy landscape, and log-weight histograms."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from boltzgen.observables.peptides import phi_psi
from boltzgen.records import WeightedSamples
from boltzgen.runner.peptide_plots import energy_histogram_figure, ramachandran_figure
from boltzgen.runner.system_specs import load_task_system, result_folder_name, spec_of_result
from boltzgen.systems import System

MAX_POINTS = 3000
MARKERS = "osd^v<>p*"


def _first_seed(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    by_system: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in sorted(results, key=lambda r: r["seed"]):
        by_system[r["system"]][r["method"]].append(r)
    return by_system


def _display_points(samples: WeightedSamples, generator: torch.Generator) -> np.ndarray:
    """First two coordinates of up to MAX_POINTS draws, resampled by weight if weighted."""
    flat = samples.x.reshape(len(samples), -1)[:, :2]
    lw = samples.log_weights.to(torch.float64)
    if bool((lw != 0).any()) and bool(torch.isfinite(lw).any()):
        p = torch.softmax(torch.nan_to_num(lw, nan=-torch.inf), dim=0)
        index = torch.multinomial(p, MAX_POINTS, replacement=True, generator=generator)
    else:
        index = torch.randperm(len(samples), generator=generator)[:MAX_POINTS]
    return flat[index].numpy()


def _energy_slice(system: System, lim: tuple[float, float, float, float]) -> tuple[np.ndarray, ...]:
    """u on a grid of the first two coordinates, others held at the initial positions."""
    gx, gy = np.meshgrid(np.linspace(lim[0], lim[1], 160), np.linspace(lim[2], lim[3], 160))
    base = system.initial_positions.reshape(-1).clone()
    x = base.repeat(gx.size, 1)
    x[:, 0] = torch.from_numpy(gx.ravel())
    x[:, 1] = torch.from_numpy(gy.ravel())
    u = system.energy._energy(x.reshape((-1, *system.energy.event_shape))).numpy()
    return gx, gy, (u - u.min()).reshape(gx.shape)


def _system_of(methods: dict[str, list[dict[str, Any]]]) -> System:
    """The system (card and overrides) the results of one system label were computed on."""
    return load_task_system(spec_of_result(next(iter(methods.values()))[0]))


def _sample_figure(
    run_dir: Path, name: str, methods: dict[str, list[dict[str, Any]]], system: System
) -> Path:
    generator = torch.Generator().manual_seed(0)
    points = {
        m: _display_points(WeightedSamples.load(_dir(run_dir, rs[0])), generator)
        for m, rs in methods.items()
    }
    allp = np.concatenate(list(points.values()))
    lo, hi = np.percentile(allp, [0.5, 99.5], axis=0)
    pad = 0.15 * (hi - lo) + 0.5
    lim = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    gx, gy, u = _energy_slice(system, lim)
    fig, axes = plt.subplots(1, len(points), figsize=(4.2 * len(points), 3.8), squeeze=False)
    for ax, (method, xy) in zip(axes[0], points.items(), strict=True):
        ax.contour(gx, gy, u, levels=np.linspace(0, 25, 14), cmap="Greys", linewidths=0.7)
        ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.35, color="tab:blue")
        ax.set(
            title=f"{method} (seed {methods[method][0]['seed']})",
            xlabel="x[0]",
            ylabel="x[1]",
            xlim=lim[:2],
            ylim=lim[2:],
        )
    fig.suptitle(f"{name}: samples (resampled by weight) over u − min u")
    fig.tight_layout()
    path = run_dir / f"{name}_samples.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _weights_figure(
    run_dir: Path, name: str, methods: dict[str, list[dict[str, Any]]]
) -> Path | None:
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    drawn = False
    for method, rs in methods.items():
        lw = WeightedSamples.load(_dir(run_dir, rs[0])).log_weights.numpy()
        lw = lw[np.isfinite(lw)]
        if lw.size and np.ptp(lw) > 0:
            shifted = lw - (np.logaddexp.reduce(lw) - np.log(lw.size))
            ax.hist(shifted, bins=60, alpha=0.55, label=method, density=True, log=True)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(
        xlabel="log w − log mean w",
        ylabel="density (log scale)",
        title=f"{name}: log importance weights",
    )
    ax.legend()
    fig.tight_layout()
    path = run_dir / f"{name}_log_weights.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _dir(run_dir: Path, result: dict[str, Any]) -> Path:
    return run_dir / result_folder_name(result) / result["method"] / f"seed{result['seed']}"


def _peptide_figures(
    run_dir: Path, name: str, methods: dict[str, list[dict[str, Any]]], system: System
) -> list[Path]:
    torsions, energies = {}, {}
    for method, rs in methods.items():
        samples = WeightedSamples.load(_dir(run_dir, rs[0]))
        phi, psi = phi_psi(samples.x, system.topology)
        lw = None if samples.is_chain else samples.log_weights
        torsions[method] = (phi[:, 0], psi[:, 0], lw)
        energies[method] = (samples.energies, lw)
    reference = system.stored_reference("evaluation").data
    ref_torsions = None if reference is None else (reference.phi[:, 0], reference.psi[:, 0], None)
    ref_u = None if reference is None else reference.energies
    out = []
    for figure, suffix in (
        (
            ramachandran_figure(
                torsions, ref_torsions, f"{name}: Ramachandran of residue 1 (reweighted)"
            ),
            "rama",
        ),
        (energy_histogram_figure(energies, ref_u, f"{name}: reduced energies"), "energies"),
    ):
        path = run_dir / f"{name}_{suffix}.png"
        figure.savefig(path, dpi=110)
        out.append(path)
    system.energy.close()
    return out


def _total_evals(result: dict[str, Any]) -> float:
    c = result["cost"]
    return float(
        sum(
            c.get(k, 0)
            for k in ("energy_evals", "force_evals", "train_energy_evals", "train_force_evals")
        )
    )


def _efficiency_figure(run_dir: Path, results: Sequence[dict[str, Any]]) -> Path:
    """ESS per 1000 evaluations by method and system (mean and spread over seeds)."""
    systems = sorted({r["system"] for r in results})
    methods = sorted({r["method"] for r in results})
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(systems) * max(1, len(methods)) / 2, 3.6))
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        for i, system in enumerate(systems):
            values = [
                r["metrics"].get("ess_per_1k_evals")
                for r in results
                if r["system"] == system and r["method"] == method
            ]
            values = [v for v in values if v is not None and np.isfinite(v) and v > 0]
            if values:
                ax.bar(
                    i + j * width,
                    np.mean(values),
                    width,
                    color=f"C{j}",
                    label=method if i == 0 else None,
                )
                ax.plot([i + j * width] * len(values), values, "k.", ms=4)
    ax.set_xticks(np.arange(len(systems)) + 0.4 - width / 2, systems)
    ax.set(yscale="log", ylabel="ESS per 1000 evaluations", title="Efficiency (training included)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = run_dir / "ess_per_evaluation.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _error_vs_cost_figure(run_dir: Path, results: Sequence[dict[str, Any]]) -> Path | None:
    """|ΔF − reference| against total evaluations, one point per task and free energy."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    drawn = False
    methods = sorted({r["method"] for r in results})
    systems = sorted({r["system"] for r in results})
    for j, method in enumerate(methods):
        labelled = False
        for r in results:
            if r["method"] != method:
                continue
            for fe in r.get("free_energies", {}).values():
                if fe.get("value") is None or fe.get("reference") is None:
                    continue
                error = abs(fe["value"] - fe["reference"])
                ax.errorbar(
                    _total_evals(r),
                    max(error, 1e-4),
                    yerr=fe.get("stderr"),
                    fmt=MARKERS[systems.index(r["system"]) % len(MARKERS)],
                    color=f"C{j}",
                    ms=4,
                    alpha=0.8,
                    label=None if labelled else method,
                )
                drawn = labelled = True
    if not drawn:
        plt.close(fig)
        return None
    markers = ", ".join(f"{MARKERS[i % len(MARKERS)]} {n}" for i, n in enumerate(systems))
    ax.legend(fontsize=8, title=f"markers: {markers}", title_fontsize=7)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="target evaluations (training included)",
        ylabel="|ΔF − reference| (kT)",
        title="Free-energy error against cost",
    )
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    fig.tight_layout()
    path = run_dir / "free_energy_error_vs_cost.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_plots(run_dir: Path, results: Sequence[dict[str, Any]]) -> list[Path]:
    """Write the figures of every system in the run; return their paths."""
    figures: list[Path] = [_efficiency_figure(run_dir, results)]
    error_figure = _error_vs_cost_figure(run_dir, results)
    if error_figure is not None:
        figures.append(error_figure)
    for name, methods in _first_seed(results).items():
        system = _system_of(methods)
        try:
            if system.topology is not None:
                figures += _peptide_figures(run_dir, name, methods, system)
            else:
                figures.append(_sample_figure(run_dir, name, methods, system))
        finally:
            system.energy.close()
        weights = _weights_figure(run_dir, name, methods)
        if weights is not None:
            figures.append(weights)
    return figures
