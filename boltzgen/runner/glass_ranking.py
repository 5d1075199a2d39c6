"""The glass ranking: samplers on particle systems compared on the energy per particle.

Jung, Biroli & Berthier, "Normalizing flows as an enhanced sampling method for atomistic
supercooled liquids" (arXiv 2404.09914) rank MD, parallel tempering, population annealing,
swap Monte Carlo and a flow along a temperature ladder. One row per (system, temperature,
method): the integrated autocorrelation time τ_int of the energy per particle e = U/N = u·T/N
(in recorded samples; Sokal's window, :mod:`boltzgen.metrics.autocorrelation`), the ESS of
e, ESS per energy evaluation (training included) and per wall second, ⟨e⟩ with its
standard error se = sqrt(var(e)/ESS), and z = (⟨e⟩ − ⟨e⟩_swap)/sqrt(se² + se_swap²)
against swap MC at the same system and temperature.

The ESS follows the layout of the samples (:class:`~boltzgen.records.WeightedSamples`):

* chains (MD, PT, swap and local MC; ``n_chains`` set): n/τ_int of e over all chains;
* independent groups (population annealing; ``n_runs = G`` set): G·var(e)/var(group means
  of e), at most n;
* weighted draws mapped from C step-major chains (the temperature map's hot chains):
  Kish ESS fraction × n/τ_int of e along those chains (draws of zero weight enter τ_int
  at ⟨e⟩); other weighted draws: the Kish ESS.

Chains shorter than 50 τ_int are marked: their τ_int is a lower bound and their ESS an upper
one. τ_int sees only the fluctuations a chain makes, and a chain that never left its start's
basin looks fast; z marks such runs. :func:`write_ranking` writes ``glass_ranking.md``,
``glass_ranking.csv`` and ``glass_ess_per_evaluation.png`` (ESS per evaluation against 1/T)
for the particle-system tasks of a run folder; ``benchmarks/glass_comparison.py`` uses the
same rows for the runs it makes itself.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from boltzgen.metrics import ess_fraction
from boltzgen.metrics.autocorrelation import integrated_time
from boltzgen.records import WeightedSamples
from boltzgen.runner import tables
from boltzgen.runner.system_specs import load_task_system, result_folder_name, spec_of_result

REFERENCE = "swap_mc"
"""The method label every row's ⟨e⟩ is compared with (z)."""
SHORT_CHAIN = 50
"""Chains shorter than this many τ_int are marked ≥ (τ_int) and ≤ (ESS)."""
FILES = ("glass_ranking.md", "glass_ranking.csv", "glass_ess_per_evaluation.png")


@dataclass(frozen=True)
class Measure:
    """τ_int (NaN where not a chain), ESS, ⟨e⟩ and its standard error of e = U/N."""

    tau: float
    ess: float
    mean: float
    stderr: float


def measure(
    samples: WeightedSamples,
    n_particles: int,
    temperature: float,
    draw_chains: int | None = None,
) -> Measure:
    """:class:`Measure` of e = u·T/N of ``samples`` (energies ``[n]``, reduced at T).

    ``draw_chains``: the number of step-major chains whose states weighted independent draws
    map (the temperature map's hot chains); ``None`` for draws without chain structure.
    """
    e = samples.energies.detach().to(torch.float64) * temperature / n_particles
    w = torch.softmax(torch.nan_to_num(samples.log_weights.double(), nan=-torch.inf), 0)
    e = torch.where(w > 0, e, torch.zeros_like(e))
    mean = float((w * e).sum())
    var = float((w * (e - mean) ** 2).sum())
    if samples.n_runs is not None:
        groups = e.reshape(samples.n_runs, -1).mean(1)
        ess = min(e.numel(), var * groups.numel() / max(float(groups.var()), 1e-300))
        return Measure(math.nan, ess, mean, _stderr(var, ess))
    if samples.is_chain:
        tau = integrated_time(samples.chains(e))
        return Measure(tau, e.numel() / tau, mean, _stderr(var, e.numel() / tau))
    kish = ess_fraction(samples.log_weights) * e.numel()
    if draw_chains is None:
        return Measure(math.nan, kish, mean, _stderr(var, kish))
    series = torch.where(w > 0, e, torch.full_like(e, mean)).reshape(-1, draw_chains)
    tau = integrated_time(series)
    return Measure(tau, kish / tau, mean, _stderr(var, kish / tau))


def _stderr(var: float, ess: float) -> float:
    """sqrt(var/ESS); NaN without an effective sample (groups that never differ)."""
    return math.sqrt(var / ess) if ess > 0 else math.nan


@dataclass(frozen=True)
class Row:
    """One (system, temperature, method): per-seed means of ``evals``, ``wall_s`` and
    ``ess``, ⟨e⟩ and ``stderr`` pooled over seeds, ``tau`` in recorded samples (NaN where
    not a chain) and ``per_chain`` the shortest chain's length (0 where not chains)."""

    system: str
    temperature: float
    method: str
    evals: float
    wall_s: float
    tau: float
    ess: float
    mean: float
    stderr: float
    per_chain: int
    n_seeds: int = 1

    @property
    def short(self) -> bool:
        """Chains shorter than 50 τ_int: τ_int is a lower bound and the ESS an upper one."""
        return 0 < self.per_chain < SHORT_CHAIN * self.tau

    @property
    def ess_per_eval(self) -> float:
        return self.ess / max(1.0, self.evals)

    @property
    def ess_per_s(self) -> float:
        return self.ess / self.wall_s if self.wall_s > 0 else math.nan


def row_of(
    system: str,
    temperature: float,
    method: str,
    samples: WeightedSamples,
    n_particles: int,
    draw_chains: int | None = None,
) -> Row:
    """The row of one run's ``samples`` (its cost: evaluations and wall seconds, training
    included)."""
    m = measure(samples, n_particles, temperature, draw_chains)
    per_chain = len(samples) // samples.n_chains if samples.is_chain else 0
    cost = samples.cost
    return Row(
        system,
        temperature,
        method,
        float(cost.total_energy_evals),
        cost.total_wall_s,
        m.tau,
        m.ess,
        m.mean,
        m.stderr,
        per_chain,
    )


def pool(rows: Sequence[Row]) -> Row:
    """Seeds of one (system, temperature, method) as one row.

    ⟨e⟩ = Σ ESS_k ⟨e⟩_k / Σ ESS_k with se = sqrt(Σ ESS_k² se_k²)/Σ ESS_k (the seeds are
    independent); ESS, evaluations, wall seconds and τ_int are means over seeds.
    """
    ess = [r.ess for r in rows]
    total = sum(ess) or math.nan
    mean = sum(e * r.mean for e, r in zip(ess, rows, strict=True)) / total
    se = math.sqrt(sum((e * r.stderr) ** 2 for e, r in zip(ess, rows, strict=True))) / total
    n = len(rows)
    return replace(
        rows[0],
        evals=sum(r.evals for r in rows) / n,
        wall_s=sum(r.wall_s for r in rows) / n,
        tau=sum(r.tau for r in rows) / n,
        ess=sum(ess) / n,
        mean=mean,
        stderr=se,
        per_chain=min(r.per_chain for r in rows),
        n_seeds=n,
    )


def z_scores(rows: Sequence[Row], reference: str = REFERENCE) -> list[float | None]:
    """(⟨e⟩ − ⟨e⟩_ref)/sqrt(se² + se_ref²) per row; ``None`` for the reference itself and
    where the reference did not run at that system and temperature."""
    refs = {(r.system, r.temperature): r for r in rows if r.method == reference}
    out: list[float | None] = []
    for r in rows:
        ref = refs.get((r.system, r.temperature))
        if ref is None or r.method == reference:
            out.append(None)
            continue
        se = math.hypot(r.stderr, ref.stderr)
        out.append((r.mean - ref.mean) / se if se > 0 else math.nan)
    return out


def system_label(result: dict[str, Any]) -> str:
    """A result's system label without its temperature (``name-temperature0.6`` → ``name``)."""
    temperature = (result.get("system_overrides") or {}).get("temperature")
    label = str(result["system"])
    return label if temperature is None else label.replace(f"-temperature{temperature}", "")


def _maybe_particles(result: dict[str, Any]) -> bool:
    """A cheap look before building the system: a particle energy or ⟨U/N⟩ reported."""
    energy = result.get("config", {}).get("energy")
    return energy == "ParticleEnergy" or "energy_per_particle" in result.get("observables", {})


def _particle_systems(results: Iterable[dict[str, Any]]) -> dict[str, tuple[int, float]]:
    """``{system label: (N, T)}`` of every particle system (one with ``species``) among
    ``results``."""
    out: dict[str, tuple[int, float]] = {}
    for r in results:
        if r["system"] in out or not _maybe_particles(r):
            continue
        system = load_task_system(spec_of_result(r))
        try:
            if system.species is not None:
                out[r["system"]] = (int(system.species.numel()), float(system.temperature))
        finally:
            system.energy.close()
    return out


def rows_from_run(run_dir: Path, results: Sequence[dict[str, Any]]) -> list[Row]:
    """The ranking of the particle-system tasks among ``results`` (``result.json`` records of
    ``run_dir``), read with their ``samples.npz``; seeds pooled (:func:`pool`).

    Rows run from the hottest temperature down, methods in the order of ``results``.
    """
    systems = _particle_systems(results)
    seeds: dict[tuple[str, float, str], list[Row]] = defaultdict(list)
    for r in results:
        if r["system"] not in systems:
            continue
        n_particles, temperature = systems[r["system"]]
        folder = run_dir / result_folder_name(r) / r["method"] / f"seed{r['seed']}"
        samples = WeightedSamples.load(folder)
        draw_chains = r.get("config", {}).get("n_hot_chains")
        row = row_of(system_label(r), temperature, r["method"], samples, n_particles, draw_chains)
        seeds[(row.system, row.temperature, row.method)].append(row)
    rows = [pool(group) for group in seeds.values()]
    return sorted(rows, key=lambda r: (r.system, -r.temperature))


def _bounded(value: float, mark: str, short: bool, fmt: str) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{mark if short else ''}{value:{fmt}}"


HEADER = [
    "system",
    "T",
    "method",
    "seeds",
    "evals",
    "wall s",
    "τ_int",
    "ESS",
    "ESS/eval",
    "ESS/s",
    "⟨U/N⟩ ± se",
    f"z vs {REFERENCE}",
]


def table_cells(rows: Sequence[Row], reference: str = REFERENCE) -> list[list[str]]:
    """The ranking as strings, one list per row (columns of :data:`HEADER`)."""
    cells = []
    for r, z in zip(rows, z_scores(rows, reference), strict=True):
        cells.append(
            [
                r.system,
                f"{r.temperature:g}",
                r.method,
                str(r.n_seeds),
                f"{r.evals:.0f}",
                f"{r.wall_s:.1f}",
                _bounded(r.tau, "≥ ", r.short, ".1f"),
                _bounded(r.ess, "≤ ", r.short, ".1f"),
                _bounded(r.ess_per_eval, "≤ ", r.short, ".2e"),
                _bounded(r.ess_per_s, "≤ ", r.short, ".2e"),
                f"{r.mean:.4f} ± {r.stderr:.4f}",
                "—" if z is None else f"{z:+.1f}",
            ]
        )
    return cells


def format_table(rows: Sequence[Row], markdown: bool = False) -> str:
    """The ranking as an aligned text table or a Markdown table."""
    return tables.render(HEADER, table_cells(rows), markdown)


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """Every field of the rows, then ESS per evaluation and per second, ``short`` and z."""
    names = [f.name for f in fields(Row)]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*names, "ess_per_eval", "ess_per_s", "short", f"z_vs_{REFERENCE}"])
        for r, z in zip(rows, z_scores(rows), strict=True):
            extra = [r.ess_per_eval, r.ess_per_s, r.short, "" if z is None else z]
            writer.writerow([getattr(r, n) for n in names] + extra)


def read_csv(path: Path) -> list[Row]:
    """The rows :func:`write_csv` wrote (or an older file with fewer columns)."""
    casts = {f.name: {"str": str, "float": float, "int": int}[str(f.type)] for f in fields(Row)}
    with path.open() as handle:
        return [
            Row(**{k: casts[k](v) for k, v in line.items() if k in casts})
            for line in csv.DictReader(handle)
        ]


def plot(rows: Sequence[Row], path: Path) -> Path:
    """ESS per evaluation against 1/T, one panel per system, one line per method; open
    markers where the chains were shorter than 50 τ_int (the ESS only an upper bound)."""
    names = sorted({r.system for r in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        mine = [r for r in rows if r.system == name]
        for method in dict.fromkeys(r.method for r in mine):
            line = sorted((r for r in mine if r.method == method), key=lambda r: r.temperature)
            x = [1 / r.temperature for r in line]
            y = [r.ess_per_eval for r in line]
            drawn = ax.plot(x, y, "-", label=method)[0]
            for xi, yi, r in zip(x, y, line, strict=True):
                face = "white" if r.short else drawn.get_color()
                ax.plot(xi, yi, "o", color=drawn.get_color(), markerfacecolor=face)
        ax.set(yscale="log", xlabel="1/T", ylabel="ESS of U/N per energy evaluation")
        ax.set_title(f"{name} (open: upper bounds)", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


EXPLANATION = [
    "One row per particle system, temperature and method. τ_int is the integrated",
    "autocorrelation time of the energy per particle e = U/N in recorded samples; ESS is",
    "n/τ_int over all chains (MD, PT, swap and local MC), G·var(e)/var(group means) over",
    "population annealing's G independent groups, or the Kish ESS fraction × n/τ_int along",
    "the hot chains (temperature map). ≥/≤ mark chains shorter than 50 τ_int (τ_int a lower",
    "bound, ESS an upper one). Evaluations and wall seconds include training; with several",
    "seeds they and the ESS are means per seed, and ⟨U/N⟩ pools the seeds. z is",
    f"(⟨U/N⟩ − ⟨U/N⟩_{REFERENCE})/(combined se): a large |z| marks a run that has not",
    "equilibrated, whatever its τ_int says.",
]


def write_ranking(run_dir: Path, results: Sequence[dict[str, Any]]) -> list[Path]:
    """Write :data:`FILES` into ``run_dir`` when ``results`` hold particle-system tasks.

    Returns the paths written (none for a run without particle systems).
    """
    rows = rows_from_run(run_dir, results)
    if not rows:
        return []
    table, spreadsheet, figure = (run_dir / name for name in FILES)
    title = f"# Glass ranking: {run_dir.name}"
    table.write_text("\n".join([title, "", *EXPLANATION, "", format_table(rows, True), ""]))
    write_csv(rows, spreadsheet)
    plot(rows, figure)
    return [table, spreadsheet, figure]


def figures(written: Sequence[Path]) -> list[Path]:
    """The figures among the files :func:`write_ranking` wrote."""
    return [p for p in written if p.suffix == ".png"]
