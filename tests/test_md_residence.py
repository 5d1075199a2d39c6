"""The MD residence-time forecast: which state's probability it takes, and its figures."""

from __future__ import annotations

import argparse
import math
from types import SimpleNamespace

import pytest

from boltzgen.metrics.kinetics import two_state_length, two_state_stderr
from boltzgen.runner.time_to_df import seeds_quantile
from boltzgen.systems.references import ReferenceValue
from tests.benchmark_scripts import load_benchmark


def _system(delta_f: float) -> SimpleNamespace:
    """ΔF(b vs a) = ``delta_f``: b is the rarer state when it is positive."""
    estimates = {"b_vs_a": ReferenceValue(delta_f, 0.04, "test")}
    return SimpleNamespace(
        name="toy", free_energy_pairs=[("a", "b")], reference_estimates=lambda: estimates
    )


@pytest.mark.parametrize("state, p", [("b", 1 / (1 + math.e**3)), ("a", 1 / (1 + math.e**-3))])
def test_forecast_takes_the_state_probability_from_the_reference(state, p):
    bench = load_benchmark("md_residence")
    args = argparse.Namespace(state=state, seeds=5, timestep_fs=2.0, ladder=[1e6, 1e9])
    done = {"0": [1000, True], "1": [3000, False], "2": [2000, True]}
    out = bench._report(args, _system(3.0), done)
    assert out["residence_steps"] == 3000 and out["exits"] == 2 and out["runs"] == 3
    assert out["residence_ps"] == pytest.approx(6.0)
    assert out["state_probability"] == pytest.approx(p)
    z = seeds_quantile(5, 0.9)
    budget, rel = out["budgets"]["0.1"]
    assert budget == pytest.approx(two_state_length(3000, p, 0.1, z))
    assert rel == pytest.approx(1 / math.sqrt(2))
    entries = 1e6 * p / ((1 - p) * 3000)
    row = out["ladder"]["1e+06"]
    assert row["expected_entries"] == pytest.approx(entries)
    assert row["p_never_enters"] == pytest.approx(math.exp(-entries))
    assert (row["stderr"] is None) == (entries < bench.MIN_ENTRIES)
    assert out["ladder"]["1e+09"]["stderr"] == pytest.approx(two_state_stderr(3000, p, 1e9))


def test_a_state_outside_every_pair_is_refused():
    args = argparse.Namespace(state="c", seeds=5, timestep_fs=1.0, ladder=[])
    with pytest.raises(SystemExit, match="no free-energy pair"):
        load_benchmark("md_residence")._report(args, _system(3.0), {"0": [10, True]})
