"""The time-to-free-energy benchmark: its "stays within" rule, its reference gate, one run."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest

from boltzgen.runner import time_to_df as lib
from boltzgen.runner import time_to_df_report as tables
from boltzgen.systems import load_system
from boltzgen.systems.references import ReferenceValue
from tests.benchmark_scripts import load_benchmark

ttdf = load_benchmark("time_to_free_energy")
BUDGETS = [10**3, 10**4, 10**5, 10**6]


def _rows(method: str, errors: dict[int, list[float]]) -> list:
    """Rows of one method: ``errors[budget]`` lists each seed's |ΔF − reference|."""
    n_seeds = max(len(errs) for errs in errors.values())
    return _trained(method, errors, [0] * n_seeds)


def test_a_method_that_enters_and_leaves_the_band_has_not_reached_it_at_the_entry() -> None:
    """Within 0.1 kT at 10³, out at 10⁴ (one seed off), in again from 10⁵: reached at 10⁵."""
    rows = _rows(
        "m", {10**3: [0.05, 0.02], 10**4: [0.05, 0.3], 10**5: [0.09, 0.01], 10**6: [0.01, -0.02]}
    )
    assert lib.stays_within_from(rows, BUDGETS, 0.1) == 10**5
    assert lib.stays_within_from(rows, BUDGETS, 0.5) == 10**3


def test_leaving_the_band_at_the_top_budget_is_not_reached() -> None:
    rows = _rows("m", {10**3: [0.01], 10**4: [0.01], 10**5: [0.01], 10**6: [0.15]})
    assert lib.stays_within_from(rows, BUDGETS, 0.1) is None
    assert lib.stays_within_from(rows, BUDGETS, 0.2) == 10**3


def test_a_missing_seed_or_a_never_sampled_state_is_not_within() -> None:
    rows = _rows("m", {b: [0.0, 0.0] for b in BUDGETS})
    assert lib.stays_within_from(rows, BUDGETS, 0.1, n_seeds=2) == 10**3
    assert lib.stays_within_from(rows, BUDGETS, 0.1, n_seeds=3) is None
    nan = _rows("m", {10**3: [0.0, math.nan], 10**4: [0.0, 0.0], 10**5: [0.0], 10**6: [0.0]})
    assert lib.stays_within_from(nan, BUDGETS, 0.1) == 10**4
    # a method that does not fit the small budgets has no rows there: reached from its first
    late = _rows("m", {10**5: [0.0], 10**6: [0.0]})
    assert lib.stays_within_from(late, BUDGETS, 0.1) == 10**5


def test_ratios_to_md_and_pt_and_not_reached() -> None:
    rows = (
        _rows("md", {b: [0.01] for b in BUDGETS[2:]})
        + _rows("parallel_tempering", {b: [0.15] for b in BUDGETS[1:]})
        + _rows("bg", {b: [0.05] for b in BUDGETS})
        + _rows("hmc", {b: [0.5] for b in BUDGETS})
    )
    found = {s.method: s for s in lib.summarise(rows, BUDGETS, (0.2, 0.1))}
    assert found["md"].reached == {0.2: 10**5, 0.1: 10**5}
    assert found["parallel_tempering"].reached == {0.2: 10**4, 0.1: None}
    assert found["bg"].vs_md[0.2] == (pytest.approx(1e-2), False)
    assert found["bg"].vs_pt[0.2] == (pytest.approx(1e-1), False)
    # PT is not reached by the top budget 10⁶: bg's 10³ is at most 10⁻³ of what PT needs
    assert found["bg"].vs_pt[0.1] == (pytest.approx(1e-3), True)
    assert found["hmc"].reached == {0.2: None, 0.1: None}
    assert found["hmc"].vs_pt == {0.2: None, 0.1: None}
    assert found["parallel_tempering"].vs_md[0.2] == (pytest.approx(0.1), False)
    text = "\n".join(tables.summary_table(list(found.values()), (0.2, 0.1)))
    assert "not reached" in text and "< 0.001" in text
    no_md = [r for r in rows if r.method != "md"]
    assert all(s.vs_md == {0.2: None, 0.1: None} for s in lib.summarise(no_md, BUDGETS))


def test_the_gate_refuses_a_weak_or_missing_reference_and_accepts_an_exact_one() -> None:
    weak = {"phi_pos_vs_phi_neg": ReferenceValue(3.88, 0.30, "pt: MBAR")}
    (problem,) = lib.reference_problems(weak, 0.05)
    assert "0.300" in problem and "above 0.05" in problem
    assert lib.reference_problems({"x": ReferenceValue(None, None, "no pt set")}, 0.05)
    assert not lib.reference_problems({"x": ReferenceValue(1.0, 0.04, "pt: MBAR")}, 0.05)
    system = load_system("double_well_2d")
    assert not lib.reference_problems(system.reference_estimates(), 0.05)


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
    # the report rebuilt for one piece of the ladder only: the other budget's rows drop out
    assert ttdf.main(["--out", str(out), "--report-only", "--budgets", "20000"]) == 0
    with (out / "time_to_df.csv").open() as handle:
        assert {r["budget"] for r in csv.DictReader(handle)} == {"20000"}
    assert "| 2e+04 |" in (out / "report.md").read_text()


def _trained(method: str, errors: dict[int, list[float]], training: list[int]) -> list:
    """Rows of a method that paid ``training[seed]`` evaluations before sampling."""
    return [
        lib.Row(
            "toy",
            method,
            b,
            s,
            "B_vs_A",
            b,
            1.0,
            1.0 + e,
            e,
            1.0,
            abs(e),
            True,
            0.5,
            0.0,
            0.0,
            b - training[s],
        )
        for b, errs in errors.items()
        for s, e in enumerate(errs)
    ]


def test_the_amortised_budget_is_the_sampling_spent_where_the_method_stays_within() -> None:
    """A generator trained for 5·10⁴ and 6·10⁴ evaluations (two seeds) that stays within
    0.1 kT from 10⁵: amortised, 5·10⁴ sampling evaluations (the larger of 10⁵ − 5·10⁴ and
    10⁵ − 6·10⁴), 1/20 of PT's 10⁶; within 0.2 kT from 10⁴? No: it cannot run there."""
    budgets = [10**4, 10**5, 10**6]
    bg = _trained("bg", {10**5: [0.05, 0.08], 10**6: [0.01, 0.02]}, [50_000, 60_000])
    late = _trained("late", {10**5: [0.5, 0.5], 10**6: [0.15, 0.05]}, [10**4, 10**4])
    pt = _rows("parallel_tempering", {10**4: [0.3], 10**5: [0.15], 10**6: [0.05]})
    found = {s.method: s for s in lib.summarise(bg + late + pt, budgets, (0.2, 0.1))}
    assert found["bg"].reached == {0.2: 10**5, 0.1: 10**5}
    assert found["bg"].amortised == {0.2: 50_000, 0.1: 50_000}
    assert found["bg"].amortised_vs_pt[0.1] == (pytest.approx(0.05), False)
    assert found["bg"].amortised_vs_pt[0.2] == (pytest.approx(0.5), False)
    assert found["late"].trains and found["late"].amortised == {0.2: 990_000, 0.1: None}
    # PT pays nothing up front: no amortised view, and it is not in the amortised table
    assert not found["parallel_tempering"].trains
    assert found["parallel_tempering"].amortised == {0.2: None, 0.1: None}
    text = "\n".join(tables.amortised_table(list(found.values()), (0.2, 0.1)))
    assert "| bg | 5e+04 | 0.5 | 5e+04 | 0.05 |" in text and "| late | 9.9e+05" in text
    assert "parallel_tempering" not in text


def test_rows_of_a_result_split_sampling_from_training_and_data() -> None:
    cost = {"energy_evals": 100, "force_evals": 900, "train_energy_evals": 7}
    cost |= {"train_force_evals": 93, "wall_s": 2.0, "train_wall_s": 1.0}
    result = {"system": "toy", "method": "bg", "seed": 3, "cost": cost}
    result["free_energies"] = {"B_vs_A": {"value": 1.5, "reference": 1.0, "converged": True}}
    (row,) = lib.rows_of(result, 2000)
    assert (row.energy_evals, row.sample_evals, row.wall_s) == (1100, 1000, 3.0)
    assert row.abs_error == pytest.approx(0.5) and math.isnan(row.stderr)


def test_a_ladder_method_adds_its_mbar_estimate_as_a_row_of_its_own() -> None:
    """PT's T₀ estimate and its MBAR-over-the-ladder estimate, same cost, same reference."""
    cost = {"energy_evals": 0, "force_evals": 5000, "wall_s": 2.0}
    result = {"system": "toy", "method": "parallel_tempering", "seed": 1, "cost": cost}
    result["free_energies"] = {"B_vs_A": {"value": 1.4, "reference": 1.0, "converged": True}}
    result["info"] = {"mbar_free_energies": {"B_vs_A": {"value": 0.9, "stderr": 0.05}}}
    t0, mbar = lib.rows_of(result, 5000)
    assert (t0.method, mbar.method) == ("parallel_tempering", "parallel_tempering, MBAR")
    assert t0.abs_error == pytest.approx(0.4) and mbar.abs_error == pytest.approx(0.1)
    assert (mbar.stderr, mbar.reference, mbar.converged) == (0.05, 1.0, False)
    assert (mbar.energy_evals, mbar.wall_s) == (t0.energy_evals, t0.wall_s)


def test_the_experiment_trains_every_flow_method_on_the_charged_pt_set() -> None:
    """No exact draws in the head-to-head: every method that trains on data uses `data: pt`
    (the FAB generator trains without data)."""
    import yaml

    raw = yaml.safe_load(ttdf.EXPERIMENT.read_text())
    assert lib.needs_pt_data(raw) and "pt_data" in raw
    for label, params in raw["methods"].items():
        train = params.get("train") or (params.get("generator") or {}).get("train")
        if train is not None:
            assert train.get("data") == "pt" or train["loss"] in ("fab", "reverse_kl"), label


def test_a_missing_pt_set_is_refused_with_its_command_or_made(tmp_path, monkeypatch) -> None:
    """Without `pt_data`: refused, naming the exact command; with it: the set is made in
    OUT/data (tiny settings here) and BOLTZGEN_DATA points there."""
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path / "elsewhere"))
    data = tmp_path / "data"
    raw = {"systems": ["double_well_2d"], "methods": {"bg": {"train": {"data": "pt"}}}}
    (line,) = ttdf.ensure_pt_data(raw, data)
    command = f"boltzgen reference double_well_2d --method pt --backend torch --data {data}"
    assert command in line and not data.exists()
    raw["pt_data"] = {
        "temperatures": 3,
        "iterations": 60,
        "chains": 2,
        "frames": 100,
        "min_entries": 0,
    }
    assert lib.pt_data_command("double_well_2d", raw["pt_data"], data)[6:10] == [
        "--temperatures",
        "3",
        "--iterations",
        "60",
    ]
    assert ttdf.ensure_pt_data(raw, data) == []
    assert (data / "double_well_2d" / "pt" / "manifest.json").exists()
    assert Path(os.environ["BOLTZGEN_DATA"]) == data.resolve()
    no_data = {"systems": ["double_well_2d"], "methods": {"hmc": {"n_chains": 8}}}
    assert ttdf.ensure_pt_data(no_data, tmp_path / "none") == []


def test_a_checkpointed_pt_reference_is_told_to_resume_with_its_own_settings() -> None:
    """The suggested command repeats the stored run's settings (read back by the CLI's own
    parser), asks for ``factor`` times its iterations in all and resumes."""
    import shlex
    from dataclasses import asdict

    from boltzgen.reference import TorchPTReferenceSettings
    from boltzgen.runner.cli import _parser

    settings = TorchPTReferenceSettings(
        n_temperatures=8, t_max=1500.0, n_chains=60, n_leapfrog=20, step_size=0.002,
        n_discard=30, n_frames=40_000, dtype="float32",
    )  # fmt: skip
    manifest = {"settings": asdict(settings), "iterations_run": 9764}
    base = "boltzgen reference alanine_dipeptide_implicit --method pt"
    command = lib.resume_command(base, manifest, factor=5.3, wall=6000.0)
    args = _parser().parse_args(shlex.split(command)[1:])
    assert args.resume and args.iterations == math.ceil(5.3 * 9764)
    assert args.max_minutes == math.ceil(6000.0 * (1 - 1 / 5.3) / 60)
    read = {
        "n_temperatures": args.temperatures, "t_max": args.t_max, "n_chains": args.chains,
        "n_leapfrog": args.steps_per_iteration, "step_size": args.step_size,
        "n_discard": args.discard, "n_frames": args.frames, "seed": args.seed,
        "move": args.move, "thin": args.thin, "dtype": args.dtype, "device": args.device,
    }  # fmt: skip
    assert read == {key: asdict(settings)[key] for key in read}


def test_the_seeds_quantile_bounds_every_seed_with_the_stated_probability() -> None:
    """z with P(all n half-normal errors ≤ zσ) = c: Φ⁻¹(0.95) for one seed at 90 %, and a
    Monte Carlo frequency of 5 seeds all within zσ at 0.9 within 4 standard errors."""
    import torch

    assert lib.seeds_quantile(1, 0.9) == pytest.approx(1.6448536, abs=1e-6)
    z = lib.seeds_quantile(5, 0.9)
    g = torch.Generator().manual_seed(0)
    trials = 200_000
    inside = (torch.randn(trials, 5, generator=g).abs() <= z).all(dim=1).double().mean().item()
    assert abs(inside - 0.9) < 4 * math.sqrt(0.9 * 0.1 / trials)
    with pytest.raises(ValueError):
        lib.seeds_quantile(0, 0.9)


def test_a_projection_extrapolates_the_largest_fully_sampled_budget_as_one_over_root_b() -> None:
    """Errors ±0.4 kT at 10⁵ (all seeds), one seed never sampled at 10⁶: projected from
    10⁵ with RMS 0.4, b = 10⁵ (z · 0.4 / t)²; within 0.2 kT is 4× cheaper than 0.1 kT."""
    rows = _rows("pt", {10**4: [1.0, -2.0], 10**5: [0.4, -0.4], 10**6: [0.1, math.nan]})
    p = lib.projected_budget(rows, 0.1, n_seeds=2)
    z = lib.seeds_quantile(2, 0.9)
    assert (p.from_budget, p.rms, p.n_seeds) == (10**5, pytest.approx(0.4), 2)
    assert p.budget == pytest.approx(1e5 * (z * 0.4 / 0.1) ** 2)
    assert lib.projected_budget(rows, 0.2, n_seeds=2).budget == pytest.approx(p.budget / 4)
    assert lib.projected_budget(_rows("x", {10**5: [math.nan]}), 0.1) is None
    # projected for three seeds from the two that ran (min_seeds 2): a larger z
    three = lib.projected_budget(rows, 0.1, n_seeds=3, min_seeds=2)
    z3 = lib.seeds_quantile(3, 0.9)
    assert three.from_budget == 10**5 and three.budget == pytest.approx(p.budget * (z3 / z) ** 2)
    # a budget with fewer seeds than min_seeds is unusable
    assert lib.projected_budget(rows, 0.1, n_seeds=3) is None


def test_a_projection_keeps_training_fixed_and_scales_only_the_sampling() -> None:
    """A generator that paid 6·10⁴ (one seed) and 5·10⁴ (the other) evaluations of training
    at 10⁵: only the sampling s₀ = 10⁵ − 6·10⁴ grows, b = 6·10⁴ + s₀ (z σ₀ / t)²; an error
    already inside the tolerance projects below b₀ but never below the training."""
    rows = _trained("bg", {10**5: [0.2, -0.2]}, [60_000, 50_000])
    z = lib.seeds_quantile(2, 0.9)
    p = lib.projected_budget(rows, 0.1, n_seeds=2)
    assert p.fixed == 60_000
    assert p.budget == pytest.approx(60_000 + 40_000 * (z * 0.2 / 0.1) ** 2)
    small = lib.projected_budget(_trained("bg", {10**5: [0.001, 0.001]}, [60_000] * 2), 0.1)
    assert small.budget == pytest.approx(60_000 + 40_000 * (z * 0.001 / 0.1) ** 2)
    assert 60_000 < small.budget < 10**5
    # a sampler without training: f = 0, the plain 1/√b rule
    assert lib.projected_budget(_rows("pt", {10**5: [0.2, -0.2]}), 0.1).fixed == 0


def test_the_report_projects_only_what_the_ladder_does_not_reach() -> None:
    """PT misses 0.1 kT on the ladder: it gets a projection, and the generator that stays
    within from 10⁵ is compared with it; a tolerance reached is never projected."""
    budgets = [10**4, 10**5, 10**6]
    pt = _rows("parallel_tempering", {10**4: [0.5, 0.6], 10**5: [0.3, 0.2], 10**6: [0.15, 0.05]})
    bg = _rows("bg", {10**5: [0.05, 0.02], 10**6: [0.01, 0.02]})
    found = {s.method: s for s in lib.summarise(pt + bg, budgets, (0.2, 0.1), n_seeds=2)}
    assert found["bg"].projected == {0.2: None, 0.1: None}
    assert found["parallel_tempering"].projected[0.2] is None
    ahead = found["parallel_tempering"].projected[0.1]
    rms = math.sqrt((0.15**2 + 0.05**2) / 2)
    assert ahead.budget == pytest.approx(1e6 * (lib.seeds_quantile(2, 0.9) * rms / 0.1) ** 2)
    text = "\n".join(tables.projection_lines(list(found.values()), "parallel_tempering"))
    assert f"≈ {ahead.budget:.1e} (from 1e+06" in text
    assert f"÷ PT's projection ≈ {1e5 / ahead.budget:.2g}" in text


def test_the_peptide_experiment_parses_and_its_fab_methods_share_one_generator() -> None:
    """experiments/time_to_df_peptides.yaml is a runner experiment at every budget of its
    ladder, with MD and PT baselines; FAB's importance sampling, SMC and flow MCMC train
    one flow."""
    from dataclasses import asdict

    import yaml

    from boltzgen.runner.config import parse_experiment
    from boltzgen.runner.methods.boltzmann_generator import shared_folder_name

    path = ttdf.EXPERIMENT.with_name("time_to_df_peptides.yaml")
    raw = yaml.safe_load(path.read_text())
    assert raw["budgets"] == sorted(raw["budgets"]) and len(raw["seeds"]) >= 5
    for budget in raw["budgets"]:
        derived = ttdf.budget_experiment(raw, raw["systems"][0], budget)
        experiment = parse_experiment(derived, str(path))
        assert experiment.budget.energy_evals == budget
    methods = {m.label: m for m in experiment.methods}
    assert {"md", "parallel_tempering", "parallel_tempering_openmm"} <= set(methods)
    assert methods["parallel_tempering_openmm"].params.backend == "openmm"
    names = {
        shared_folder_name(methods[label].method, asdict(methods[label].params), 0)
        for label in (
            "boltzmann_generator_fab",
            "boltzmann_generator_fab_smc",
            "boltzmann_generator_fab_mcmc",
        )
    }
    assert len(names) == 1 and None not in names


def _result(root: Path, budget: int, method: str, seed: int, value: float) -> Path:
    """A ``result.json`` of the toy system where a ladder run would write it."""
    folder = root / f"budget_{budget}" / "toy" / "toy" / method / f"seed{seed}"
    folder.mkdir(parents=True)
    cost = {"energy_evals": budget, "wall_s": 1.0}
    result = {"system": "toy", "method": method, "seed": seed, "cost": cost}
    result["free_energies"] = {"B_vs_A": {"value": value, "reference": 1.0, "converged": True}}
    (folder / "result.json").write_text(json.dumps(result))
    return folder


def test_pieces_of_a_ladder_in_other_folders_are_reported_as_one(tmp_path, capsys) -> None:
    """Seed 0 in OUT, seeds 1 and 2 each in a folder of its own (one job per seed): the
    report with ``--include`` has all three, keeps the folders in plan.json for the next
    report, and no longer lists as left out a method that ran in a piece; the same task in
    two pieces is refused."""
    out, one, two = tmp_path / "out", tmp_path / "seed1", tmp_path / "seed2"
    _result(out, 1000, "bg", 0, 1.05)
    _result(one, 1000, "bg", 1, 0.97)
    _result(two, 1000, "bg", 2, 1.02)
    _result(two, 1000, "smc", 0, 1.0)
    (out / "budget_1000" / "toy" / "left_out.json").write_text('{"smc": "does not fit"}')
    plan = tables.Plan([1000], 3, "md", "parallel_tempering", "cmd", {}, False)
    (out / "plan.json").write_text(json.dumps(ttdf.asdict(plan)))
    assert ttdf.main(["--out", str(out), "--report-only", "--include", str(one), str(two)]) == 0
    rows = ttdf.collect(out, [one, two])
    found = sorted((r.method, r.seed, round(r.abs_error, 6)) for r in rows)
    assert found == [("bg", 0, 0.05), ("bg", 1, 0.03), ("bg", 2, 0.02), ("smc", 0, 0.0)]
    assert json.loads((out / "plan.json").read_text())["include"] == [str(one), str(two)]
    assert ttdf.main(["--out", str(out), "--report-only"]) == 0  # the pieces stay in
    assert ttdf._included(out) == [str(one), str(two)]  # and a new run of OUT keeps them
    with (out / "time_to_df.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 4
    assert ttdf.left_out(out, [one, two]) == {("toy", 1000): {}}
    assert ttdf.left_out(out) == {("toy", 1000): {"smc": "does not fit"}}
    capsys.readouterr()
    _result(tmp_path / "again", 1000, "bg", 1, 0.9)
    with pytest.raises(SystemExit, match="the same task in two pieces"):
        ttdf.collect(out, [one, tmp_path / "again"])


def test_errors_are_taken_against_the_reference_the_plan_names(tmp_path) -> None:
    """A task scored against an earlier reference (1.0 in its result) is judged by the
    plan's (1.2): its error is |value − 1.2|, the report shows that reference, and a system
    the plan holds no reference for keeps its own."""
    out = tmp_path / "out"
    _result(out, 1000, "bg", 0, 1.05)
    references = {"toy": {"B_vs_A": [1.2, 0.01, "pt: MBAR"]}}
    plan = tables.Plan([1000], 1, "md", "parallel_tempering", "cmd", references, False)
    (out / "plan.json").write_text(json.dumps(ttdf.asdict(plan)))
    assert ttdf.main(["--out", str(out), "--report-only"]) == 0
    with (out / "time_to_df.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["reference"]) == 1.2
    assert float(row["abs_error"]) == pytest.approx(0.15)
    assert "Reference toy B_vs_A: 1.2000 ± 0.0100 kT" in (out / "report.md").read_text()
    (row,) = ttdf.collect(out, references={"other": references["toy"]})
    assert row.reference == 1.0 and row.abs_error == pytest.approx(0.05)


def test_the_double_well_fab_methods_share_one_generator() -> None:
    """experiments/time_to_df.yaml: FAB's importance sampling, SMC and flow MCMC name one
    generator folder (one training per seed), which trains without data."""
    from dataclasses import asdict

    import yaml

    from boltzgen.runner.config import parse_experiment
    from boltzgen.runner.methods.boltzmann_generator import shared_folder_name

    raw = yaml.safe_load(ttdf.EXPERIMENT.read_text())
    derived = ttdf.budget_experiment(raw, raw["systems"][0], raw["budgets"][-1])
    methods = {m.label: m for m in parse_experiment(derived, str(ttdf.EXPERIMENT)).methods}
    labels = ("boltzmann_generator_fab", "smc_fab", "flow_mcmc_fab")
    names = {shared_folder_name(methods[x].method, asdict(methods[x].params), 0) for x in labels}
    assert len(names) == 1 and None not in names
    assert raw["methods"]["smc_fab"]["generator"]["train"]["loss"] == "fab"


def test_a_run_of_other_methods_keeps_the_left_out_reasons_of_the_first(tmp_path) -> None:
    """Two runs of one budget folder with different methods, each left out at 3000
    evaluations (their training does not fit): left_out.json lists both."""
    import yaml

    raw = yaml.safe_load(ttdf.EXPERIMENT.read_text())
    entry, methods = raw["systems"][0], raw["methods"]
    for label in ("snf", "boltzmann_generator_fab"):
        piece = raw | {"methods": {label: methods[label]}}
        assert ttdf.run_budget(piece, entry, 3000, tmp_path) == 0
    record = tmp_path / "budget_3000" / "double_well_2d" / "left_out.json"
    assert set(json.loads(record.read_text())) == {"snf", "boltzmann_generator_fab"}
