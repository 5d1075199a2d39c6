"""Time to a free energy: from which budget on a method *stays* within a tolerance of ΔF.

The analysis of ``benchmarks/time_to_free_energy.py`` (docs/time_to_free_energy.md). Each
task of a ladder of budgets b₁ < b₂ < … (target evaluations, training and its data
included) gives one :class:`Row` per free energy. A method stays within t kT from b when
every seed's |ΔF − reference| ≤ t at b and at every larger budget of the ladder; its ratio
to a baseline (MD, parallel tempering) is that budget over the baseline's.

The amortised view: a trained generator reused for a second ΔF costs only its sampling.
Its *amortised* budget is the largest number of sampling evaluations (training and its
data left out) any seed spent at the budget from which the method stays within t. The
generator is trained once per seed and loaded at every budget, so the sampling
evaluations grow with the budget and the "stays" property carries over.

Also here: the reference gate's reasons to refuse a reference ΔF, and which PT set the
flow methods' training data (``train: {data: pt}``) needs and the command that makes it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boltzgen.records.reference_sets import reference_dir
from boltzgen.reference.pt_checkpoint import checkpoint_path

TOLERANCES = (0.2, 0.1)
Ratio = tuple[float, bool] | None
"""A budget over a baseline's, and whether it is only an upper bound (baseline not reached)."""


@dataclass(frozen=True)
class Row:
    """One free energy of one task (``value`` NaN where the run never sampled a state).

    ``energy_evals`` counts every target evaluation (energy and force, training and its
    data included); ``sample_evals`` only the sampling's (what a trained generator costs
    when it is reused).
    """

    system: str
    method: str
    budget: int
    seed: int
    free_energy: str
    energy_evals: int
    wall_s: float
    value: float
    stderr: float
    reference: float
    abs_error: float
    converged: bool
    ess_fraction: float
    e_w2: float
    t_w2: float
    sample_evals: int


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


MBAR_SUFFIX = ", MBAR"
"""Appended to a ladder method's label for its rows from MBAR over every temperature."""


def rows_of(result: Mapping[str, Any], budget: int) -> list[Row]:
    """One :class:`Row` per free energy of a ``result.json`` record.

    A ladder method (parallel tempering, TSF replica exchange) gives a second row per free
    energy, labelled ``<method>, MBAR``: its estimate by MBAR over every temperature
    (``info.mbar_free_energies``, the estimator of the PT reference sets), beside the one
    from the lowest temperature's samples alone. Such a row has no convergence flag
    (``converged`` False).
    """
    out = _rows(result, budget, result["method"], result["free_energies"])
    mbar = (result.get("info") or {}).get("mbar_free_energies") or {}
    for name, fe in mbar.items():
        reference = result["free_energies"].get(name, {}).get("reference")
        entry = {"value": fe.get("value"), "stderr": fe.get("stderr"), "reference": reference}
        out += _rows(result, budget, result["method"] + MBAR_SUFFIX, {name: entry})
    return out


def _rows(
    result: Mapping[str, Any], budget: int, method: str, free_energies: Mapping[str, Any]
) -> list[Row]:
    cost, metrics = result["cost"], result.get("metrics", {})
    sampling = sum(int(cost.get(k, 0)) for k in ("energy_evals", "force_evals"))
    training = sum(int(cost.get(k, 0)) for k in ("train_energy_evals", "train_force_evals"))
    wall = float(cost.get("wall_s", 0.0)) + float(cost.get("train_wall_s", 0.0))
    out = []
    for name, fe in free_energies.items():
        value, reference = _number(fe.get("value")), _number(fe.get("reference"))
        out.append(
            Row(
                system=result["system"],
                method=method,
                budget=budget,
                seed=int(result["seed"]),
                free_energy=name,
                energy_evals=sampling + training,
                wall_s=wall,
                value=value,
                stderr=_number(fe.get("stderr")),
                reference=reference,
                abs_error=abs(value - reference),
                converged=bool(fe.get("converged")),
                ess_fraction=_number(result.get("ess_fraction")),
                e_w2=_number(metrics.get("e_w2")),
                t_w2=_number(metrics.get("t_w2")),
                sample_evals=sampling,
            )
        )
    return out


def within(rows: Sequence[Row], tolerance: float, n_seeds: int | None = None) -> bool:
    """Whether every seed's |ΔF − reference| is ≤ ``tolerance`` (and, given ``n_seeds``,
    every seed has a result): rows of one method at one budget."""
    if not rows or (n_seeds is not None and len({r.seed for r in rows}) < n_seeds):
        return False
    return all(math.isfinite(r.abs_error) and r.abs_error <= tolerance for r in rows)


def stays_within_from(
    rows: Sequence[Row], budgets: Sequence[int], tolerance: float, n_seeds: int | None = None
) -> int | None:
    """The smallest budget b of the ladder such that :func:`within` holds at b and at every
    larger budget (rows of one method and free energy); ``None``: not reached.

    A method that enters the band and leaves it again at a larger budget has not reached it
    at the entry budget, only (if at all) from where it stays.
    """
    found = None
    for budget in sorted(budgets, reverse=True):
        if not within([r for r in rows if r.budget == budget], tolerance, n_seeds):
            break
        found = budget
    return found


def trains(rows: Sequence[Row]) -> bool:
    """Whether the rows' method pays for training or data (some evaluations not sampling)."""
    return any(r.energy_evals > r.sample_evals for r in rows)


def amortised(
    rows: Sequence[Row], budgets: Sequence[int], tolerance: float, n_seeds: int | None = None
) -> int | None:
    """Sampling evaluations from which a trained method stays within ``tolerance``: the
    largest ``sample_evals`` over the seeds at :func:`stays_within_from`'s budget
    (``None``: not reached, or a method without training, whose cost is all sampling)."""
    budget = stays_within_from(rows, budgets, tolerance, n_seeds)
    if budget is None or not trains(rows):
        return None
    return max(r.sample_evals for r in rows if r.budget == budget)


def ratio(budget: int | None, baseline: int | None, top: int | None = None) -> Ratio:
    """``(budget / baseline, False)``; ``(budget / top, True)``, an upper bound, when the
    baseline is not reached on a ladder whose largest budget is ``top`` (it would need more);
    ``None`` when the method is not reached, or the baseline is absent (``top`` None)."""
    if budget is None:
        return None
    if baseline is not None:
        return budget / baseline, False
    return None if top is None else (budget / top, True)


@dataclass(frozen=True)
class Projection:
    """Where a method would stay within a tolerance if its error were purely statistical.

    At ``from_budget`` b₀, the largest budget of the ladder at which enough seeds ran and
    every one of them sampled every state, their root-mean-square error is ``rms`` σ₀.
    Of b₀, ``fixed`` f evaluations paid for training and its data (0 for a sampler that
    does not train; the largest over the seeds) and s₀ = b₀ − f for sampling. Only the
    sampling lowers the error: with σ(s) = σ₀ √(s₀ / s) (independent, unbiased
    estimates), all ``n_seeds`` seeds' |ΔF − reference| lie within t with probability
    ``confidence`` c from

        b = f + s₀ (z σ₀ / t)²,   z = Φ⁻¹((1 + c^(1/n)) / 2)

    (each |error| is half-normal: P(|e| ≤ zσ) = 2Φ(z) − 1); for f = 0, b = b₀ (z σ₀ / t)².
    A generator's error that does not shrink with more draws (a state under-weighted by
    the flow), a chain not yet equilibrated at b₀, any bias makes the projection too
    optimistic; it is a forecast, never a measurement.
    """

    budget: float
    from_budget: int
    rms: float
    n_seeds: int
    confidence: float
    fixed: int = 0


def seeds_quantile(n_seeds: int, confidence: float) -> float:
    """z such that ``n_seeds`` independent |N(0, σ²)| errors are all ≤ zσ with probability
    ``confidence``."""
    from scipy.stats import norm

    if n_seeds < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need n_seeds ≥ 1 and 0 < confidence < 1, got {n_seeds}, {confidence}")
    return float(norm.ppf(0.5 * (1.0 + confidence ** (1.0 / n_seeds))))


def projected_budget(
    rows: Sequence[Row],
    tolerance: float,
    n_seeds: int | None = None,
    confidence: float = 0.9,
    min_seeds: int = 3,
) -> Projection | None:
    """:class:`Projection` of one method's rows (one free energy) to ``tolerance``: from the
    largest budget where at least ``min_seeds`` seeds (fewer only if ``n_seeds`` is smaller)
    ran and every one of them sampled every state, for all ``n_seeds`` seeds (else the most
    any budget has) to lie within it, its training kept fixed; ``None`` where no budget
    qualifies."""
    seeds = {b: {r.seed for r in rows if r.budget == b} for b in {r.budget for r in rows}}
    want = n_seeds or max(map(len, seeds.values()), default=0)
    enough = min(min_seeds, want)
    full = [
        b
        for b, found in seeds.items()
        if len(found) >= enough > 0
        and all(math.isfinite(r.abs_error) for r in rows if r.budget == b)
    ]
    if not full:
        return None
    b0 = max(full)
    at = [r for r in rows if r.budget == b0]
    rms = math.sqrt(sum(r.abs_error**2 for r in at) / len(at))
    fixed = min(b0, max(r.energy_evals - r.sample_evals for r in at))
    z = seeds_quantile(want, confidence)
    budget = fixed + (b0 - fixed) * (z * rms / tolerance) ** 2
    return Projection(budget, b0, rms, want, confidence, fixed)


@dataclass(frozen=True)
class Summary:
    """One method's entry of the report for one system and free energy: the budget from
    which it stays within each tolerance, its ratios to MD and PT, and the same for its
    amortised budget (sampling only; ``None`` for a method without training)."""

    system: str
    free_energy: str
    method: str
    reached: dict[float, int | None]
    vs_md: dict[float, Ratio]
    vs_pt: dict[float, Ratio]
    amortised: dict[float, int | None]
    amortised_vs_pt: dict[float, Ratio]
    trains: bool
    projected: dict[float, Projection | None]
    """Per tolerance not reached on the ladder, the :class:`Projection` (else ``None``)."""


def _method_summaries(
    rows: Sequence[Row],
    budgets: Sequence[int],
    tolerances: Sequence[float],
    md: str,
    pt: str,
    n_seeds: int | None,
) -> list[Summary]:
    """:func:`summarise` for the rows of one system and free energy."""
    by_method = {
        m: [r for r in rows if r.method == m] for m in dict.fromkeys(r.method for r in rows)
    }
    reached = {
        m: {t: stays_within_from(mine, budgets, t, n_seeds) for t in tolerances}
        for m, mine in by_method.items()
    }
    top, out = max(budgets), []

    def vs(found: Mapping[float, int | None], base: str) -> dict[float, Ratio]:
        known = base in reached
        return {t: ratio(found[t], reached[base][t], top) if known else None for t in tolerances}

    for m, found in reached.items():
        cheap = {t: amortised(by_method[m], budgets, t, n_seeds) for t in tolerances}
        system, name, trained = rows[0].system, rows[0].free_energy, trains(by_method[m])
        ahead = {
            t: None if found[t] is not None else projected_budget(by_method[m], t, n_seeds)
            for t in tolerances
        }
        out.append(
            Summary(
                system,
                name,
                m,
                found,
                vs(found, md),
                vs(found, pt),
                cheap,
                vs(cheap, pt),
                trained,
                ahead,
            )
        )
    return out


def summarise(
    rows: Sequence[Row],
    budgets: Sequence[int],
    tolerances: Sequence[float] = TOLERANCES,
    md: str = "md",
    pt: str = "parallel_tempering",
    n_seeds: int | None = None,
) -> list[Summary]:
    """Per (system, free energy, method): the budget from which it stays within each
    tolerance, its ratio to ``md``'s and ``pt``'s (methods named by label), its
    amortised budget with its ratio to ``pt``'s full budget, and, for each tolerance it does
    not reach, the budget projected from its largest (:func:`projected_budget`)."""
    out = []
    for system, name in dict.fromkeys((r.system, r.free_energy) for r in rows):
        mine = [r for r in rows if r.system == system and r.free_energy == name]
        out += _method_summaries(mine, budgets, tolerances, md, pt, n_seeds)
    return out


# --------------------------------------------------------------------------- reference gate


def reference_problems(estimates: Mapping[str, Any], max_stderr: float) -> list[str]:
    """Why each reference ΔF (a :class:`~boltzgen.systems.references.ReferenceValue`) is
    too weak to score against: missing, without a stderr, or a stderr above ``max_stderr``."""
    problems = []
    for name, ref in estimates.items():
        if ref.value is None or ref.stderr is None:
            problems.append(f"{name}: no reference value ({ref.note})")
        elif not ref.stderr <= max_stderr:
            problems.append(
                f"{name}: {ref.value:.3f} ± {ref.stderr:.3f} kT ({ref.note}); "
                f"its stderr is above {max_stderr} kT"
            )
    return problems


def better_reference_command(system: Any, max_stderr: float) -> str:
    """The command that would make a reference strong enough: the stored run made
    (stderr / target)² times longer (stderr ∝ 1/√length), or a long first run."""
    kind = system.free_energies_from or system.reference_kind
    base = f"boltzgen reference {system.name} --method {kind}"
    stored = system.stored_reference().data if kind in ("md", "pt") else None
    worst = max(
        (r.stderr for r in system.reference_estimates().values() if r.stderr is not None),
        default=None,
    )
    factor = None if stored is None or worst is None else (worst / max_stderr) ** 2
    if kind == "md":
        ns = 100.0 if factor is None else factor * float(stored.manifest["settings"]["ns"])
        return f"{base} --ns {math.ceil(ns)}"
    wall = 36_000.0 if factor is None else factor * float(stored.manifest["cost"]["wall_s"])
    if factor is not None and kind == "pt" and checkpoint_path(stored_dir(system)).exists():
        return resume_command(base, stored.manifest, factor, wall)
    return f"{base} --backend torch --max-minutes {math.ceil(wall / 60)}"


PT_FLAGS = {
    "n_temperatures": "--temperatures",
    "t_max": "--t-max",
    "n_chains": "--chains",
    "n_leapfrog": "--steps-per-iteration",
    "step_size": "--step-size",
    "n_discard": "--discard",
    "n_frames": "--frames",
    "seed": "--seed",
    "move": "--move",
    "thin": "--thin",
    "dtype": "--dtype",
    "device": "--device",
}
"""The torch PT settings a resumed run must repeat, and their command-line flags."""


def resume_command(base: str, manifest: Mapping[str, Any], factor: float, wall: float) -> str:
    """The command that continues a checkpointed torch PT reference ``factor`` times as
    long in all: its own settings, ``--resume`` and the new total of iterations."""
    settings = manifest["settings"]
    flags = [
        f"{flag} {settings[key]}" for key, flag in PT_FLAGS.items() if settings.get(key) is not None
    ]
    total = math.ceil(factor * int(manifest["iterations_run"]))
    remaining = math.ceil(wall * (1 - 1 / factor) / 60)
    return (
        f"{base} --backend torch {' '.join(flags)} --iterations {total} "
        f"--max-minutes {remaining} --resume"
    )


def stored_dir(system: Any) -> Path:
    """The folder of the system's PT reference set."""
    return reference_dir(system.name, "pt")


def gate(specs: Sequence[Any], max_stderr: float, backend: str | None) -> list[str]:
    """One line per system whose reference is refused (empty: every reference passes)."""
    from boltzgen.runner.system_specs import load_task_system

    lines = []
    for spec in specs:
        system = load_task_system(spec, backend=backend)
        try:
            problems = reference_problems(system.reference_estimates(), max_stderr)
            if problems:
                lines.append(
                    f"{spec.label}: reference refused: {'; '.join(problems)}. "
                    f"A stronger one: {better_reference_command(system, max_stderr)}"
                )
        finally:
            system.energy.close()
    return lines


# --------------------------------------------------------------------------- training data


def _train_data(params: Mapping[str, Any]) -> str | None:
    """``train.data`` of one method's settings (or of its ``generator``)."""
    train = params.get("train") or (params.get("generator") or {}).get("train") or {}
    return train.get("data")


def needs_pt_data(raw: Mapping[str, Any]) -> bool:
    """Whether a method of the experiment trains on the system's PT set (``data: pt``)."""
    return any(_train_data(params) == "pt" for params in raw["methods"].values())


def system_name(entry: Any) -> str:
    """The system name of one ``systems`` entry (its card's stem)."""
    return Path(str(entry["name"] if isinstance(entry, Mapping) else entry)).stem


def pt_data_command(name: str, settings: Mapping[str, Any], data: Path) -> list[str]:
    """The ``boltzgen reference`` arguments that make system ``name``'s torch PT set in
    ``data`` (``settings``: the file's ``pt_data``, option names with ``_`` for ``-``)."""
    args = ["reference", name, "--method", "pt", "--backend", "torch"]
    for key, value in settings.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return [*args, "--data", str(data)]


def median_band(values: Iterable[float]) -> tuple[float, float, float]:
    """(median, smallest, largest) of the finite values; NaNs when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, math.nan
    return statistics.median(finite), min(finite), max(finite)


def curve(rows: Sequence[Row], x: str) -> list[tuple[float, float, float, float]]:
    """(median x, median |error|, smallest, largest) per budget of one method's rows."""
    points = []
    for budget in sorted({r.budget for r in rows}):
        at = [r for r in rows if r.budget == budget]
        err = median_band(r.abs_error for r in at)
        if math.isfinite(err[0]):
            points.append((median_band(getattr(r, x) for r in at)[0], *err))
    return points
