"""The time-to-free-energy benchmark: its "stays within" rule, its reference gate, one run."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from boltzgen.systems import load_system
from boltzgen.systems.references import ReferenceValue

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "time_to_free_energy.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("time_to_free_energy", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["time_to_free_energy"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ttdf = _benchmark()
BUDGETS = [10**3, 10**4, 10**5, 10**6]


def _rows(method: str, errors: dict[int, list[float]]) -> list:
    """Rows of one method: ``errors[budget]`` lists each seed's |ΔF − reference|."""
    return [
        ttdf.Row(
            "toy", method, b, seed, "B_vs_A", b, 1.0, 1.0 + e, e, 1.0, abs(e), True, 0.5, 0.0, 0.0
        )
        for b, errs in errors.items()
        for seed, e in enumerate(errs)
    ]


def test_a_method_that_enters_and_leaves_the_band_has_not_reached_it_at_the_entry() -> None:
    """Within 0.1 kT at 10³, out at 10⁴ (one seed off), in again from 10⁵: reached at 10⁵."""
    rows = _rows(
        "m", {10**3: [0.05, 0.02], 10**4: [0.05, 0.3], 10**5: [0.09, 0.01], 10**6: [0.01, -0.02]}
    )
    assert ttdf.stays_within_from(rows, BUDGETS, 0.1) == 10**5
    assert ttdf.stays_within_from(rows, BUDGETS, 0.5) == 10**3


def test_leaving_the_band_at_the_top_budget_is_not_reached() -> None:
    rows = _rows("m", {10**3: [0.01], 10**4: [0.01], 10**5: [0.01], 10**6: [0.15]})
    assert ttdf.stays_within_from(rows, BUDGETS, 0.1) is None
    assert ttdf.stays_within_from(rows, BUDGETS, 0.2) == 10**3


def test_a_missing_seed_or_a_never_sampled_state_is_not_within() -> None:
    rows = _rows("m", {b: [0.0, 0.0] for b in BUDGETS})
    assert ttdf.stays_within_from(rows, BUDGETS, 0.1, n_seeds=2) == 10**3
    assert ttdf.stays_within_from(rows, BUDGETS, 0.1, n_seeds=3) is None
    nan = _rows("m", {10**3: [0.0, math.nan], 10**4: [0.0, 0.0], 10**5: [0.0], 10**6: [0.0]})
    assert ttdf.stays_within_from(nan, BUDGETS, 0.1) == 10**4
    # a method that does not fit the small budgets has no rows there: reached from its first
    late = _rows("m", {10**5: [0.0], 10**6: [0.0]})
    assert ttdf.stays_within_from(late, BUDGETS, 0.1) == 10**5


def test_ratios_to_md_and_pt_and_not_reached() -> None:
    rows = (
        _rows("md", {b: [0.01] for b in BUDGETS[2:]})
        + _rows("parallel_tempering", {b: [0.15] for b in BUDGETS[1:]})
        + _rows("bg", {b: [0.05] for b in BUDGETS})
        + _rows("hmc", {b: [0.5] for b in BUDGETS})
    )
    found = {s.method: s for s in ttdf.summarise(rows, BUDGETS, (0.2, 0.1))}
    assert found["md"].reached == {0.2: 10**5, 0.1: 10**5}
    assert found["parallel_tempering"].reached == {0.2: 10**4, 0.1: None}
    assert found["bg"].vs_md[0.2] == (pytest.approx(1e-2), False)
    assert found["bg"].vs_pt[0.2] == (pytest.approx(1e-1), False)
    # PT is not reached by the top budget 10⁶: bg's 10³ is at most 10⁻³ of what PT needs
    assert found["bg"].vs_pt[0.1] == (pytest.approx(1e-3), True)
    assert found["hmc"].reached == {0.2: None, 0.1: None}
    assert found["hmc"].vs_pt == {0.2: None, 0.1: None}
    assert found["parallel_tempering"].vs_md[0.2] == (pytest.approx(0.1), False)
    text = "\n".join(ttdf.summary_table(list(found.values()), (0.2, 0.1)))
    assert "not reached" in text and "< 0.001" in text
    no_md = [r for r in rows if r.method != "md"]
    assert all(s.vs_md == {0.2: None, 0.1: None} for s in ttdf.summarise(no_md, BUDGETS))


def test_the_gate_refuses_a_weak_or_missing_reference_and_accepts_an_exact_one() -> None:
    weak = {"phi_pos_vs_phi_neg": ReferenceValue(3.88, 0.30, "pt: MBAR")}
    (problem,) = ttdf.reference_problems(weak, 0.05)
    assert "0.300" in problem and "above 0.05" in problem
    assert ttdf.reference_problems({"x": ReferenceValue(None, None, "no pt set")}, 0.05)
    assert not ttdf.reference_problems({"x": ReferenceValue(1.0, 0.04, "pt: MBAR")}, 0.05)
    system = load_system("double_well_2d")
    assert not ttdf.reference_problems(system.reference_estimates(), 0.05)


def test_the_benchmark_refuses_a_system_without_a_reference(tmp_path, monkeypatch, capsys):
    """Alanine dipeptide with no PT reference set: nothing runs, exit status 3, and the
    refusal names the reference and the command that would make one."""
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path / "data"))
    out = tmp_path / "out"
    argv = ["--out", str(out), "--systems", "alanine_dipeptide_implicit", "--budgets", "1e5"]
    assert ttdf.main(argv) == ttdf.EXIT_WEAK_REFERENCE
    err = capsys.readouterr().err
    assert "phi_pos_vs_phi_neg: no reference value" in err
    assert "boltzgen reference alanine_dipeptide_implicit --method pt" in err
    assert not list(out.glob("budget_*"))


def test_end_to_end_on_the_double_well(tmp_path) -> None:
    """Two tiny budgets, two seeds, two cheap methods: the CSV, report and plot are written,
    every task spends at most its budget, and SNF, whose training does not fit the smaller
    budget, is listed as left out there."""
    out = tmp_path / "ttdf"
    argv = [
        "--out",
        str(out),
        "--budgets",
        "3000",
        "20000",
        "--seeds",
        "2",
        "--methods",
        "hmc",
        "snf",
        "--set",
        "methods.hmc.n_chains=8",
        "--set",
        "methods.hmc.n_warmup=20",
        "--set",
        "methods.snf.train_steps=5",
        "--set",
        "methods.snf.batch_size=200",
    ]
    assert ttdf.main(argv) == 0
    with (out / "time_to_df.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["method"], r["budget"]) for r in rows} == {
        ("hmc", "3000"),
        ("hmc", "20000"),
        ("snf", "20000"),
    }
    assert len(rows) == 6
    for r in rows:
        assert int(r["energy_evals"]) <= int(r["budget"])
        assert float(r["reference"]) == pytest.approx(4.7773, abs=1e-3)
        value, error = float(r["value"]), float(r["abs_error"])  # NaN: a state never sampled
        assert error == pytest.approx(abs(value - float(r["reference"])), nan_ok=True)
    report = (out / "report.md").read_text()
    assert "stays within 0.1 kT" in report and "does not fit" in report
    assert (out / "error_vs_evals.png").stat().st_size > 0
    left = json.loads((out / "budget_3000" / "double_well_2d" / "left_out.json").read_text())
    assert "snf" in left
