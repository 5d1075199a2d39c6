"""The ``boltzgen`` command line.

    boltzgen run EXPERIMENT.yaml [--out DIR] [--executor local|debug|slurm|dask]
                                 [--set key=value ...] [--dry-run] [--force] [--wait]
    boltzgen status RUN_DIR
    boltzgen systems
    boltzgen report RUN_DIR
    boltzgen reference SYSTEM --method md|pt|umbrella [--backend openmm|torch]
                              [--ns N | --iterations I] [--frames F] [--data DIR]
    boltzgen --version

User errors (a bad card or experiment, a stale run folder, a missing batch command)
print one line naming the file and field and exit with status 2, without a
traceback; every check is made before any task runs. Ctrl-C prints one line and
exits with status 130. A run folder held by another ``boltzgen run`` is refused
(status 75) unless ``--wait`` is given; a file that cannot be written (disk full,
unwritable folder) prints the path and the reason and exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from boltzgen.errors import ConfigError
from boltzgen.records.files import WriteError
from boltzgen.records.reference_sets import reference_dir
from boltzgen.reference import (
    MIN_ENTRIES,
    MDReferenceSettings,
    PTReferenceSettings,
    ReferenceRefused,
    TorchPTReferenceSettings,
    UmbrellaSettings,
    generate_md_reference,
    generate_pt_reference,
    generate_torch_pt_reference,
    generate_umbrella_reference,
    load_reference,
)
from boltzgen.reference.pt_checkpoint import checkpoint_path, checkpointed_settings
from boltzgen.runner import report
from boltzgen.runner.config import load_experiment
from boltzgen.runner.executors import EXECUTORS, check_executor, describe_executor
from boltzgen.runner.lock import RunFolderLocked, run_folder_lock
from boltzgen.runner.manifest import finish_manifest, mark_interrupted, task_status, write_manifest
from boltzgen.runner.preflight import preflight
from boltzgen.runner.quiet import quiet_imports
from boltzgen.runner.tasks import Task, plan
from boltzgen.systems import list_systems, load_system, md_reference_value
from boltzgen.version import __version__

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="boltzgen",
        description="Boltzmann generators and the baselines they must beat, at equal cost.",
        epilog="Run `boltzgen COMMAND --help` for a command's options; docs/guide.md explains "
        "experiments, cards and executors.",
    )
    parser.add_argument("--version", action="version", version=f"boltzgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run an experiment: systems × methods × seeds")
    run.add_argument("experiment", type=Path)
    run.add_argument("--out", type=Path, default=None, help="run folder (default runs/NAME)")
    run.add_argument("--executor", choices=("local", "debug", "slurm", "dask"), default=None)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything, print the tasks and what would be submitted, and stop",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="delete and recompute results made with other settings",
    )
    run.add_argument(
        "--wait",
        action="store_true",
        help="if another boltzgen run holds the run folder, wait for it to end instead of refusing",
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field, e.g. seeds=[0]",
    )
    sub.add_parser("systems", help="list the system catalog")
    status = sub.add_parser(
        "status", help="each task of a run: done, running, interrupted, failed or pending"
    )
    status.add_argument("run_dir", type=Path)
    report = sub.add_parser("report", help="rebuild report.md, summary.csv and plots")
    report.add_argument("run_dir", type=Path)
    _reference_parser(sub)
    return parser


def _reference_parser(sub: Any) -> None:
    """``boltzgen reference``: its MD and PT options."""
    ref = sub.add_parser("reference", help="generate a system's reference data set")
    ref.add_argument("system", help="catalog name or path to a card")
    ref.add_argument("--method", choices=("md", "pt", "umbrella"), default="md")
    ref.add_argument(
        "--backend",
        choices=("openmm", "torch"),
        default=None,
        help="pt: openmmtools replica exchange or torch parallel tempering on the system's "
        "energy (default: openmm for OpenMM-backed systems, torch for others)",
    )
    ref.add_argument("--ns", type=float, default=1.0, help="md: simulated nanoseconds")
    ref.add_argument(
        "--equilibration-ps",
        type=float,
        default=MDReferenceSettings.equilibration_ps,
        help="md: picoseconds simulated from the start before the first kept frame",
    )
    ref.add_argument("--iterations", type=int, default=2000, help="pt: exchange iterations")
    ref.add_argument(
        "--steps-per-iteration",
        type=int,
        default=None,
        help="pt: MD steps per exchange (openmm, default 500) or leapfrog steps per HMC "
        "move (torch, default 10)",
    )
    ref.add_argument("--temperatures", type=int, default=8, help="pt: ladder size")
    ref.add_argument(
        "--t-max",
        type=float,
        default=None,
        help="pt: hottest temperature (default 600 K with openmm, twice the system's with torch)",
    )
    ref.add_argument(
        "--discard",
        type=int,
        default=None,
        help="pt: first iterations dropped as equilibration (default: a tenth, at most 100)",
    )
    ref.add_argument("--chains", type=int, default=8, help="pt, torch: independent chains")
    ref.add_argument(
        "--step-size", type=float, default=0.1, help="pt, torch: initial HMC step, then tuned"
    )
    ref.add_argument(
        "--move", choices=("hmc", "langevin"), default="hmc", help="pt, torch: HMC or MALA moves"
    )
    ref.add_argument(
        "--dtype", choices=("float64", "float32"), default="float64", help="pt, torch: precision"
    )
    ref.add_argument("--device", default="cpu", help="pt, torch: cpu, cuda or auto")
    ref.add_argument("--thin", type=int, default=1, help="pt, torch: keep every n-th step")
    ref.add_argument(
        "--max-minutes", type=float, default=None, help="pt, torch: stop sampling after this"
    )
    ref.add_argument(
        "--resume",
        action="store_true",
        help="pt, torch: continue the checkpointed run (same settings; --iterations is the "
        "new total, --max-minutes this invocation's limit)",
    )
    ref.add_argument(
        "--min-entries",
        type=int,
        default=MIN_ENTRIES,
        help="pt, torch: refuse unless the T_0 chains entered each named state this often",
    )
    ref.add_argument("--windows", type=int, default=36, help="umbrella: windows along s")
    ref.add_argument(
        "--exchange-every",
        type=int,
        default=1,
        help="umbrella: swap configurations between neighbouring windows after every "
        "N-th HMC step (0: never)",
    )
    ref.add_argument(
        "--max-samples",
        type=int,
        default=100_000,
        help="umbrella: at most this many subsampled samples enter MBAR (strides are raised "
        "beyond each window's statistical inefficiency when more would)",
    )
    ref.add_argument(
        "--start-from",
        choices=("structure", "reference"),
        default="structure",
        help="umbrella: walkers start from the card's structure, or from the card's MD/PT "
        "reference frames nearest to each window's centre",
    )
    ref.add_argument(
        "--spring",
        type=float,
        default=None,
        help="umbrella: spring in kT per unit² of s (default 4/Δ², Δ the window spacing)",
    )
    ref.add_argument(
        "--cv-range",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="umbrella: range of the window centres for a non-periodic s",
    )
    ref.add_argument("--frames", type=int, default=10_000, help="frames kept (evenly spaced)")
    ref.add_argument("--seed", type=int, default=0)
    ref.add_argument("--timestep-fs", type=float, default=1.0)
    ref.add_argument("--hydrogen-mass", type=float, default=None, help="amu, repartitioned")
    ref.add_argument("--data", type=Path, default=None, help="data folder (default data/)")


def _cmd_systems(_: argparse.Namespace) -> int:

    rows = []
    for name in list_systems():
        system = load_system(name)
        system.energy.close()
        shape = "×".join(map(str, system.energy.event_shape))
        rows.append(
            (
                name,
                shape,
                f"{system.temperature:g}",
                system.reference_kind,
                _first_sentence(system.description),
            )
        )
    header = ("system", "shape", "T", "reference", "description")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True))
            + "  "
            + row[4]
        )
    return 0


def _first_sentence(text: str, limit: int = 70) -> str:
    """The description's first sentence, cut to ``limit`` characters."""
    sentence = " ".join(text.split()).split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def _cmd_run(args: argparse.Namespace) -> int:

    experiment = load_experiment(args.experiment, args.overrides)
    run_dir = (args.out or Path("runs") / experiment.name).resolve()
    executor = args.executor or experiment.executor
    tasks = plan(experiment)
    if args.dry_run:
        preflight(experiment, tasks, None if args.force else run_dir)
        print(dry_run_summary(experiment, tasks, executor, run_dir))
        return 0
    check_executor(experiment, executor)
    with run_folder_lock(run_dir, wait=args.wait):
        preflight(experiment, tasks, run_dir, force=args.force)
        return _execute(experiment, tasks, executor, run_dir)


def dry_run_summary(experiment: Any, tasks: Sequence[Any], executor: str, run_dir: Path) -> str:
    """What ``boltzgen run`` would do: tasks, budget, executor, and the job script."""

    counts = " × ".join(
        _count(len(items), noun)
        for items, noun in ((experiment.systems, "system"), (experiment.methods, "method"))
    )
    lines = [
        f"{experiment.name}: {_count(len(tasks), 'task')} ({counts} × "
        f"{_count(len(experiment.seeds), 'seed')}) → {run_dir}",
        "budget: "
        + (
            f"{experiment.budget.energy_evals:,} energy evaluations per task"
            if experiment.budget
            else "none (each method runs its own settings)"
        ),
        "systems:",
        *(
            f"  {spec.label:<16} {Path(spec.card).stem}"
            + "".join(f" {k}={v}" for k, v in spec.overrides.items())
            for spec in experiment.systems
        ),
        "methods:",
    ]
    for method in experiment.methods:
        lines.append(f"  {method.label:<16} {method.method:<22} {_changed(method.params)}")
    lines.append(describe_executor(experiment, executor, run_dir))
    lines.append("checks passed: the run can start every task.")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _changed(params: Any) -> str:
    """The settings that differ from the method's defaults, as ``key=value``."""
    import dataclasses

    default = type(params)()
    out = []
    for f in dataclasses.fields(params):
        value, base = getattr(params, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(value) and value != base:
            out.append(f"{f.name}({_changed(value)})")
        elif value != base:
            out.append(f"{f.name}={value}")
    return ", ".join(out) or "defaults"


def _execute(experiment: Any, tasks: Sequence[Any], executor: str, run_dir: Path) -> int:

    run_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(run_dir, experiment, executor, tasks)
    print(f"{experiment.name}: {_count(len(tasks), 'task')} on the {executor} executor → {run_dir}")
    failures: list[str] = []
    start = time.perf_counter()

    def on_done(task: Task, result: dict[str, Any] | None, error: str | None) -> None:
        if error is not None:
            failures.append(f"{task.key}: {error}")
            print(f"  failed {task.key}: {error}", flush=True)
        else:
            spent = result["cost"].get("wall_s", 0.0) + result["cost"].get("train_wall_s", 0.0)
            print(
                f"  done   {task.key}  ESS fraction {result['ess_fraction']:.3g}  ({spent:.0f} s)",
                flush=True,
            )

    try:
        EXECUTORS[executor](tasks, run_dir, on_done, experiment)
    except KeyboardInterrupt:
        return _interrupted(run_dir, tasks)
    finish_manifest(run_dir)
    print(f"finished in {time.perf_counter() - start:.0f} s\n")
    if len(failures) < len(tasks):
        rows = _quiet_report(run_dir)
        print(report.format_table(rows))
        print(f"\nreport: {run_dir / 'report.md'}")
    for line in failures:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if failures else 0


def _interrupted(run_dir: Path, tasks: Sequence[Any]) -> int:
    """Mark the run interrupted and say, in one line, how to resume and from where."""

    done, started = mark_interrupted(run_dir, tasks)
    if len(started) == 1 and done == len(tasks) - 1:
        ((key, point),) = started.items()
        where = f" from {point} ({key})"
    else:
        points = "; ".join(f"{key} from {point}" for key, point in started.items())
        where = f" ({done} of {_count(len(tasks), 'task')} done" + (
            f"; {points})" if points else ")"
        )
    print(f"\ninterrupted; rerun the same command to resume{where}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _cmd_status(args: argparse.Namespace) -> int:

    rows = task_status(args.run_dir)
    counts: dict[str, int] = {}
    for key, state, detail in rows:
        counts[state] = counts.get(state, 0) + 1
        print(f"{state:<8} {key}" + (f"  {detail}" if detail else ""))
    print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:

    print(report.format_table(_quiet_report(args.run_dir)))
    return 0


def _quiet_report(run_dir: Path) -> Any:
    """Build the report; empty histograms and constant columns raise no numpy warnings."""
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        return report.build_report(run_dir)


def _cmd_reference(args: argparse.Namespace) -> int:

    quiet_imports()
    if args.data is not None:
        os.environ["BOLTZGEN_DATA"] = str(args.data)
    if args.resume and args.method != "pt":
        raise ConfigError("boltzgen reference", "--resume", "applies to --method pt", True)
    system = load_system(args.system)
    try:
        out = ROUTES[args.method](system, args)
    except ReferenceRefused as refused:
        print(f"boltzgen reference: {refused}", file=sys.stderr)
        return 1
    finally:
        system.energy.close()
    print(f"reference set written to {out}")
    for name, (value, stderr, note) in _reference_free_energies(system, args.method, out).items():
        text = "not estimated" if value is None else f"{value:.3f} ± {stderr:.3f} kT"
        print(f"  ΔF {name}: {text} ({note})")
    if system.has_exact_reference:
        print(f"note: {system.name} computes its exact answers; they take precedence over this set")
    elif args.method == "umbrella":
        if system.free_energies_from != "umbrella":
            kind = system.reference_kind
            print(
                f"note: set `reference: {{kind: {kind}, free_energies: umbrella}}` "
                f"in {system.card_path} to score against this ΔF"
            )
    elif system.reference_kind != args.method:
        print(
            f"note: {system.card_path} reads its reference from `{system.reference_kind}`; "
            f"set `reference: {{kind: {args.method}}}` in the card to use this set"
        )
    return 0


def _pt_reference(system: Any, args: argparse.Namespace) -> Path:
    backend = args.backend or ("openmm" if system.openmm_system is not None else "torch")
    if args.resume and backend != "torch":
        raise ConfigError("boltzgen reference", "--resume", "applies to --backend torch", True)
    discard = args.discard if args.discard is not None else _default_discard(system, args)
    if not 0 <= discard < args.iterations:
        raise ConfigError(
            "boltzgen reference",
            "--discard",
            f"must be ≥ 0 and below --iterations ({args.iterations})",
            discard,
        )
    if backend == "torch":
        return _torch_pt_reference(system, args, discard)

    pt = PTReferenceSettings(
        n_temperatures=args.temperatures,
        t_max=600.0 if args.t_max is None else args.t_max,
        n_iterations=args.iterations,
        steps_per_iteration=500 if args.steps_per_iteration is None else args.steps_per_iteration,
        timestep_fs=args.timestep_fs,
        n_discard=discard,
        n_frames=args.frames,
        seed=args.seed,
    )
    return generate_pt_reference(system, pt)


def _default_discard(system: Any, args: argparse.Namespace) -> int:
    """A tenth of the iterations, at most 100; a resumed run keeps its checkpoint's."""
    if args.resume:
        saved = checkpointed_settings(checkpoint_path(reference_dir(system.name, "pt")))
        if saved is not None:
            return int(saved["n_discard"])
    return min(100, args.iterations // 10)


def _torch_pt_reference(system: Any, args: argparse.Namespace, discard: int) -> Path:

    settings = TorchPTReferenceSettings(
        n_temperatures=args.temperatures,
        t_max=args.t_max,
        n_iterations=args.iterations,
        n_leapfrog=10 if args.steps_per_iteration is None else args.steps_per_iteration,
        step_size=args.step_size,
        n_chains=args.chains,
        n_discard=discard,
        n_frames=args.frames,
        seed=args.seed,
        move=args.move,
        thin=args.thin,
        dtype=args.dtype,
        device=args.device,
        min_entries=args.min_entries,
        max_wall_s=None if args.max_minutes is None else 60.0 * args.max_minutes,
    )
    return generate_torch_pt_reference(
        system,
        settings,
        progress=sys.stderr.isatty() or args.max_minutes is not None,
        resume=args.resume,
    )


def _umbrella_reference(system: Any, args: argparse.Namespace) -> Path:
    if args.backend == "openmm":
        raise ConfigError(
            "boltzgen reference",
            "--backend",
            "umbrella runs in torch: use --backend torch",
            "openmm",
        )
    discard = args.discard if args.discard is not None else min(200, args.iterations // 10)
    settings = UmbrellaSettings(
        n_windows=args.windows,
        spring=args.spring,
        cv_range=None if args.cv_range is None else tuple(args.cv_range),
        n_chains=args.chains,
        n_iterations=args.iterations,
        n_discard=discard,
        n_leapfrog=10 if args.steps_per_iteration is None else args.steps_per_iteration,
        step_size=args.step_size,
        thin=args.thin,
        exchange_every=args.exchange_every,
        seed=args.seed,
        dtype=args.dtype,
        device=args.device,
        max_wall_s=None if args.max_minutes is None else 60.0 * args.max_minutes,
        start=args.start_from,
        max_samples=args.max_samples,
    )
    return generate_umbrella_reference(
        system, settings, progress=sys.stderr.isatty() or args.max_minutes is not None
    )


def _md_reference(system: Any, args: argparse.Namespace) -> Path:

    if args.backend == "torch":
        raise ConfigError(
            "boltzgen reference", "--backend", "torch has no md route: use --method pt", "torch"
        )
    if not args.equilibration_ps >= 0:
        raise ConfigError(
            "boltzgen reference", "--equilibration-ps", "must be ≥ 0", args.equilibration_ps
        )
    settings = MDReferenceSettings(
        ns=args.ns,
        n_frames=args.frames,
        equilibration_ps=args.equilibration_ps,
        timestep_fs=args.timestep_fs,
        hydrogen_mass=args.hydrogen_mass,
        seed=args.seed,
    )
    return generate_md_reference(system, settings, progress=sys.stderr.isatty())


def _reference_free_energies(
    system: Any, method: str, out: Path
) -> dict[str, tuple[float | None, float | None, str]]:
    """ΔF of each named pair from the set just written (PT: its MBAR estimates)."""
    import json

    if method in ("pt", "umbrella"):
        stored = json.loads((out / "manifest.json").read_text()).get("free_energies", {})
        note = {True: f"{method}: MBAR", False: f"{method}: MBAR, NOT CONVERGED: halves disagree"}
        return {
            name: (fe.get("value"), fe.get("stderr"), note[fe.get("converged", True)])
            for name, fe in stored.items()
        }

    samples = load_reference(system.name, "md").samples()
    out_values = {}
    for a, b in system.free_energy_pairs:
        ref = md_reference_value(samples, system.states[a], system.states[b])
        out_values[f"{b}_vs_{a}"] = (ref.value, ref.stderr, ref.note)
    return out_values


ROUTES = {"md": _md_reference, "pt": _pt_reference, "umbrella": _umbrella_reference}

COMMANDS = {
    "run": _cmd_run,
    "systems": _cmd_systems,
    "report": _cmd_report,
    "reference": _cmd_reference,
    "status": _cmd_status,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``boltzgen`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except RunFolderLocked as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_LOCKED
    except WriteError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
