"""Head-to-head: energy evaluations and wall seconds to a free energy within 0.2 and 0.1 kT.

    OMP_NUM_THREADS=1 python benchmarks/time_to_free_energy.py --out runs/time_to_df

Runs ``experiments/time_to_df.yaml`` once per budget of its ``budgets`` list, through the
runner (``boltzgen run`` with ``budget.energy_evals`` set, into ``OUT/budget_<N>/<system>/``;
finished tasks are skipped, so a rerun resumes). At each budget a method whose fixed costs
(training, the charge of its data) do not fit (its ``fit_budget`` refuses) or that the
system cannot run (``md`` and OpenMM replica exchange need an OpenMM system) is left out
and listed as such. Then every ``result.json`` becomes one row of ``OUT/time_to_df.csv``
per free energy, and ``OUT/report.md`` gives, per method, the smallest budget from which
it *stays* within each tolerance — every seed's |ΔF − reference| within it at that budget
and at every larger budget of the ladder — with its ratio to MD's and parallel tempering's
(an upper bound, "< r", where the baseline is not reached on the ladder),
and ``OUT/error_vs_evals.png`` plots |ΔF − reference| against energy evaluations and wall
seconds (median over seeds, band from the smallest to the largest). For the methods that
train, the report adds the amortised budget (sampling evaluations only, training already
paid) and the figure a dashed curve against it. The analysis lives in
:mod:`boltzgen.runner.time_to_df`.

Training data: where a method trains with ``data: pt``, each system's torch PT reference
set must be in ``OUT/data`` (``BOLTZGEN_DATA`` is pointed there); a missing one is made
first with the file's ``pt_data`` settings (``boltzgen reference NAME --method pt
--backend torch ...``), or, without ``pt_data``, refused (exit status 4) with that command.

Reference gate: before anything runs, each system's reference ΔF must have a standard
error ≤ ``--max-reference-stderr`` (0.05 kT); a weaker or missing reference is refused
(exit status 3) with the command that would make a better one, unless
``--allow-weak-reference`` is given, which marks the report. The references that passed
are kept in ``OUT/plan.json`` and every error in the report is taken against them: after a
better reference is made, the same command rescores the finished tasks without running them.

    python benchmarks/time_to_free_energy.py --out runs/t --budgets 1e4 1e5 --seeds 2 \\
        --methods hmc parallel_tempering --set methods.hmc.n_chains=8
    python benchmarks/time_to_free_energy.py --out runs/time_to_df --report-only
    python benchmarks/time_to_free_energy.py --out runs/t --report-only --budgets 1e5 1e6 1e7

    python benchmarks/time_to_free_energy.py --out runs/t --report-only --include runs/t_seed1

(the last two: a ladder run in pieces, one budget range per invocation or one seed per
OUT folder — ``--set 'seeds=[1]'`` — reported as one).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import yaml

from boltzgen.runner.time_to_df import (
    TOLERANCES,
    Row,
    curve,
    gate,
    needs_pt_data,
    pt_data_command,
    rows_of,
    system_name,
    trains,
)
from boltzgen.runner.time_to_df_report import (
    MAX_REFERENCE_STDERR,
    OPENMM_ONLY,
    Plan,
    report_text,
)

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "time_to_df.yaml"
EXIT_WEAK_REFERENCE = 3
EXIT_MISSING_DATA = 4
BENCHMARK_KEYS = ("budgets", "pt_data")
"""Keys of the experiment file that the benchmark reads and the runner does not."""


# --------------------------------------------------------------------------- PT data


def ensure_pt_data(raw: Mapping[str, Any], data: Path) -> list[str]:
    """Make each system's PT set in ``data`` where a method needs it and it is missing.

    ``BOLTZGEN_DATA`` is pointed at ``data`` so that the runner trains on (and charges)
    these sets. Without a ``pt_data`` entry nothing is made: one line per missing set,
    with the command that makes it, is returned (empty: every set is there).
    """
    from boltzgen.runner.cli import main as boltzgen

    if not needs_pt_data(raw):
        return []
    os.environ["BOLTZGEN_DATA"] = str(data.resolve())
    missing = []
    for name in dict.fromkeys(system_name(e) for e in raw["systems"]):
        if (data / name / "pt" / "manifest.json").exists():
            continue
        command = pt_data_command(name, raw.get("pt_data") or {}, data)
        if "pt_data" not in raw:
            missing.append(
                f"{name}: no PT set in {data}; make it with: boltzgen {' '.join(command)}"
            )
            continue
        print(f"making the PT set: boltzgen {' '.join(command)}", flush=True)
        if boltzgen(command) != 0:
            missing.append(f"{name}: `boltzgen {' '.join(command)}` failed")
    return missing


# --------------------------------------------------------------------------- running


def needs_openmm(kind: str, params: Any) -> bool:
    """Whether a method needs the system's OpenMM system (MD, OpenMM replica exchange)."""
    return kind == "md" or (kind == "parallel_tempering" and params.backend == "openmm")


def unfit_methods(experiment: Any, budget: int) -> dict[str, str]:
    """{method label: why it is left out at ``budget``} over every system of ``experiment``."""
    from boltzgen.runner.methods import METHODS
    from boltzgen.runner.system_specs import load_task_system

    out: dict[str, str] = {}
    for spec in experiment.systems:
        system = load_task_system(spec, backend=experiment.energy_backend)
        try:
            for m in experiment.methods:
                if m.label in out:
                    continue
                if needs_openmm(m.method, m.params) and system.openmm_system is None:
                    out[m.label] = OPENMM_ONLY
                    continue
                try:
                    METHODS[m.method].fit_budget(m.params, budget, system)
                except ValueError as error:
                    out[m.label] = f"does not fit at this budget: {error}"
        finally:
            system.energy.close()
    return out


def entry_label(entry: Any) -> str:
    """The folder name of one ``systems`` entry (its label or the card's stem)."""
    if isinstance(entry, Mapping):
        return str(entry.get("label") or Path(str(entry["name"])).stem)
    return Path(str(entry)).stem


def budget_experiment(raw: Mapping[str, Any], entry: Any, budget: int) -> dict[str, Any]:
    """The runner's experiment for one system entry at one budget (no ``budgets`` key)."""
    out = {k: copy.deepcopy(v) for k, v in raw.items() if k not in BENCHMARK_KEYS}
    out["systems"] = [copy.deepcopy(entry)]
    out["budget"] = {"energy_evals": int(budget)}
    out["name"] = f"{raw.get('name', 'time_to_df')}_{entry_label(entry)}_{budget}"
    return out


def share_generators(experiment: Any, run_dir: Path, out: Path) -> None:
    """Point each system's ``_generators`` folder of this budget's run at ``OUT/_generators``.

    The generator that SMC and flow MCMC share depends on its settings and the seed, not on
    the budget (the budget sizes only the sampling), so it is trained once per system and
    seed and loaded at every budget. Each task is still charged its full training cost:
    the training checkpoint records the evaluations and wall seconds it took.
    """
    for spec in experiment.systems:
        common = out / "_generators" / spec.label
        common.mkdir(parents=True, exist_ok=True)
        link = run_dir / spec.label / "_generators"
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(common.resolve(), target_is_directory=True)


def run_budget(raw: Mapping[str, Any], entry: Any, budget: int, out: Path) -> int:
    """Run one system entry at one budget through ``boltzgen run``; its exit status.

    The methods left out are written to ``left_out.json`` beside the experiment file the
    run used (``experiment.yaml``), beside those an earlier run of other methods left out.
    """
    from boltzgen.runner.cli import main as boltzgen
    from boltzgen.runner.config import parse_experiment

    run_dir = out / f"budget_{budget}" / entry_label(entry)
    derived = budget_experiment(raw, entry, budget)
    left_out = unfit_methods(parse_experiment(derived, str(run_dir)), budget)
    for label, why in left_out.items():
        print(f"  {entry_label(entry)} @ {budget:.0e}: {label} left out ({why})", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    share_generators(parse_experiment(derived, str(run_dir)), run_dir, out)
    record = run_dir / "left_out.json"  # other methods' entries stay (a run in pieces)
    kept = json.loads(record.read_text()) if record.exists() else {}
    kept = {m: why for m, why in kept.items() if m not in derived["methods"]}
    record.write_text(json.dumps(kept | left_out, indent=1) + "\n")
    derived["methods"] = {k: v for k, v in derived["methods"].items() if k not in left_out}
    if not derived["methods"]:
        return 0
    path = run_dir / "experiment.yaml"
    path.write_text(yaml.safe_dump(derived, sort_keys=False))
    return boltzgen(["run", str(path), "--out", str(run_dir)])


# --------------------------------------------------------------------------- collecting


def result_files(roots: Sequence[Path]) -> list[tuple[int, Path]]:
    """(budget, path) of every ``result.json`` under ``ROOT/budget_<N>/`` of each root.

    Raises:
        SystemExit: two roots hold the same task (system entry, method, seed) at the same
            budget: the pieces of a ladder must not overlap.
    """
    found: dict[tuple[int, tuple[str, ...]], Path] = {}
    for root in roots:
        for folder in root.glob("budget_*"):
            budget = int(folder.name.split("_")[1])
            for path in folder.glob("*/*/*/seed*/result.json"):
                key = (budget, path.relative_to(folder).parts)
                if key in found and found[key].resolve() != path.resolve():
                    raise SystemExit(f"the same task in two pieces: {found[key]} and {path}")
                found[key] = path
    return sorted(found.items(), key=lambda kv: kv[0])


def collect(
    out: Path,
    include: Sequence[Path] = (),
    references: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
) -> list[Row]:
    """Every ``result.json`` under ``OUT/budget_<N>/`` (and under each ``include`` folder,
    pieces of the same ladder run separately), as rows (budget from the folder).

    A ladder method's MBAR estimate is recomputed from its ``ladder.npz`` with the
    estimator as it is now, and with ``references`` (``{system: {name: [value, stderr,
    note]}}``, as :class:`Plan` keeps them) every error is taken against those, so a task
    scored against an earlier, weaker reference is judged by the one the report names."""
    from boltzgen.runner.methods.ladder import mbar_from_file

    rows = []
    for (budget, _), path in result_files([out, *include]):
        result = against(json.loads(path.read_text()), references or {})
        info = result.get("info") or {}
        if "mbar_free_energies" in info and "temperatures" in info:
            names = list(result["free_energies"])
            mbar = mbar_from_file(path.parent, info["temperatures"], names)
            if mbar is not None:
                info["mbar_free_energies"] = mbar
        rows += rows_of(result, budget)
    return rows


def against(
    result: dict[str, Any], references: Mapping[str, Mapping[str, Sequence[Any]]]
) -> dict[str, Any]:
    """``result`` with the reference of each of its free energies replaced by the one that
    ``references`` holds for its system (where it holds one with a value)."""
    known = references.get(result["system"], {})
    for name, entry in result["free_energies"].items():
        if name in known and known[name][0] is not None:
            entry["reference"] = known[name][0]
    return result


def left_out(out: Path, include: Sequence[Path] = ()) -> dict[tuple[str, int], dict[str, str]]:
    """{(system entry, budget): {method: why}} from every ``left_out.json`` (of OUT and
    the ``include`` folders; a method run in any piece is not left out)."""
    found: dict[tuple[str, int], dict[str, str]] = {}
    ran = {(p.parts[-5], b, p.parts[-3]) for (b, _), p in result_files([out, *include])}
    for root in [out, *include]:
        for path in sorted(root.glob("budget_*/*/left_out.json")):
            key = (path.parent.name, int(path.parent.parent.name.split("_")[1]))
            entry = found.setdefault(key, {})
            entry.update(json.loads(path.read_text()))
    return {
        key: {m: why for m, why in methods.items() if (key[0], key[1], m) not in ran}
        for key, methods in found.items()
    }


def write_csv(rows: Sequence[Row], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f.name for f in fields(Row)])
        writer.writerows([list(asdict(r).values()) for r in rows])


# --------------------------------------------------------------------------- report


def _plot_method(ax: Any, rows: Sequence[Row], x: str, method: str, floor: float) -> None:
    """One method's median |error| and its seeds' band; on the evaluations panel, a method
    that trains adds a dashed curve against its sampling evaluations only (amortised)."""
    pts = curve(rows, x)
    if not pts:
        return
    xs, med, low, high = (list(v) for v in zip(*pts, strict=True))
    (line,) = ax.plot(xs, [max(v, floor) for v in med], "o-", label=method)
    lows, highs = [max(v, floor) for v in low], [max(v, floor) for v in high]
    ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15)
    if x == "energy_evals" and trains(rows):
        xs, med = (list(v) for v in zip(*[p[:2] for p in curve(rows, "sample_evals")], strict=True))
        ax.plot(
            xs,
            [max(v, floor) for v in med],
            "x--",
            color=line.get_color(),
            lw=1,
            label=f"{method}, amortised (training already paid)",
        )


def plot(rows: Sequence[Row], path: Path, tolerances: Sequence[float] = TOLERANCES) -> None:
    """|ΔF − reference| against evaluations and wall seconds, log-log, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(dict.fromkeys((r.system, r.free_energy) for r in rows))
    fig, axes = plt.subplots(len(pairs), 2, figsize=(11, 4.2 * len(pairs)), squeeze=False)
    floor = 1e-3
    for (system, name), row_axes in zip(pairs, axes, strict=True):
        mine = [r for r in rows if r.system == system and r.free_energy == name]
        for ax, x, label in zip(
            row_axes,
            ("energy_evals", "wall_s"),
            ("target evaluations", "wall seconds"),
            strict=True,
        ):
            for method in dict.fromkeys(r.method for r in mine):
                _plot_method(ax, [r for r in mine if r.method == method], x, method, floor)
            for t in tolerances:
                ax.axhline(t, color="grey", lw=0.8, ls="--")
            ax.set(xscale="log", yscale="log", xlabel=label, ylabel="|ΔF − reference| (kT)")
            ax.set_title(f"{system}: {name}", fontsize=10)
    legend = dict(zip(*reversed(axes[0][0].get_legend_handles_labels()), strict=True))
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=3, fontsize=7)
    fig.tight_layout(rect=(0, 0.17 / len(pairs), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: Path, plan: Plan, figure: bool = True) -> list[Row]:
    """Collect the results into ``time_to_df.csv``, ``report.md`` and (``figure``)
    ``error_vs_evals.png``."""
    include = [Path(p) for p in plan.include]
    rows = [r for r in collect(out, include, plan.references) if r.budget in plan.budgets]
    write_csv(rows, out / "time_to_df.csv")
    skipped = {k: v for k, v in left_out(out, include).items() if k[1] in plan.budgets}
    (out / "report.md").write_text(report_text(rows, plan, skipped))
    if rows and figure:
        plot(rows, out / "error_vs_evals.png")
    return rows


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", type=Path, default=EXPERIMENT)
    parser.add_argument("--out", type=Path, default=Path("runs/time_to_df"))
    parser.add_argument("--budgets", type=float, nargs="+", help="default: the file's `budgets`")
    parser.add_argument("--seeds", type=int, help="seeds 0 … N−1 (default: the file's)")
    parser.add_argument("--methods", nargs="+", help="method labels (default: all)")
    parser.add_argument("--systems", nargs="+", help="system names (default: the file's)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the experiment",
    )
    parser.add_argument("--max-reference-stderr", type=float, default=MAX_REFERENCE_STDERR)
    parser.add_argument(
        "--allow-weak-reference",
        action="store_true",
        help="run against a reference the gate refuses (the report says so)",
    )
    parser.add_argument("--md", default="md", help="label of the MD baseline")
    parser.add_argument("--pt", default="parallel_tempering", help="label of the PT baseline")
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild the CSV, report and plot from OUT"
    )
    parser.add_argument(
        "--include",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="with --report-only: also the results of these OUT folders (pieces of the same "
        "ladder run separately, e.g. one job per seed); kept in OUT/plan.json",
    )
    return parser


def experiment_mapping(args: argparse.Namespace) -> dict[str, Any]:
    """The experiment file with the command line's choices applied."""
    from boltzgen.runner.config import apply_overrides

    raw = yaml.safe_load(args.experiment.read_text())
    raw = apply_overrides(raw, args.overrides, str(args.experiment))
    if args.seeds is not None:
        raw["seeds"] = list(range(args.seeds))
    if args.systems:
        raw["systems"] = list(args.systems)
    if args.methods:
        unknown = set(args.methods) - set(raw["methods"])
        if unknown:
            raise SystemExit(
                f"unknown methods {sorted(unknown)}; the file has {list(raw['methods'])}"
            )
        raw["methods"] = {k: v for k, v in raw["methods"].items() if k in args.methods}
    if args.budgets:
        raw["budgets"] = [int(b) for b in args.budgets]
    return raw


def _references(specs: Sequence[Any], backend: str | None) -> dict[str, dict[str, list[Any]]]:
    from boltzgen.runner.system_specs import load_task_system

    out = {}
    for spec in specs:
        system = load_task_system(spec, backend=backend)
        try:
            estimates = system.reference_estimates().items()
            out[spec.label] = {n: [r.value, r.stderr, r.note] for n, r in estimates}
        finally:
            system.energy.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) the ladder and write the report; the exit status."""
    import torch

    from boltzgen.runner.config import parse_experiment

    args = _parser().parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        plan = Plan(**json.loads((args.out / "plan.json").read_text()))
        if args.budgets:  # a ladder run in pieces: report every piece's budgets
            plan = replace(plan, budgets=sorted(int(b) for b in args.budgets))
        if args.include:
            added = [str(p) for p in args.include if str(p) not in plan.include]
            plan = replace(plan, include=[*plan.include, *added])
            (args.out / "plan.json").write_text(json.dumps(asdict(plan), indent=1) + "\n")
        write_report(args.out, plan)
        print((args.out / "report.md").read_text())
        return 0
    raw = experiment_mapping(args)
    budgets = sorted(int(b) for b in raw["budgets"])
    probe = parse_experiment(
        budget_experiment(raw, raw["systems"][0], budgets[0]) | {"systems": raw["systems"]},
        str(args.experiment),
    )
    refused = gate(probe.systems, args.max_reference_stderr, probe.energy_backend)
    for line in refused:
        print(line, file=sys.stderr)
    if refused and not args.allow_weak_reference:
        print(
            "refused: the reference gate failed (--allow-weak-reference overrides it)",
            file=sys.stderr,
        )
        return EXIT_WEAK_REFERENCE
    missing = ensure_pt_data(raw, args.out / "data")
    if missing:
        print("\n".join(["refused: training data missing", *missing]), file=sys.stderr)
        return EXIT_MISSING_DATA
    command = " ".join(["python benchmarks/time_to_free_energy.py", *(argv or sys.argv[1:])])
    plan = Plan(
        budgets,
        len(probe.seeds),
        args.md,
        args.pt,
        command,
        _references(probe.systems, probe.energy_backend),
        bool(refused),
        _included(args.out),
    )
    (args.out / "plan.json").write_text(json.dumps(asdict(plan), indent=1) + "\n")
    return run_ladder(raw, plan, args.out)


def _included(out: Path) -> list[str]:
    """The ``--include`` folders an earlier report of OUT recorded (a new run keeps them)."""
    path = out / "plan.json"
    return json.loads(path.read_text()).get("include", []) if path.exists() else []


def run_ladder(raw: Mapping[str, Any], plan: Plan, out: Path) -> int:
    """Every budget of ``plan`` for every system entry, the report rewritten after each; the
    exit status (the runner's, where it is neither 0 nor 1)."""
    for budget in plan.budgets:
        for entry in raw["systems"]:
            status = run_budget(raw, entry, budget, out)
            if status not in (0, 1):
                return status
            write_report(out, plan, figure=False)
    write_report(out, plan)
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
