"""The report counts seeds that failed or did not converge instead of dropping them."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from boltzgen.records import Cost, WeightedSamples
from boltzgen.runner.report import build_report, held_out_lines, pool, summarize

EXACT = 4.7772741


def result(seed: int, value: float | None, stderr: float | None, converged=None) -> dict:
    entry = {"value": value, "stderr": stderr, "reference": EXACT}
    if converged is not None:
        entry["converged"] = converged
    return {
        "system": "double_well_2d",
        "method": "hmc",
        "seed": seed,
        "ess_fraction": 0.1,
        "metrics": {"ess_per_1k_evals": 1.0},
        "cost": {"energy_evals": 100, "force_evals": 0, "wall_s": 1.0, "train_wall_s": 0.0},
        "free_energies": {"right_vs_left": entry},
        "info": {"training_data": [{"source": "exact", "n": 500, "charged_evals": 500}]},
    }


SEEDS = [
    result(0, 4.7, 0.1),
    result(1, None, None),  # right well never visited
    result(2, 2.0, 0.05, converged=False),
    result(3, 4.9, 0.1, converged=True),
]


def test_failed_and_unconverged_seeds_are_counted_and_kept_out_of_the_mean():
    (row,) = summarize(SEEDS)
    assert (row.n_seeds, row.n_failed, row.n_not_converged, row.n_used) == (4, 1, 1, 2)
    assert row.value == pytest.approx(4.8)
    assert row.stderr == pytest.approx(math.sqrt(0.1**2 + 0.1**2) / 2)
    assert row.unit == "kT" and row.training_data == "exact ×500 (500 evals)"


def test_a_used_seed_without_stderr_makes_the_combined_stderr_unknown():
    pooled = pool([{"value": 1.0, "stderr": 0.1}, {"value": 1.2, "stderr": None}])
    assert pooled.value == pytest.approx(1.1) and math.isnan(pooled.stderr)


def test_nothing_usable_reads_not_converged():
    pooled = pool([{"value": 1.0, "stderr": None, "converged": False}, {"value": None}])
    assert math.isnan(pooled.value) and (pooled.n_failed, pooled.n_not_converged) == (1, 1)


def test_report_and_summary_show_the_counts_and_units(tmp_path):
    g = torch.Generator().manual_seed(0)
    for r in SEEDS:
        x = torch.randn(50, 2, generator=g, dtype=torch.float64)
        samples = WeightedSamples(x, torch.zeros(50), torch.zeros(50), Cost(100, 0, 1.0), r["info"])
        samples.save(tmp_path / "double_well_2d" / "hmc" / f"seed{r['seed']}", r)
    build_report(tmp_path)
    with (tmp_path / "summary.csv").open() as handle:
        (line,) = list(csv.DictReader(handle))
    assert (line["n_seeds"], line["n_failed"], line["n_not_converged"]) == ("4", "1", "1")
    assert line["unit"] == "kT"
    report = (tmp_path / "report.md").read_text()
    header = next(x for x in report.splitlines() if x.startswith("| system"))
    row = next(x for x in report.splitlines() if x.startswith("| double_well_2d"))
    cells = dict(zip(header.split("|"), row.split("|"), strict=True))
    assert cells[" failed "].strip() == "1" and cells[" not converged "].strip() == "1"
    assert cells[" unit "].strip() == "kT"
    assert cells[" estimate ± se "].strip() == "4.800 ± 0.071"


def test_observables_get_rows_pooled_over_seeds_with_their_reference():
    plaquette = [(0.70, 0.01, True), (0.72, 0.01, True), (0.5, 0.2, False)]
    results = []
    for seed, (value, stderr, converged) in enumerate(plaquette):
        r = {**result(seed, None, None), "free_energies": {}, "system": "u1_2d"}
        entry = {"value": value, "stderr": stderr, "converged": converged, "reference": 0.6967}
        results.append({**r, "observables": {"plaquette": entry}})
    (row,) = summarize(results)
    assert (row.quantity, row.unit, row.reference) == ("⟨plaquette⟩", "–", 0.6967)
    assert (row.n_used, row.n_not_converged) == (2, 1)
    assert row.value == pytest.approx(0.71)
    assert row.stderr == pytest.approx(math.sqrt(2) * 0.01 / 2)


def test_the_report_lists_the_held_out_check_and_the_states_missing_mass():
    checked = result(0, 4.9, 0.1)
    checked["method"] = "bg"
    checked["metrics"]["held_out"] = {
        "states": {
            "left": {"gap": 0.001, "stderr": 0.002, "misses_mass": False},
            "right": {"gap": 0.4, "stderr": 0.05, "misses_mass": True},
        },
        "free_energies": {"right_vs_left": {"value": 4.78, "stderr": 0.06}},
    }
    outside = result(1, 4.9, 0.1)
    outside["metrics"]["held_out"] = {"frames_outside_support": 0.25}
    lines = held_out_lines([checked, outside, result(2, 4.7, 0.1)])
    body = [line for line in lines if line.startswith("| double_well_2d")]
    assert body == [
        "| double_well_2d | bg | 0 | right_vs_left | 4.9 | 4.780 ± 0.060 | right (+0.40 ± 0.05) |",
        "| double_well_2d | hmc | 1 | all | | 25.00% of the frames outside the flow | |",
    ]
    assert held_out_lines([result(0, 4.7, 0.1)]) == []
