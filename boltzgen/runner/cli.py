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
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from boltzgen.errors import ConfigError
from boltzgen.records.files import WriteError
from boltzgen.runner import report
from boltzgen.runner.cli_reference import add_reference_parser, cmd_reference
from boltzgen.runner.config import load_experiment
from boltzgen.runner.executors import EXECUTORS, check_executor, describe_executor
from boltzgen.runner.lock import RunFolderLocked, run_folder_lock
from boltzgen.runner.manifest import finish_manifest, mark_interrupted, task_status, write_manifest
from boltzgen.runner.preflight import preflight
from boltzgen.runner.tasks import Task, plan
from boltzgen.systems import list_systems, load_system
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
    add_reference_parser(sub)
    return parser


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


COMMANDS = {
    "run": _cmd_run,
    "systems": _cmd_systems,
    "report": _cmd_report,
    "reference": cmd_reference,
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
