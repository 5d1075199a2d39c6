"""Ranking of samplers on small glass formers along a temperature ladder (arXiv 2404.09914).

    OMP_NUM_THREADS=1 python benchmarks/glass_comparison.py --budget 6000 \
        --out runs/glass_comparison

Runs the methods of ``experiments/glass.yaml`` (same settings, through the runner's
``fit_budget`` and ``run``) on ``kob_andersen_2d_ternary`` (N = 36) and ``polydisperse_3d``
(N = 70) at each temperature of the ladder, every run with the same budget of energy
evaluations, and prints one row per run: the integrated autocorrelation time τ_int of the
energy per particle e = U/N (in recorded samples), the ESS of e, ESS per evaluation and per
wall second, and ⟨e⟩ with its standard error. Writes ``comparison.csv`` and
``ess_per_evaluation.png`` (ESS per evaluation against 1/T, one line per method).

ESS per method: chains (MD, PT, swap and local MC) n/τ_int of e over all chains;
population annealing G·var(e)/var(group means of e) from its G independent groups (at most
R); the temperature map Kish ESS fraction × n/τ_int of u(f(z)) along the hot chains.
Chains shorter than 50 τ_int are marked ≥ (τ_int a lower bound, ESS an upper one). τ_int
sees only the fluctuations a chain makes: a chain that has not left its start's basin
looks fast, so the last column compares ⟨e⟩ with swap MC's (z = difference over the
combined standard error); a large |z| marks a run that has not equilibrated.
``--from-csv`` rebuilds the table and the plot from ``OUT/comparison.csv``.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import yaml
from torch import Tensor

import boltzgen as bg
from boltzgen.metrics import ess_fraction
from boltzgen.metrics.autocorrelation import integrated_time
from boltzgen.records import WeightedSamples
from boltzgen.runner.methods import (
    MethodContext,
    md,
    parallel_tempering,
    population_annealing,
    swap_mc,
    temperature_map,
)
from boltzgen.runner.methods.md import MDParams
from boltzgen.runner.methods.parallel_tempering import PTParams
from boltzgen.runner.methods.population_annealing import PAParams
from boltzgen.runner.methods.swap_mc import SwapMCParams
from boltzgen.runner.methods.temperature_map import TemperatureMapParams

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "glass.yaml"
MODULES = {
    "md": (md, MDParams),
    "parallel_tempering": (parallel_tempering, PTParams),
    "population_annealing": (population_annealing, PAParams),
    "swap_mc": (swap_mc, SwapMCParams),
    "temperature_map": (temperature_map, TemperatureMapParams),
}


@dataclass(frozen=True)
class Row:
    """One run's figures; ``tau`` in recorded samples (NaN where not a chain)."""

    system: str
    temperature: float
    method: str
    evals: int
    wall_s: float
    tau: float
    ess: float
    mean: float
    stderr: float
    per_chain: int

    @property
    def short(self) -> bool:
        """Chains shorter than 50 τ_int: τ_int is a lower bound and the ESS an upper one."""
        return self.per_chain > 0 and self.per_chain < 50 * self.tau

    @property
    def ess_per_eval(self) -> float:
        return self.ess / max(1, self.evals)


def _chains(e: Tensor, n_chains: int) -> tuple[float, float]:
    """τ_int and ESS of e recorded step-major from ``n_chains`` chains."""
    tau = integrated_time(e.reshape(-1, n_chains))
    return tau, e.numel() / tau


def _per_chain(method: str, samples: WeightedSamples) -> int:
    if method in ("population_annealing", "temperature_map"):
        return 0
    return samples.energies.numel() // (samples.n_chains or 1)


def ess_of(method: str, samples: WeightedSamples, params, n_particles: int, temperature: float):
    """(τ_int, ESS, ⟨e⟩, stderr) of e = U/N for the sample kind of ``method``."""
    e = samples.energies * temperature / n_particles
    w = torch.softmax(samples.log_weights, 0)
    mean, var = float((w * e).sum()), float((w * (e - (w * e).sum()) ** 2).sum())
    if method == "population_annealing":
        groups = e.reshape(samples.n_runs, -1).mean(1)
        ess = min(e.numel(), var * groups.numel() / max(float(groups.var()), 1e-300))
        return math.nan, ess, mean, math.sqrt(var / ess)
    if method == "temperature_map":
        tau, _ = _chains(e, params.n_hot_chains)
        ess = ess_fraction(samples.log_weights) * e.numel() / tau
        return tau, ess, mean, math.sqrt(var / max(ess, 1e-12))
    tau, ess = _chains(e, samples.n_chains or 1)
    return tau, ess, mean, math.sqrt(var / ess)


def run_one(
    system_name: str,
    overrides: dict,
    temperature: float,
    label: str,
    spec: dict,
    budget: int,
    seed: int,
) -> Row:
    """Fit ``spec`` to ``budget``, run it, and measure it."""
    system = bg.load_system(system_name, **overrides, temperature=temperature)
    spec = dict(spec)
    module, params_type = MODULES[spec.pop("method")]
    params = module.fit_budget(params_type(**spec), budget, system)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    samples = module.run(system, params, generator, MethodContext())
    wall = time.perf_counter() - start
    cost = samples.cost
    evals = cost.energy_evals + cost.force_evals + cost.train_energy_evals + cost.train_force_evals
    n = system.energy.n_particles
    kind = module.__name__.split(".")[-1]
    tau, ess, mean, err = ess_of(kind, samples, params, n, temperature)
    return Row(
        system_name, temperature, label, evals, wall, tau, ess, mean, err, _per_chain(kind, samples)
    )


def runs(experiment: dict, systems: list[str] | None, methods: list[str] | None):
    """(system, overrides, temperature, label, spec) of every run the experiment names."""
    for entry in experiment["systems"]:
        if systems and entry["name"] not in systems:
            continue
        for temperature in entry["sweep"]["temperature"]:
            for label, spec in experiment["methods"].items():
                if methods and label not in methods:
                    continue
                yield entry["name"], entry.get("overrides", {}), temperature, label, spec


def print_rows(rows: list[Row]) -> None:
    print(
        f"{'system':24s} {'T':>5s} {'method':9s} {'evals':>6s} {'wall_s':>7s} {'tau_int':>8s} "
        f"{'ESS':>7s} {'ESS/eval':>9s} {'ESS/s':>8s}  <e> ± se          z vs swap_mc"
    )
    swap = {(r.system, r.temperature): r for r in rows if r.method == "swap_mc"}
    for r in rows:
        ref = swap.get((r.system, r.temperature))
        z = math.nan if ref is None else (r.mean - ref.mean) / math.hypot(r.stderr, ref.stderr)
        bound = "≥" if r.short else " "
        print(
            f"{r.system:24s} {r.temperature:5.2f} {r.method:9s} {r.evals:6d} {r.wall_s:7.1f} "
            f"{bound}{r.tau:7.1f} {r.ess:7.1f} {r.ess_per_eval:9.2e} {r.ess / r.wall_s:8.2e}  "
            f"{r.mean:.4f} ± {r.stderr:.4f}  {z:6.1f}"
        )


def plot(rows: list[Row], path: Path) -> None:
    """ESS per evaluation against 1/T, one panel per system, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r.system for r in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for method in dict.fromkeys(r.method for r in rows if r.system == name):
            mine = sorted(
                (r for r in rows if r.system == name and r.method == method),
                key=lambda r: r.temperature,
            )
            ax.plot(
                [1 / r.temperature for r in mine],
                [r.ess_per_eval for r in mine],
                "o-",
                label=method,
            )
        ax.set(yscale="log", xlabel="1/T", ylabel="ESS of U/N per energy evaluation", title=name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def read_rows(path: Path) -> list[Row]:
    """The rows a previous run wrote to ``comparison.csv``."""
    types = {f.name: f.type for f in fields(Row)}
    casts = {"str": str, "float": float, "int": int}
    with path.open() as f:
        return [
            Row(**{k: casts[types[k]](v) for k, v in line.items() if k in types})
            for line in csv.DictReader(f)
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", type=Path, default=EXPERIMENT)
    parser.add_argument("--budget", type=int, default=None, help="default: the experiment's")
    parser.add_argument("--systems", nargs="*", default=None)
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/glass_comparison"))
    parser.add_argument(
        "--from-csv", action="store_true", help="rebuild table and plot from OUT/comparison.csv"
    )
    args = parser.parse_args()
    if args.from_csv:
        rows = read_rows(args.out / "comparison.csv")
        print_rows(rows)
        plot(rows, args.out / "ess_per_evaluation.png")
        return
    torch.set_num_threads(1)
    experiment = yaml.safe_load(args.experiment.read_text())
    budget = args.budget or experiment["budget"]["energy_evals"]
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for name, overrides, temperature, label, spec in runs(experiment, args.systems, args.methods):
        try:
            row = run_one(name, overrides, temperature, label, spec, budget, args.seed)
        except ValueError as error:
            print(f"{name} T={temperature} {label}: not run ({error})", flush=True)
            continue
        rows.append(row)
        print_rows([row])
        with (args.out / "comparison.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*Row.__dataclass_fields__, "ess_per_eval"])
            writer.writerows([[*vars(r).values(), r.ess_per_eval] for r in rows])
    print()
    print_rows(rows)
    plot(rows, args.out / "ess_per_evaluation.png")


if __name__ == "__main__":
    main()
