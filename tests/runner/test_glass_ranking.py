"""The glass ranking: its ESS follows the layout of the samples, and a run's report writes it.

A tiny glass experiment (2-D ternary liquid, N = 36, two temperatures; swap MC, local MC and
population annealing) runs through the runner; its report must hold one row per (system,
temperature, method) whose ESS and ESS per evaluation agree with what the run recorded.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from boltzgen.records import Cost, WeightedSamples
from boltzgen.runner.glass_ranking import FILES, Row, measure, pool, read_csv, z_scores
from boltzgen.runner.report import build_report

TEMPERATURES = [0.9, 0.6]
METHODS = {
    "swap_mc": {"method": "swap_mc", "n_chains": 4, "n_warmup": 5},
    "local_mc": {"method": "swap_mc", "n_chains": 4, "n_warmup": 5, "swap_probability": 0.0},
    "pa": {
        "method": "population_annealing",
        "n_groups": 4,
        "n_temperatures": 3,
        "sweeps_per_temperature": 1,
        "n_equilibration": 2,
        "swap_probability": 0.0,
    },
}


@pytest.fixture(scope="module")
def glass_run(tmp_path_factory, run_on_debug) -> Path:
    """The run folder of the tiny experiment, its report built."""
    root = tmp_path_factory.mktemp("glass")
    raw = {
        "name": "tiny_glass",
        "systems": [
            {
                "name": "kob_andersen_2d_ternary",
                "overrides": {"n_particles": 36},
                "sweep": {"temperature": TEMPERATURES},
            }
        ],
        "seeds": [0],
        "n_reference": 10,
        "budget": {"energy_evals": 300},
        "methods": METHODS,
    }
    run_on_debug(raw, root)
    build_report(root)
    return root


def _result(root: Path, temperature: float, method: str) -> dict:
    folder = root / f"kob_andersen_2d_ternary-temperature{temperature}" / method / "seed0"
    return json.loads((folder / "result.json").read_text())


def _evals(cost: dict) -> float:
    keys = ("energy_evals", "force_evals", "train_energy_evals", "train_force_evals")
    return float(sum(cost.get(k, 0) for k in keys))


def test_the_report_ranks_each_system_temperature_and_method_once(glass_run):
    rows = read_csv(glass_run / "glass_ranking.csv")
    keys = [(r.system, r.temperature, r.method) for r in rows]
    expected = {("kob_andersen_2d_ternary", t, m) for t in TEMPERATURES for m in METHODS}
    assert sorted(keys) == sorted(expected)
    assert all((glass_run / name).exists() for name in FILES)
    assert "glass_ranking.md" in (glass_run / "report.md").read_text()


def test_ess_is_at_most_the_samples_and_per_evaluation_uses_the_recorded_cost(glass_run):
    for row in read_csv(glass_run / "glass_ranking.csv"):
        result = _result(glass_run, row.temperature, row.method)
        cost = result["cost"]
        assert 0 < row.ess <= result["n_samples"]
        assert row.ess_per_eval == pytest.approx(row.ess / _evals(cost), rel=1e-12)
        assert row.wall_s == pytest.approx(cost["wall_s"] + cost["train_wall_s"])


def test_z_is_absent_for_swap_mc_and_finite_for_the_others(glass_run):
    with (glass_run / "glass_ranking.csv").open() as handle:
        lines = list(csv.DictReader(handle))
    for line in lines:
        z = line["z_vs_swap_mc"]
        assert (z == "") == (line["method"] == "swap_mc"), line
        assert z == "" or math.isfinite(float(z))


def test_a_run_without_particle_systems_writes_no_ranking(tmp_path):
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    record = {"system": "double_well_2d", "method": "hmc", "seed": 0, "ess_fraction": 1.0}
    record |= {"metrics": {"ess_per_1k_evals": 1.0}, "config": {"energy": "DoubleWell"}}
    samples = WeightedSamples(x, torch.zeros(40), torch.zeros(40), Cost(40, 0, 1.0), n_chains=4)
    samples.save(tmp_path / "double_well_2d" / "hmc" / "seed0", record)
    build_report(tmp_path)
    assert not any((tmp_path / name).exists() for name in FILES)
    assert "glass_ranking" not in (tmp_path / "report.md").read_text()


def ar1(phi: float, steps: int, chains: int, seed: int) -> torch.Tensor:
    """``[steps, chains]`` of x_t = φ x_{t−1} + ε_t, ε ~ N(0, 1), started stationary."""
    rng = np.random.default_rng(seed)
    start = rng.normal(size=chains) / np.sqrt(1 - phi**2)
    noise = rng.normal(size=(steps, chains))
    return torch.from_numpy(lfilter([1.0], [1.0, -phi], noise, axis=0, zi=phi * start[None])[0])


@pytest.mark.parametrize("phi", [0.0, 0.8])
def test_chains_stored_step_major_give_the_ar1_integrated_time(phi):
    """τ_int = (1 + φ)/(1 − φ) (φ = 0: i.i.d., ESS = n) within 4 standard errors, se of τ̂ by
    Madras & Sokal: τ·sqrt(2(2M + 1)/n) with the window M = 5τ."""
    steps, chains = 5_000, 8
    u = ar1(phi, steps, chains, seed=11).reshape(-1)  # step-major: t * C + c
    samples = WeightedSamples(torch.zeros(u.numel(), 1, 1), torch.zeros_like(u), u, n_chains=chains)
    m = measure(samples, n_particles=1, temperature=1.0)
    tau = (1 + phi) / (1 - phi)
    se = tau * math.sqrt(2 * (2 * 5 * tau + 1) / u.numel())
    assert abs(m.tau - tau) < 4 * se
    assert m.ess == pytest.approx(u.numel() / m.tau, rel=1e-12)


def test_groups_of_copies_count_as_one_sample_each():
    """G groups, each one value repeated: ESS = G·var(e)/var(group means) = G − 1 exactly
    (population variance of all n over the unbiased variance of the G means)."""
    groups, copies = 25, 8
    values = torch.randn(groups, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    u = values.repeat_interleave(copies)
    samples = WeightedSamples(torch.zeros(u.numel(), 1, 1), torch.zeros_like(u), u, n_runs=groups)
    assert measure(samples, 1, 1.0).ess == pytest.approx(groups - 1, rel=1e-12)


def test_zero_weight_draws_with_infinite_energy_leave_the_weighted_estimate_finite():
    u = torch.tensor([1.0, 2.0, math.inf, 3.0, 4.0, math.inf], dtype=torch.float64)
    lw = torch.where(torch.isfinite(u), torch.zeros_like(u), torch.full_like(u, -math.inf))
    m = measure(WeightedSamples(torch.zeros(6, 1, 1), lw, u), 2, 1.0, draw_chains=2)
    assert m.mean == pytest.approx(2.5 / 2) and math.isfinite(m.tau) and m.ess <= 4


def test_two_independent_seeds_pool_to_the_same_ess_per_seed_and_half_the_variance():
    row = Row("s", 1.0, "swap_mc", 100.0, 1.0, 2.0, 50.0, -1.0, 0.02, 100)
    other = Row("s", 1.0, "local_mc", 100.0, 1.0, 2.0, 50.0, -1.1, 0.02, 100)
    pooled = pool([row, row])
    assert (pooled.ess, pooled.mean, pooled.n_seeds) == (50.0, -1.0, 2)
    assert pooled.stderr == pytest.approx(0.02 / math.sqrt(2))
    assert z_scores([row, other]) == [None, pytest.approx(-0.1 / math.hypot(0.02, 0.02))]
