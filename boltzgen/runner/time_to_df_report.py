"""The markdown of ``benchmarks/time_to_free_energy.py``'s ``report.md``.

Tables from the :mod:`boltzgen.runner.time_to_df` analysis: the budget from which each
method stays within each tolerance with its ratios to MD and PT, the projections for the
tolerances a method misses, the amortised view, the per-budget details and what was left
out (docs/time_to_free_energy.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from boltzgen.runner.time_to_df import (
    TOLERANCES,
    Projection,
    Ratio,
    Row,
    Summary,
    median_band,
    summarise,
)

MAX_REFERENCE_STDERR = 0.05
"""The reference gate's default: the largest stderr (kT) of a reference ΔF scored against."""
OPENMM_ONLY = "needs an OpenMM system, which this system does not have"


def _budget(b: int | None) -> str:
    return "not reached" if b is None else f"{b:.0e}"


def _evals(n: int | None) -> str:
    return "not reached" if n is None else f"{n:.2g}"


def _ratio(r: Ratio) -> str:
    return "–" if r is None else ("< " if r[1] else "") + f"{r[0]:.3g}"


def summary_table(summaries: Sequence[Summary], tolerances: Sequence[float]) -> list[str]:
    head = "| method | " + " | ".join(f"stays within {t} kT from | ÷ MD | ÷ PT" for t in tolerances)
    lines = [head + " |", "|---" * (1 + 3 * len(tolerances)) + "|"]
    for s in summaries:
        cells = [
            f"{_budget(s.reached[t])} | {_ratio(s.vs_md[t])} | {_ratio(s.vs_pt[t])}"
            for t in tolerances
        ]
        lines.append(f"| {s.method} | " + " | ".join(cells) + " |")
    return lines


def amortised_table(summaries: Sequence[Summary], tolerances: Sequence[float]) -> list[str]:
    """The methods that train: sampling evaluations (training and its data already paid)
    from which they stay within each tolerance, and that over PT's full budget."""
    head = "| method | " + " | ".join(
        f"amortised (training already paid): within {t} kT from | ÷ PT" for t in tolerances
    )
    lines = [head + " |", "|---" * (1 + 2 * len(tolerances)) + "|"]
    for s in (s for s in summaries if s.trains):
        cells = [f"{_evals(s.amortised[t])} | {_ratio(s.amortised_vs_pt[t])}" for t in tolerances]
        lines.append(f"| {s.method} | " + " | ".join(cells) + " |")
    return lines


def _projected(p: Projection | None) -> str:
    if p is None:
        return "no budget where 3 seeds ran and each sampled every state"
    trained = f", {p.fixed:.2g} of it training" if p.fixed else ""
    return f"≈ {p.budget:.1e} (from {p.from_budget:.0e}{trained}, RMS error {p.rms:.3g} kT)"


def projection_lines(summaries: Sequence[Summary], pt: str) -> list[str]:
    """Where each method that misses a tolerance on the ladder would reach it (projected,
    not measured), and a reached budget over PT's projection where PT misses."""
    if not any(p is not None for s in summaries for p in s.projected.values()):
        return []
    base = next((s.projected for s in summaries if s.method == pt), {})
    lines = [
        "Projected, not measured: the budget from which all seeds would lie within the "
        "tolerance with 90 % probability if the root-mean-square error at the largest "
        "budget where at least 3 seeds ran and each sampled every state fell as "
        "1/√(sampling evaluations), training and its data kept as they were "
        "(`projected_budget`; a bias makes it too optimistic). For a method "
        "within the tolerance where PT is not: its budget over PT's projection.",
        "",
        "| method | " + " | ".join(f"within {t} kT" for t in TOLERANCES) + " |",
        "|---" * (1 + len(TOLERANCES)) + "|",
    ]
    for s in summaries:
        cells = []
        for t in TOLERANCES:
            found, ahead = s.reached[t], base.get(t)
            if found is None:
                cells.append(_projected(s.projected[t]))
            elif ahead is not None and s.method != pt:
                cells.append(
                    f"{found:.0e} measured; ÷ PT's projection ≈ {found / ahead.budget:.2g}"
                )
            else:
                cells.append(f"{found:.0e} measured")
        lines.append(f"| {s.method} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _cell(at: Sequence[Row]) -> str:
    med, low, high = median_band(r.abs_error for r in at)
    if not at:
        return ""
    conv = sum(r.converged for r in at)
    wall = median_band(r.wall_s for r in at)[0]
    if not math.isfinite(med):
        return f"never sampled a state, {wall:.0f} s"
    return f"{med:.3f} ({low:.3f}–{high:.3f}), {conv}/{len(at)} conv., {wall:.0f} s"


def _skipped_for(system: str, budget: int, skipped: Mapping) -> dict[str, str]:
    """{method: why} left out for ``system`` (a run label) at ``budget``."""
    return next(
        (
            why
            for (entry, b), why in skipped.items()
            if b == budget and (entry == system or system.startswith(entry + "-"))
        ),
        {},
    )


def detail_table(
    system: str, rows: Sequence[Row], budgets: Sequence[int], skipped: Mapping
) -> list[str]:
    """Median |error| (smallest–largest), converged seeds and median wall s per budget."""
    methods = dict.fromkeys(r.method for r in rows)
    for b in budgets:
        methods.update(dict.fromkeys(_skipped_for(system, b, skipped)))
    lines = ["| method | " + " | ".join(f"{b:.0e}" for b in budgets) + " |"]
    lines.append("|---" * (1 + len(budgets)) + "|")
    for method in methods:
        cells = []
        for b in budgets:
            at = [r for r in rows if r.method == method and r.budget == b]
            why = _skipped_for(system, b, skipped).get(method)
            left = "–" if why is None else "not run" if why == OPENMM_ONLY else "does not fit"
            cells.append(_cell(at) if at else left)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


@dataclass(frozen=True)
class Plan:
    """What a run of the benchmark covered (kept in ``OUT/plan.json`` for ``--report-only``)."""

    budgets: list[int]
    n_seeds: int
    md: str
    pt: str
    command: str
    references: dict[str, dict[str, list[Any]]]
    weak_reference: bool
    include: list[str] = field(default_factory=list)
    """Other OUT folders whose results belong to this ladder (pieces run separately, e.g.
    one batch job per seed), read by every report."""


def _left_out_lines(skipped: Mapping) -> list[str]:
    reasons: dict[tuple[str, str], list[int]] = {}
    for (entry, budget), methods in sorted(skipped.items(), key=lambda kv: kv[0][1]):
        for method, why in methods.items():
            reasons.setdefault((f"{entry}: {method}", why), []).append(budget)
    return [
        f"- {what} at {', '.join(f'{b:.0e}' for b in budgets)}: {why}"
        for (what, why), budgets in reasons.items()
    ]


def _summary_lines(summaries: Sequence[Summary], pt: str) -> list[str]:
    """The stays-within table, the projections, the amortised table (methods that train)
    and the caption of the per-budget table, for one system and free energy."""
    lines = [*summary_table(summaries, TOLERANCES), ""]
    lines += projection_lines(summaries, pt)
    if any(s.trains for s in summaries):
        lines += [
            "Amortised (training already paid): a trained generator reused for a second "
            "ΔF costs only its sampling. The largest number of sampling evaluations over "
            "the seeds at the budget from which the method stays within the tolerance, "
            "and that over PT's full budget (dashed curves in the figure):",
            "",
            *amortised_table(summaries, TOLERANCES),
            "",
        ]
    return [
        *lines,
        "Median |ΔF − reference| in kT (smallest–largest over seeds), seeds whose estimate "
        "is flagged converged, median wall seconds (training included):",
        "",
    ]


def report_text(rows: Sequence[Row], plan: Plan, skipped: Mapping) -> str:
    """``report.md``: the stays-within table, the per-budget details and what was left out."""
    lines = ["# Energy evaluations and wall time to a free energy", ""]
    lines += [f"Command: `{plan.command}`", ""]
    if plan.include:
        lines += ["With the results of: " + ", ".join(f"`{p}`" for p in plan.include), ""]
    if plan.weak_reference:
        lines += [
            "**WEAK REFERENCE**: a reference below failed the gate (stderr above "
            f"{MAX_REFERENCE_STDERR} kT) and was allowed by `--allow-weak-reference`; "
            "errors below that reference's stderr mean nothing.",
            "",
        ]
    for system, refs in plan.references.items():
        for name, (value, stderr, note) in refs.items():
            shown = "none" if value is None else f"{value:.4f} ± {stderr or 0:.4f} kT"
            lines.append(f"Reference {system} {name}: {shown} ({note})")
    lines += [
        "",
        f"A method *stays within* t kT from budget b when all {plan.n_seeds} seeds' "
        "|ΔF − reference| ≤ t at b and at every larger budget of the ladder "
        f"({', '.join(f'{b:.0e}' for b in plan.budgets)} target evaluations, training and "
        f"its data included). ÷ MD and ÷ PT: that budget over `{plan.md}`'s and `{plan.pt}`'s.",
        "",
        "![error against cost](error_vs_evals.png)",
        "",
    ]
    summaries = summarise(rows, plan.budgets, TOLERANCES, plan.md, plan.pt, plan.n_seeds)
    for system, name in dict.fromkeys((r.system, r.free_energy) for r in rows):
        lines += [f"## {system}: {name}", ""]
        mine = [s for s in summaries if s.system == system and s.free_energy == name]
        lines += _summary_lines(mine, plan.pt)
        chosen = [r for r in rows if r.system == system and r.free_energy == name]
        lines += [*detail_table(system, chosen, plan.budgets, skipped), ""]
    left = _left_out_lines(skipped)
    if left:
        lines += ["## Left out", "", *left, ""]
    return "\n".join(lines)
