"""The amortised view at a second temperature: trained generators of a time-to-ΔF run,
weighed at other temperatures, scored against the reference there.

    PYTHONPATH=. python benchmarks/second_temperature.py --out runs/time_to_df \\
        --budget 1e5 --methods boltzmann_generator_fab --temperatures 0.8 1.25 1.5

For every seed of each method at the budget (``OUT/budget_<N>/…/<method>/seed<k>/``, a run
of ``benchmarks/time_to_free_energy.py``), the finished generator is loaded (never trained)
and drawn ``--draws`` times (default: as many draws as the task's own sampling evaluations,
so the second temperature costs what the first estimate's sampling did), weighed at each
temperature T (:func:`boltzgen.runner.second_temperature.at_second_temperature`) and scored
against the system's reference at T. Prints, and writes to ``OUT/second_temperature_<N>.md``
and ``.json``, per method and T: the seeds within 0.2 and 0.1 kT, the median |ΔF − reference|
(smallest–largest), the seeds flagged converged and the median Kish ESS fraction.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from boltzgen.records.files import write_atomic, write_json
from boltzgen.runner.second_temperature import SecondTemperatureEstimate, at_second_temperature
from boltzgen.runner.time_to_df import TOLERANCES


def _tasks(out: Path, budget: int, methods: Sequence[str]) -> list[Path]:
    """Every seed folder of ``methods`` with a result at ``budget``, in a stable order."""
    root = out / f"budget_{budget}"
    found = sorted(p.parent for m in methods for p in root.glob(f"**/{m}/seed*/result.json"))
    if not found:
        raise SystemExit(f"no result of {', '.join(methods)} under {root}")
    return found


def _draws(task: Path, requested: int | None) -> int:
    """``requested``, or the task's own sampling evaluations."""
    if requested is not None:
        return requested
    return int(json.loads((task / "result.json").read_text())["cost"]["energy_evals"])


def _table(rows: list[SecondTemperatureEstimate]) -> str:
    lines = [
        "| method | T (trained at) | free energy | draws | "
        + " | ".join(f"seeds within {t} kT" for t in TOLERANCES)
        + " | median error (min–max) | converged | median ESS |",
        "|---" * (7 + len(TOLERANCES)) + "|",
    ]
    keys = sorted({(r.method, r.temperature, r.name) for r in rows})
    for method, temperature, name in keys:
        group = [
            r for r in rows if (r.method, r.temperature, r.name) == (method, temperature, name)
        ]
        errors = [r.error for r in group]
        finite = [e for e in errors if e is not None]
        within = [f"{sum(e <= t for e in finite)}/{len(group)}" for t in TOLERANCES]
        spread = (
            f"{statistics.median(finite):.3f} ({min(finite):.3f}–{max(finite):.3f})"
            if finite
            else "no estimate"
        )
        draws = statistics.median(r.n_draws for r in group)
        ess = statistics.median(r.ess_fraction for r in group)
        converged = sum(r.converged for r in group)
        lines.append(
            f"| {method} | {temperature:g} ({group[0].trained_at:g}) | {name} | {draws:.3g} | "
            + " | ".join(within)
            + f" | {spread} | {converged}/{len(group)} | {ess:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a time-to-ΔF run folder")
    parser.add_argument("--budget", type=float, required=True, help="the rung, e.g. 1e5")
    parser.add_argument("--methods", nargs="+", default=["boltzmann_generator_fab"])
    parser.add_argument("--temperatures", nargs="+", type=float, required=True)
    parser.add_argument("--draws", type=int, default=None, help="default: the task's own")
    parser.add_argument(
        "--seed", type=int, default=1, help="randomness of the new draws (per task: 1000·seed + k)"
    )
    args = parser.parse_args(argv)
    rows: list[SecondTemperatureEstimate] = []
    for task in _tasks(args.out, int(args.budget), args.methods):
        seed = 1000 * args.seed + int(task.name.removeprefix("seed"))  # fresh per task
        found = at_second_temperature(task, args.temperatures, _draws(task, args.draws), seed)
        for r in found:
            print(f"{task}: T = {r.temperature:g}: {r.value:.3f} kT", file=sys.stderr)
        rows.extend(found)
    table = _table(rows)
    print(table)
    stem = args.out / f"second_temperature_{int(args.budget)}"
    write_atomic(stem.with_suffix(".md"), table.encode())
    write_json(stem.with_suffix(".json"), {"estimates": [r.to_dict() for r in rows]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
