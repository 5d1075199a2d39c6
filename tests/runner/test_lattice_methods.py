"""Lattice methods through the runner: budgets spent, observables in result.json."""

from __future__ import annotations

import json

import pytest

from boltzgen import load_system
from boltzgen.flows import GaussianPrior, RQSplineCoupling
from boltzgen.flows.gauge import GaugeEquivariantCoupling, UniformAnglePrior
from boltzgen.flows.lattice import CheckerboardAffineCoupling, CheckerboardSplineCoupling
from boltzgen.runner.methods.flows import FlowParams, build_generator
from boltzgen.runner.methods.snf import SNFParams, build_snf
from boltzgen.samplers.snf import StochasticBlock

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
def test_lattice_method_spends_its_budget_and_reports_observables(run_experiment, system, label):
    raw = {
        "name": "lattice",
        "systems": [system],
        "seeds": [0],
        "n_reference": 100,
        "budget": {"energy_evals": BUDGET},
        "methods": {label: CASES[(system, label)]},
    }
    folder = run_experiment(raw) / system / label / "seed0"
    result = json.loads((folder / "result.json").read_text())
    cost = result["cost"]
    assert 0.8 * BUDGET <= cost["energy_evals"] + cost["force_evals"] <= BUDGET
    assert set(result["observables"]) == OBSERVABLES[system]
    for entry in result["observables"].values():
        assert entry["tau_int"] >= 1.0
    if system != "phi4_2d":
        assert all(e["reference"] is not None for e in result["observables"].values())


@pytest.mark.parametrize(
    "system, kind, coupling, layer",
    [
        ("phi4_2d", "lattice", "default", CheckerboardAffineCoupling),
        ("phi4_2d", "lattice", "spline", CheckerboardSplineCoupling),
        ("u1_2d", "u1_gauge", "spline", GaugeEquivariantCoupling),
    ],
)
def test_lattice_flow_kinds_take_their_coupling(system, kind, coupling, layer):
    params = FlowParams(kind=kind, n_layers=2, hidden=4, n_bins=4, coupling=coupling)
    model = build_generator(load_system(system, L=4), params, seed=0)
    assert isinstance(model.flow.layers[0], layer)
    if kind == "u1_gauge":
        assert model.flow.layers[0].transform == "spline"


def test_a_lattice_flow_refuses_a_coupling_of_the_other_family():
    with pytest.raises(ValueError, match="takes coupling"):
        build_generator(load_system("phi4_2d", L=4), FlowParams(kind="lattice", coupling="ncp"), 0)


def test_the_spline_flow_refuses_u1_links():
    """A normal prior on R^D has no business with angles: exp(−u) of the links is periodic."""
    with pytest.raises(ValueError, match=r"u1_2d's links are angles.*kind: u1_gauge"):
        build_generator(load_system("u1_2d", L=4), FlowParams(), seed=0)


@pytest.mark.parametrize(
    "system, overrides, prior, layer",
    [
        ("u1_2d", {"L": 4}, UniformAnglePrior, GaugeEquivariantCoupling),
        ("ising_2d", {"L": 4}, GaussianPrior, CheckerboardAffineCoupling),
        ("phi4_2d", {"L": 4}, GaussianPrior, CheckerboardAffineCoupling),
        ("double_well_2d", {}, GaussianPrior, RQSplineCoupling),
    ],
)
def test_snf_takes_the_systems_own_layers_and_prior(system, overrides, prior, layer):
    """The runner's SNF: gauge layers on the Haar prior for U(1) links, checkerboard layers on
    scalar fields, spline layers elsewhere; one layer before each of its 3 stochastic blocks."""
    params = SNFParams(n_blocks=3, hidden=4, n_bins=2)
    snf = build_snf(load_system(system, **overrides), params, seed=0)
    assert type(snf.prior) is prior
    kinds = [type(block) for block in snf.blocks]
    assert kinds[0::2] == [layer] * 3
    assert all(issubclass(k, StochasticBlock) for k in kinds[1::2]) and len(kinds) == 6
