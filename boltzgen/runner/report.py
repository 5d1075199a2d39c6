"""Aggregate a run folder: ``summary.csv``, ``report.md`` and plots.

One row per (system, method, estimated quantity): ESS fraction and ESS per 1000
energy evaluations as mean ± standard error over seeds, the free energy (kT), log Z or
a named observable (``⟨plaquette⟩``, ``⟨energy_density⟩``, …) as the mean over the
*usable* seeds with the combined standard error sqrt(Σ seᵢ²)/n, the exact or reference
value, and wall seconds (training included).

A seed is usable for a quantity when its estimate is finite and converged. Every row
says how many seeds were not: ``failed`` (no finite estimate, e.g. a state never
visited) and ``not converged`` (``converged: false`` in ``result.json``; an entry
without the field counts as converged). Dropping them silently would bias the mean
towards the seeds that happened to work, so the counts stand beside it; when a usable
seed has no standard error the combined one is unknown (–), never understated. The
``training data`` column says where each method's training samples came from and
what they were charged (``info.training_data``). ``system`` is the system's label; the
``overrides`` column of ``summary.csv`` holds the keyword overrides of its card as
compact JSON (``{"temperature":0.6}``; ``{}`` for none), so a quantity can be plotted
against a swept parameter.
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

from boltzgen.records.files import damage, notice, recorded_checksum
from boltzgen.runner import glass_ranking, plots, tables


def unit(quantity: str) -> str:
    """Free energies are in kT (reduced units); log Z is a dimensionless log, in nats;
    observables (``⟨name⟩``) carry the units of their definition (lattice units, reduced)."""
    if quantity.startswith("ΔF"):
        return "kT"
    return "nats" if quantity == "log Z" else "–"


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
    n_failed: int = 0
    n_not_converged: int = 0
    unit: str = ""
    training_data: str = "none"
    overrides: str = "{}"

    @property
    def n_used(self) -> int:
        """Seeds whose estimate enters the mean: finite and converged."""
        return self.n_seeds - self.n_failed - self.n_not_converged

    @property
    def error_in_se(self) -> float | None:
        """(estimate − reference) / stderr, the deviation in standard errors."""
        if self.reference is None or not self.stderr > 0:
            return None
        return (self.value - self.reference) / self.stderr


def load_results(run_dir: Path) -> list[dict[str, Any]]:
    """Every intact ``result.json`` under ``run_dir``, in a stable order.

    One that does not match its recorded checksum is left out, with one line saying so.
    """
    results = []
    for path in sorted(run_dir.glob("*/*/seed*/result.json")):
        problem = damage(path) if recorded_checksum(path) is not None else None
        if problem is not None:
            notice(f"{problem}: left out of the report (rerun the experiment to redo it)")
            continue
        results.append(json.loads(path.read_text()))
    return results


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
    out.update({f"⟨{k}⟩": v for k, v in result.get("observables", {}).items()})
    return out


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(x)


@dataclass(frozen=True)
class Pooled:
    """One quantity over seeds: mean and combined se of the usable seeds, and the counts."""

    value: float
    stderr: float
    n_failed: int
    n_not_converged: int


def pool(estimates: Sequence[dict[str, Any]]) -> Pooled:
    """Mean over finite, converged estimates; se = sqrt(Σ seᵢ²)/n over them (NaN when
    one of them has no finite stderr)."""
    failed = [e for e in estimates if not _finite(e.get("value"))]
    unconverged = [e for e in estimates if _finite(e.get("value")) and not e.get("converged", True)]
    used = [e for e in estimates if _finite(e.get("value")) and e.get("converged", True)]
    if not used:
        return Pooled(math.nan, math.nan, len(failed), len(unconverged))
    value = float(np.mean([e["value"] for e in used]))
    ses = [e.get("stderr") for e in used]
    se = math.sqrt(sum(s * s for s in ses)) / len(ses) if all(map(_finite, ses)) else math.nan
    return Pooled(value, se, len(failed), len(unconverged))


def training_data_label(result: dict[str, Any]) -> str:
    """Where a result's training samples came from and their charge.

    E.g. ``exact ×500 (500 evals)``; ``none`` when the method trained without data. A flow
    started from another run's generator (``flow.init_from``, a stage ``init``) reads
    ``started from RUN/.../seed0 (2.56e+05 evals)``.
    """
    records = result.get("info", {}).get("training_data") or []
    parts = [_data_part(r) for r in records if r.get("source", "none") != "none"]
    return "; ".join(parts) if parts else "none"


def _data_part(record: dict[str, Any]) -> str:
    charge = f"({record['charged_evals']:.3g} evals)"
    if record.get("stage") == "init":
        return f"started from {record['source']} {charge}"
    return f"{record['source']} ×{record['n']} {charge}"


def overrides_label(result: dict[str, Any]) -> str:
    """The card overrides of a result's system as compact JSON, ``{}`` for none."""
    return json.dumps(result.get("system_overrides") or {}, separators=(",", ":"))


def systems_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """A Markdown list of each system label with its card and overrides (when any has some)."""
    first = {r["system"]: r for r in results}
    if not any(r.get("system_overrides") for r in first.values()):
        return []
    lines = ["Systems (label: card, overrides):", ""]
    for label, r in first.items():
        card = Path(str(r.get("system_card", label))).stem
        lines.append(f"- `{label}`: {card}, {overrides_label(r)}")
    return [*lines, ""]


def held_out_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """A Markdown table of the held-out check of each result that has one.

    Per free energy: the value from the draws, the value by BAR with the reference
    frames, and the states whose draws miss mass (:mod:`boltzgen.metrics.held_out`).
    """
    rows = []
    for r in results:
        check = r.get("metrics", {}).get("held_out")
        if not check:
            continue
        where = f"{r['system']} | {r['method']} | {r['seed']}"
        if "frames_outside_support" in check:
            share = check["frames_outside_support"]
            rows.append(f"| {where} | all | | {share:.2%} of the frames outside the flow | |")
            continue
        missing = [
            f"{name} ({s['gap']:+.2f} ± {s['stderr']:.2f})"
            for name, s in check["states"].items()
            if s.get("misses_mass")
        ]
        for name, fe in check["free_energies"].items():
            draws = r.get("free_energies", {}).get(name, {}).get("value")
            bar = "—" if fe is None else f"{fe['value']:.3f} ± {fe['stderr']:.3f}"
            rows.append(
                f"| {where} | {name} | {_fmt(draws)} | {bar} | {', '.join(missing) or 'none'} |"
            )
    if not rows:
        return []
    return [
        "Held-out check: each generator's ΔF from its draws beside BAR between its draws and",
        "the reference frames, inside each state; a state listed last holds mass the draws",
        "miss (gap ± error, nats). A check against the reference, not the method's estimate.",
        "",
        "| system | method | seed | free energy | draws | BAR with frames | missing mass |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


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
            estimates = [_quantities(r).get(quantity, {}) for r in rs]
            pooled = pool(estimates)
            rows.append(
                Row(
                    system,
                    method,
                    len(rs),
                    ess,
                    ess_se,
                    per_1k,
                    quantity,
                    pooled.value,
                    pooled.stderr,
                    estimates[0].get("reference"),
                    evals,
                    wall,
                    pooled.n_failed,
                    pooled.n_not_converged,
                    unit(quantity),
                    training_data_label(rs[0]),
                    overrides_label(rs[0]),
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


def _fmt_estimate(row: Row) -> str:
    if not math.isfinite(row.value):
        return "not converged" if row.n_not_converged else "not sampled"
    se = f"{row.stderr:.3f}" if math.isfinite(row.stderr) else "–"
    return f"{row.value:.3f} ± {se}"


HEADER = [
    "system",
    "method",
    "seeds",
    "failed",
    "not converged",
    "ESS fraction",
    "ESS / 1k evals",
    "quantity",
    "unit",
    "estimate ± se",
    "reference",
    "(est−ref)/se",
    "evals",
    "wall s",
    "training data",
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
                str(r.n_failed),
                str(r.n_not_converged),
                ess,
                _fmt(r.ess_per_1k_evals),
                r.quantity,
                r.unit,
                _fmt_estimate(r),
                _fmt(r.reference, 5),
                _fmt(r.error_in_se, 2),
                f"{r.energy_evals:.3g}",
                f"{r.wall_s:.1f}",
                r.training_data,
            ]
        )
    return lines


def format_table(rows: Sequence[Row], markdown: bool = False) -> str:
    """A plain-text (aligned) or Markdown rendering of the comparison table."""
    return tables.render(HEADER, table_lines(rows), markdown)


def write_summary_csv(rows: Sequence[Row], path: Path) -> None:
    fields = list(Row.__dataclass_fields__)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*fields, "error_in_se"])
        for r in rows:
            writer.writerow([getattr(r, f) for f in fields] + [r.error_in_se])


def ranking_lines(written: Sequence[Path]) -> list[str]:
    """Where the glass ranking of a run with particle systems is (none written: nothing)."""
    if not written:
        return []
    table, spreadsheet, _ = glass_ranking.FILES
    return [
        "Particle systems: the ranking of the methods by the ESS of U/N per evaluation, with z",
        f"against swap MC, is in [{table}]({table}) and `{spreadsheet}`.",
        "",
    ]


def build_report(run_dir: Path) -> list[Row]:
    """Rebuild ``summary.csv``, ``report.md`` and the plots of ``run_dir`` (and, for particle
    systems, the glass ranking: :mod:`boltzgen.runner.glass_ranking`)."""
    results = load_results(run_dir)
    if not results:
        raise FileNotFoundError(f"{run_dir} holds no */*/seed*/result.json: nothing to report")
    rows = summarize(results)
    write_summary_csv(rows, run_dir / "summary.csv")
    figures = plots.make_plots(run_dir, results)
    ranking = glass_ranking.write_ranking(run_dir, results)
    machine = results[0].get("versions", {})
    lines = [
        f"# Run report: {run_dir.name}",
        "",
        "Estimates are means over the seeds that gave a finite, converged estimate; ± is",
        "their combined standard error. `failed` counts seeds without a finite estimate (a",
        "state never visited), `not converged` seeds flagged by their convergence check;",
        "neither enters the mean. Free energies are in kT, log Z in nats. ESS fraction is",
        "Kish's (Σw)²/(nΣw²) for weighted samples and n/τ_int for MCMC chains. Evaluations",
        "and wall seconds include training and the charge of training data (exact toy",
        "draws: one evaluation each; reference frames: the run's cost per frame).",
        "",
        format_table(rows, markdown=True),
        "",
        *held_out_lines(results),
        *systems_lines(results),
        *ranking_lines(ranking),
        f"Machine: {machine.get('machine', '?')}, torch {machine.get('torch', '?')}, "
        f"{machine.get('threads', '?')} threads per task.",
        "",
    ]
    lines += [f"![{fig.stem}]({fig.name})\n" for fig in [*figures, *glass_ranking.figures(ranking)]]
    (run_dir / "report.md").write_text("\n".join(lines))
    return rows
