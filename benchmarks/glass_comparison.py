"""Ranking of samplers on small glass formers along a temperature ladder (arXiv 2404.09914).

    OMP_NUM_THREADS=1 python benchmarks/glass_comparison.py --budget 6000 \
        --out runs/glass_comparison

Runs the methods of ``experiments/glass.yaml`` (same settings, through the runner's
``fit_budget`` and ``run``) on ``kob_andersen_2d_ternary`` (N = 36) and ``polydisperse_3d``
(N = 70) at each temperature of the ladder, every run with the same budget of energy
evaluations, and prints one row per run: the integrated autocorrelation time τ_int of the
energy per particle e = U/N (in recorded samples), the ESS of e, ESS per evaluation and per
wall second (the run's recorded cost, training included), and ⟨e⟩ with its standard error.
Writes ``comparison.csv`` and ``ess_per_evaluation.png`` (ESS per evaluation against 1/T, one
line per method).

The rows are :mod:`boltzgen.runner.glass_ranking`'s, the same the runner's report writes to
``glass_ranking.md``: chains (MD, PT, swap and local MC) n/τ_int of e over all chains;
population annealing G·var(e)/var(group means of e) from its G independent groups (at most
R); the temperature map Kish ESS fraction × n/τ_int of u(f(z)) along the hot chains.
Chains shorter than 50 τ_int are marked ≥ (τ_int a lower bound, ESS an upper one). τ_int
sees only the fluctuations a chain makes: a chain that has not left its start's basin
looks fast, so the last column compares ⟨e⟩ with swap MC's (z = difference over the
combined standard error); a large |z| marks a run that has not equilibrated.
``--from-csv`` rebuilds the table and the plot from ``OUT/comparison.csv``; ``--from-runs
RUN_DIR`` builds them from the folder of ``boltzgen run experiments/glass.yaml --out RUN_DIR``
instead of rerunning.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

import boltzgen as bg
from boltzgen.runner.glass_ranking import (
    Row,
    format_table,
    plot,
    read_csv,
    row_of,
    rows_from_run,
    write_csv,
)
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
from boltzgen.runner.report import load_results

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "glass.yaml"
MODULES = {
    "md": (md, MDParams),
    "parallel_tempering": (parallel_tempering, PTParams),
    "population_annealing": (population_annealing, PAParams),
    "swap_mc": (swap_mc, SwapMCParams),
    "temperature_map": (temperature_map, TemperatureMapParams),
}


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
    samples = module.run(system, params, generator, MethodContext())
    n = system.energy.n_particles
    hot_chains = getattr(params, "n_hot_chains", None)
    return row_of(system_name, temperature, label, samples, n, hot_chains)


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


def from_runs(run_dir: Path) -> list[Row]:
    """The rows of the particle-system tasks of a ``boltzgen run`` folder."""
    results = load_results(run_dir)
    if not results:
        raise SystemExit(f"{run_dir} holds no */*/seed*/result.json: nothing to rank")
    return rows_from_run(run_dir, results)


def finish(rows: list[Row], out: Path) -> None:
    """Print the table, write ``comparison.csv`` and the plot into ``out``."""
    print(format_table(rows))
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "comparison.csv")
    plot(rows, out / "ess_per_evaluation.png")


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
    parser.add_argument(
        "--from-runs",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="build table and plot into OUT from a `boltzgen run` folder instead of rerunning",
    )
    args = parser.parse_args()
    if args.from_csv:
        rows = read_csv(args.out / "comparison.csv")
        print(format_table(rows))
        plot(rows, args.out / "ess_per_evaluation.png")
        return
    if args.from_runs is not None:
        finish(from_runs(args.from_runs), args.out)
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
        print(format_table([row]), flush=True)
        write_csv(rows, args.out / "comparison.csv")
    print()
    finish(rows, args.out)


if __name__ == "__main__":
    main()
