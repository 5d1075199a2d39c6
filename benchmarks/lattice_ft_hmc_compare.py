"""FT-HMC against plain HMC across β, from several ``lattice_ft_hmc_scan.py`` runs.

Each scan measures one or a few β with one flow and one trajectory length; the comparison
the FT-HMC goal asks for (τ_int(Q) at equal energy evaluations, at the largest β where plain
HMC still moves Q) takes the best plain-HMC figure at each β from any run and sets each
FT-HMC figure against it:

    ratio(β) = min over HMC runs of evals/indep  /  FT-HMC evals/indep,

where evals/indep = τ_int(Q) × force evaluations per trajectory (Foreman et al., arXiv
2112.01586, compare τ_int at equal cost the same way). Where FT-HMC's τ_int is only a lower
bound (its Sokal window reached the run length) the ratio is an upper bound, printed ``≤``;
where HMC's is, the ratio is a lower bound, ``≥``; both, ``?``.

    python benchmarks/lattice_ft_hmc_compare.py runs/scan_b5_ft150 runs/scan_b5_hmc_lf20 \\
        runs/scan_b6_ft150_long runs/scan_b6_hmc_lf20 --out docs/assets/lattice_ft_hmc_vs_beta.png

Prints one line per β and method run, and writes the plot of evaluations per independent Q
against β (lower bounds drawn as open markers with an upward caret).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

HMC_METHODS = ("hmc", "hmc_long")


@dataclass(frozen=True)
class Point:
    """One method's cost per independent Q at one β, from one scan."""

    L: int
    beta: float
    method: str
    n_leapfrog: int
    cost: float
    lower_bound: bool
    source: str


def read_points(paths: list[Path]) -> list[Point]:
    """Every (β, method) figure of the scans' ``scan.json`` files."""
    points = []
    for path in paths:
        scan = json.loads((path / "scan.json" if path.is_dir() else path).read_text())
        args = scan["args"]
        for row in scan["rows"]:
            for method, r in row.items():
                if not isinstance(r, dict) or "evals_per_independent_q" not in r:
                    continue  # β, the retraining record
                lf = args["n_leapfrog"]
                if method == "ft_hmc":
                    lf = args.get("ft_n_leapfrog") or lf
                elif method == "flow_mcmc":
                    lf = 1
                points.append(
                    Point(
                        L=int(args["L"]),
                        beta=float(row["beta"]),
                        method=method,
                        n_leapfrog=int(lf),
                        cost=float(r["evals_per_independent_q"]),
                        lower_bound=bool(r["tau_q_lower_bound"]),
                        source=str(path),
                    )
                )
    return points


def best(points: list[Point]) -> Point | None:
    """The cheapest measured figure; if every one is a lower bound, the tightest (largest)."""
    measured = [p for p in points if not p.lower_bound]
    if measured:
        return min(measured, key=lambda p: p.cost)
    return max(points, key=lambda p: p.cost) if points else None


def best_hmc(points: list[Point], beta: float) -> Point | None:
    """The best plain-HMC figure at β (see ``best``)."""
    return best([p for p in points if p.beta == beta and p.method in HMC_METHODS])


def ratio_mark(ft: Point, hmc: Point) -> str:
    """``≤``, ``≥``, ``?`` or a blank for how the ratio HMC / FT-HMC is bounded."""
    if ft.lower_bound and hmc.lower_bound:
        return "?"
    if ft.lower_bound:
        return "≤"
    if hmc.lower_bound:
        return "≥"
    return " "


def report(points: list[Point]) -> list[str]:
    lines = []
    for beta in sorted({p.beta for p in points}):
        base = best_hmc(points, beta)
        for p in sorted((p for p in points if p.beta == beta), key=lambda p: p.cost):
            bound = "≥" if p.lower_bound else " "
            line = (
                f"β={beta:<4g} {p.method:<9} lf {p.n_leapfrog:<3d}"
                f" evals/indep {bound}{p.cost:9.1f}  {p.source}"
            )
            if p.method == "ft_hmc" and base is not None:
                line += f"  HMC/FT-HMC {ratio_mark(p, base)}{base.cost / p.cost:.2f}"
            lines.append(line)
    return lines


def plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    styles = {"hmc": "o", "hmc_long": "o", "ft_hmc": "^", "flow_mcmc": "s"}
    labels = {"hmc": "HMC", "hmc_long": "HMC", "ft_hmc": "FT-HMC", "flow_mcmc": "flow MCMC"}
    colors = {"HMC": "C0", "FT-HMC": "C1", "flow MCMC": "C2"}
    for label, color in colors.items():
        mine = [p for p in points if labels[p.method] == label]
        series = [best([p for p in mine if p.beta == b]) for b in sorted({p.beta for p in mine})]
        if not series:
            continue
        ax.plot([p.beta for p in series], [p.cost for p in series], color=color, label=label)
        for p in series:
            marker = styles[p.method]
            face = "none" if p.lower_bound else color
            ax.plot(p.beta, p.cost, marker=marker, color=color, markerfacecolor=face)
            if p.lower_bound:
                ax.annotate("↑", (p.beta, p.cost), color=color, ha="center", va="bottom")
    ax.set_yscale("log")
    ax.set_xlabel("β")
    ax.set_ylabel("evaluations per independent Q")
    ax.set_title(f"2D U(1), L = {points[0].L}: best per method (open: lower bound)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scans", type=Path, nargs="+", help="scan folders or scan.json files")
    parser.add_argument("--out", type=Path, default=None, help="plot path (png)")
    args = parser.parse_args()
    points = read_points(args.scans)
    if not points:
        raise SystemExit("no figures in the given scans")
    sides = sorted({p.L for p in points})
    if len(sides) != 1:
        raise SystemExit(f"scans of lattice sizes {sides}: compare one L at a time")
    print("\n".join(report(points)))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        plot(points, args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
