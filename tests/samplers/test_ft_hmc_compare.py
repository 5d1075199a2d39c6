"""The FT-HMC / HMC comparison across scans: the best HMC figure and how the ratio is bounded."""

from __future__ import annotations

import dataclasses
import json
import runpy
from pathlib import Path
from types import SimpleNamespace

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "lattice_ft_hmc_compare.py"
cmp = SimpleNamespace(**runpy.run_path(str(BENCHMARK), run_name="lattice_ft_hmc_compare"))


def _scan(path: Path, methods: dict, beta: float = 5.0, lf: int = 20, ft_lf=None) -> Path:
    row = {"beta": beta}
    for name, (cost, bound) in methods.items():
        row[name] = {"evals_per_independent_q": cost, "tau_q_lower_bound": bound}
    args = {"L": 8, "n_leapfrog": lf, "ft_n_leapfrog": ft_lf}
    path.mkdir()
    (path / "scan.json").write_text(json.dumps({"args": args, "rows": [row]}))
    return path


def test_best_hmc_prefers_a_measured_figure_to_a_cheaper_lower_bound(tmp_path):
    a = _scan(tmp_path / "a", {"hmc": (500.0, True), "hmc_long": (3000.0, False)})
    b = _scan(tmp_path / "b", {"hmc_long": (4000.0, False)}, lf=40)
    best = cmp.best_hmc(cmp.read_points([a, b]), 5.0)
    assert (best.cost, best.lower_bound, best.n_leapfrog) == (3000.0, False, 20)


def test_ratio_is_bounded_the_way_the_bounds_go(tmp_path):
    scan = _scan(tmp_path / "s", {"hmc_long": (3000.0, False), "ft_hmc": (1000.0, True)}, ft_lf=10)
    points = cmp.read_points([scan])
    ft = next(p for p in points if p.method == "ft_hmc")
    hmc = cmp.best_hmc(points, 5.0)
    assert ft.n_leapfrog == 10
    assert cmp.ratio_mark(ft, hmc) == "≤"  # FT-HMC may be slower than measured
    measured_ft = dataclasses.replace(ft, lower_bound=False)
    assert cmp.ratio_mark(measured_ft, hmc) == " "
    assert cmp.ratio_mark(measured_ft, dataclasses.replace(hmc, lower_bound=True)) == "≥"
    assert cmp.ratio_mark(ft, dataclasses.replace(hmc, lower_bound=True)) == "?"
    line = next(line for line in cmp.report(points) if "ft_hmc" in line)
    assert line.endswith("HMC/FT-HMC ≤3.00")


def test_of_lower_bounds_only_the_tightest_counts(tmp_path):
    short = _scan(tmp_path / "short", {"hmc": (400.0, True)})
    long = _scan(tmp_path / "long", {"hmc": (900.0, True)})
    best = cmp.best_hmc(cmp.read_points([short, long]), 5.0)
    assert (best.cost, best.lower_bound) == (900.0, True)
