"""Aggregate a run folder: ``summary.csv``, ``report.md`` and plots.

One row per (system, method, estimated quantity): ESS fraction and ESS per 1000
energy evaluations as mean ± standard error over seeds, the free energy or log Z
as the mean over seeds with the combined standard error sqrt(Σ seᵢ²)/n, the exact
or reference value, and wall seconds (training included).
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from boltzgen.runner import plots


@dataclass(frozen=True)
class Row:
    """One line of the comparison table."""

    system: str
    method: str
    n_seeds: int
    ess_fraction: float
    ess_fraction_se: float
    ess_per_1k_evals: float
    quantity: str
    value: float
    stderr: float
    reference: float | None
    energy_evals: float
    wall_s: float

    @property
    def error_in_se(self) -> float | None:
        """(estimate − reference) / stderr, the deviation in standard errors."""
        if self.reference is None or not self.stderr > 0:
            return None
        return (self.value - self.reference) / self.stderr


def load_results(run_dir: Path) -> list[dict[str, Any]]:
    """Every ``result.json`` under ``run_dir``, in a stable order."""
    return [json.loads(p.read_text()) for p in sorted(run_dir.glob("*/*/seed*/result.json"))]


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if a.size == 0:
        return math.nan, math.nan
    se = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else math.nan
    return float(a.mean()), se


def _quantities(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {f"ΔF {k}": v for k, v in result.get("free_energies", {}).items()}
    if "log_z" in result:
        out["log Z"] = result["log_z"]
    return out


def summarize(results: Sequence[dict[str, Any]]) -> list[Row]:
    """Aggregate per-seed results into table rows."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        groups[(r["system"], r["method"])].append(r)
    rows = []
    for (system, method), rs in groups.items():
        ess, ess_se = _mean_se([r["ess_fraction"] for r in rs])
        per_1k, _ = _mean_se([r["metrics"].get("ess_per_1k_evals") for r in rs])
        evals, _ = _mean_se([_total_evals(r["cost"]) for r in rs])
        wall, _ = _mean_se([r["cost"]["wall_s"] + r["cost"]["train_wall_s"] for r in rs])
        for quantity in _quantities(rs[0]):
            estimates = [_quantities(r)[quantity] for r in rs]
            values = [e["value"] for e in estimates if e["value"] is not None]
            ses = [e["stderr"] for e in estimates if e["stderr"] is not None]
            value = float(np.mean(values)) if values else math.nan
            se = math.sqrt(sum(s * s for s in ses)) / len(ses) if ses else math.nan
            rows.append(
                Row(
                    system,
                    method,
                    len(rs),
                    ess,
                    ess_se,
                    per_1k,
                    quantity,
                    value,
                    se,
                    estimates[0]["reference"],
                    evals,
                    wall,
                )
            )
    return rows


def _total_evals(cost: dict[str, Any]) -> float:
    keys = ("energy_evals", "force_evals", "train_energy_evals", "train_force_evals")
    return float(sum(cost.get(k, 0) for k in keys))


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.3e}"


def _fmt_estimate(value: float, stderr: float) -> str:
    if not math.isfinite(value):
        return "not sampled"
    return f"{value:.3f} ± {stderr:.3f}"


HEADER = [
    "system",
    "method",
    "seeds",
    "ESS fraction",
    "ESS / 1k evals",
    "quantity",
    "estimate ± se",
    "reference",
    "(est−ref)/se",
    "evals",
    "wall s",
]


def table_lines(rows: Sequence[Row]) -> list[list[str]]:
    """The comparison table as strings, one list per row."""
    lines = []
    for r in rows:
        ess = _fmt(r.ess_fraction) + (
            f" ± {_fmt(r.ess_fraction_se, 2)}" if math.isfinite(r.ess_fraction_se) else ""
        )
        lines.append(
            [
                r.system,
                r.method,
                str(r.n_seeds),
                ess,
                _fmt(r.ess_per_1k_evals),
                r.quantity,
                _fmt_estimate(r.value, r.stderr),
                _fmt(r.reference, 5),
                _fmt(r.error_in_se, 2),
                f"{r.energy_evals:.3g}",
                f"{r.wall_s:.1f}",
            ]
        )
    return lines


def format_table(rows: Sequence[Row], markdown: bool = False) -> str:
    """A plain-text (aligned) or Markdown rendering of the comparison table."""
    body = table_lines(rows)
    if markdown:
        out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        return "\n".join(out + ["| " + " | ".join(line) + " |" for line in body])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(HEADER)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*HEADER)] + [fmt.format(*line) for line in body])


def write_summary_csv(rows: Sequence[Row], path: Path) -> None:
    fields = list(Row.__dataclass_fields__)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*fields, "error_in_se"])
        for r in rows:
            writer.writerow([getattr(r, f) for f in fields] + [r.error_in_se])


def build_report(run_dir: Path) -> list[Row]:
    """Rebuild ``summary.csv``, ``report.md`` and the plots of ``run_dir``."""
    results = load_results(run_dir)
    if not results:
        raise FileNotFoundError(f"{run_dir} holds no */*/seed*/result.json: nothing to report")
    rows = summarize(results)
    write_summary_csv(rows, run_dir / "summary.csv")
    figures = plots.make_plots(run_dir, results)
    machine = results[0].get("versions", {})
    lines = [
        f"# Run report: {run_dir.name}",
        "",
        "Estimates are means over seeds; ± is the combined standard error. ESS fraction is",
        "Kish's (Σw)²/(nΣw²) for weighted samples and n/τ_int for MCMC chains. Evaluations",
        "and wall seconds include training.",
        "",
        format_table(rows, markdown=True),
        "",
        f"Machine: {machine.get('machine', '?')}, torch {machine.get('torch', '?')}, "
        f"{machine.get('threads', '?')} threads per task.",
        "",
    ]
    lines += [f"![{fig.stem}]({fig.name})\n" for fig in figures]
    (run_dir / "report.md").write_text("\n".join(lines))
    return rows
