"""``flow.prior_beta``: a U(1) gauge flow from the Wilson prior at β₀, chosen from an experiment."""

from __future__ import annotations

import math

import pytest
import torch

from boltzgen import load_system
from boltzgen.errors import ConfigError
from boltzgen.flows.gauge import UniformAnglePrior
from boltzgen.flows.wilson_prior import WilsonPrior
from boltzgen.runner.config import parse_experiment
from boltzgen.runner.methods.flows import FlowParams, build_generator
from boltzgen.runner.tasks import settings_hash, task_settings
from tests.runner.test_flow_activation import SMALL, flow_mcmc, task_of


def test_u1_gauge_flow_takes_the_wilson_prior():
    system = load_system("u1_2d", L=4)
    model = build_generator(system, FlowParams(kind="u1_gauge", **SMALL, prior_beta=1.5), seed=0)
    assert isinstance(model.prior, WilsonPrior) and model.prior.beta == 1.5
    plain = build_generator(system, FlowParams(kind="u1_gauge", **SMALL), seed=0)
    assert isinstance(plain.prior, UniformAnglePrior)
    draws = model.sample(64, torch.Generator().manual_seed(0))
    assert torch.isfinite(draws.log_weights).all()
    assert math.isfinite(float(draws.log_weights.logsumexp(0)))


@pytest.mark.parametrize("kind, beta", [("lattice", 2.0), ("spline", 2.0), ("u1_gauge", 0.0)])
def test_prior_beta_is_refused_off_u1_and_below_zero(kind, beta):
    with pytest.raises(ValueError, match="prior_beta"):
        FlowParams(kind=kind, prior_beta=beta)
    raw = {
        "name": "t",
        "systems": ["u1_2d"],
        "methods": {"g": flow_mcmc({"kind": kind, "prior_beta": beta})},
    }
    with pytest.raises(ConfigError, match="prior_beta"):
        parse_experiment(raw, "x.yaml")


def test_the_default_prior_leaves_the_settings_hash_as_before():
    plain = task_of({"kind": "u1_gauge", **SMALL})
    wilson = task_of({"kind": "u1_gauge", **SMALL, "prior_beta": 2.0})
    assert "prior_beta" not in task_settings(plain)["params"]["generator"]["flow"]
    assert task_settings(wilson)["params"]["generator"]["flow"]["prior_beta"] == 2.0
    assert settings_hash(plain) != settings_hash(wilson)


def test_plaquette_map_puts_the_analytic_map_first_and_needs_a_prior_beta():
    """``plaquette_map: true`` with no learned layers is the analytic map from β₀ to the
    system's β: its plaquettes are h(p) − m, and its weights nearly uniform."""
    from boltzgen.flows.plaquette_map import PlaquetteMarginalMap

    with pytest.raises(ValueError, match="set prior_beta"):
        FlowParams(kind="u1_gauge", plaquette_map=True)
    system = load_system("u1_2d", L=4, beta=3.0)
    params = FlowParams(kind="u1_gauge", n_layers=0, prior_beta=1.5, plaquette_map=True)
    model = build_generator(system, params, seed=0)
    layers = list(model.flow.layers)
    assert isinstance(layers[0], PlaquetteMarginalMap) and layers[0].beta == 3.0
    draws = model.sample(2000, torch.Generator().manual_seed(0))
    w = torch.exp(draws.log_weights - draws.log_weights.max())
    assert float(w.sum() ** 2 / (w**2).sum()) > 0.7 * 2000
    plain = task_of({"kind": "u1_gauge", **SMALL, "prior_beta": 2.0})
    mapped = task_of({"kind": "u1_gauge", **SMALL, "prior_beta": 2.0, "plaquette_map": True})
    assert "plaquette_map" not in task_settings(plain)["params"]["generator"]["flow"]
    assert settings_hash(plain) != settings_hash(mapped)


def test_flow_hmc_runs_on_the_plaquette_map_from_an_experiment(tmp_path):
    """A flow-HMC task through the runner with the map and two learned layers after it."""
    from dataclasses import replace

    from boltzgen.runner.tasks import plan, run_task

    flow = {"kind": "u1_gauge", **SMALL, "prior_beta": 1.0, "plaquette_map": True}
    method = {
        "method": "flow_hmc",
        "n_chains": 4,
        "n_steps": 20,
        "n_warmup": 10,
        "n_leapfrog": 4,
        "generator": {"flow": flow, "train": {"steps": 2, "batch_size": 8, "loss": "reverse_kl"}},
    }
    raw = {"name": "t", "systems": ["u1_2d"], "methods": {"g": method}}
    task = plan(parse_experiment(raw, "x.yaml"))[0]
    task = replace(task, system=replace(task.system, overrides={"L": 4}))
    result = run_task(task, tmp_path)
    assert result["config"]["generator"]["flow"]["plaquette_map"] is True
    assert 0.0 < result["observables"]["plaquette"]["value"] < 1.0
