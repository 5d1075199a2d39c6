"""Lattice methods through the runner: budgets spent, observables in result.json."""

from __future__ import annotations

import json

import pytest

from boltzgen.runner.config import parse_experiment
from boltzgen.runner.executors import run_debug
from boltzgen.runner.tasks import plan

BUDGET = 40_000
CASES = {
    ("u1_2d", "local"): {"method": "local_metropolis", "n_chains": 16},
    ("ising_2d", "heat_bath"): {"method": "ising_spins", "n_chains": 16},
    ("ising_2d", "metropolis"): {"method": "ising_spins", "n_chains": 16, "rule": "metropolis"},
    ("phi4_2d", "hmc"): {"method": "hmc", "n_chains": 16, "n_leapfrog": 5},
    ("phi4_2d", "flow_mcmc"): {
        "method": "flow_mcmc",
        "n_chains": 16,
        "generator": {
            "flow": {"kind": "lattice", "n_layers": 2, "hidden": 4},
            "train": {"steps": 10, "batch_size": 32, "loss": "reverse_kl"},
        },
    },
}
OBSERVABLES = {
    "u1_2d": {"plaquette", "q2"},
    "ising_2d": {"energy_density", "abs_magnetization"},
    "phi4_2d": {"chi2", "abs_magnetization"},
}


SLOW = {("phi4_2d", "flow_mcmc")}


@pytest.mark.parametrize(
    "system, label",
    [pytest.param(*key, marks=pytest.mark.slow) if key in SLOW else key for key in CASES],
)
def test_lattice_method_spends_its_budget_and_reports_observables(tmp_path, system, label):
    raw = {
        "name": "lattice",
        "systems": [system],
        "seeds": [0],
        "n_reference": 100,
        "budget": {"energy_evals": BUDGET},
        "methods": {label: CASES[(system, label)]},
    }
    errors = []
    run_debug(
        plan(parse_experiment(raw, "lattice.yaml")),
        tmp_path,
        lambda t, r, e: errors.append(e) if e else None,
        parse_experiment(raw, "lattice.yaml"),
    )
    assert not errors, errors
    result = json.loads((tmp_path / system / label / "seed0" / "result.json").read_text())
    cost = result["cost"]
    assert 0.8 * BUDGET <= cost["energy_evals"] + cost["force_evals"] <= BUDGET
    assert set(result["observables"]) == OBSERVABLES[system]
    for entry in result["observables"].values():
        assert entry["tau_int"] >= 1.0
    if system != "phi4_2d":
        assert all(e["reference"] is not None for e in result["observables"].values())
