"""``flow.activation``: the lattice conditioners' nonlinearity, chosen from an experiment."""

from __future__ import annotations

from dataclasses import replace

import pytest
from torch import nn

from boltzgen import load_system
from boltzgen.errors import ConfigError
from boltzgen.runner.config import parse_experiment
from boltzgen.runner.methods.base import settings_of
from boltzgen.runner.methods.flows import FlowParams, build_generator
from boltzgen.runner.tasks import plan, run_task, settings_hash, task_settings

SMALL = {"n_layers": 2, "hidden": 4, "n_bins": 2}


def activations(model) -> set[type]:
    return {type(m) for m in model.flow.modules() if isinstance(m, nn.LeakyReLU | nn.SiLU)}


@pytest.mark.parametrize("system, kind", [("u1_2d", "u1_gauge"), ("phi4_2d", "lattice")])
@pytest.mark.parametrize(
    "activation, module", [("leaky_relu", nn.LeakyReLU), ("silu", nn.SiLU), (None, nn.LeakyReLU)]
)
def test_lattice_flows_take_the_activation(system, kind, activation, module):
    extra = {} if activation is None else {"activation": activation}
    params = FlowParams(kind=kind, **SMALL, **extra)
    model = build_generator(load_system(system, L=4), params, seed=0)
    assert activations(model) == {module}


def test_an_unknown_activation_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"activation must be one of .*silu.*got 'relu'"):
        FlowParams(kind="u1_gauge", activation="relu")
    raw = {
        "name": "t",
        "systems": ["u1_2d"],
        "methods": {"g": flow_mcmc({"kind": "u1_gauge", "activation": "relu"})},
    }
    with pytest.raises(ConfigError, match="activation"):
        parse_experiment(raw, "x.yaml")


def test_other_flow_kinds_refuse_a_lattice_activation():
    with pytest.raises(ValueError, match="applies to the lattice kinds"):
        FlowParams(kind="spline", activation="silu")


def flow_mcmc(flow: dict) -> dict:
    train = {"steps": 2, "batch_size": 8, "loss": "reverse_kl"}
    return {"method": "flow_mcmc", "n_chains": 4, "generator": {"flow": flow, "train": train}}


def task_of(flow: dict):
    raw = {"name": "t", "systems": ["u1_2d"], "methods": {"g": flow_mcmc(flow)}}
    return plan(parse_experiment(raw, "x.yaml"))[0]


def test_the_default_activation_leaves_settings_and_their_hash_as_before():
    """A configuration written before ``activation`` existed keeps its settings hash: the
    field is absent from the settings at its default, present (and hashed) otherwise."""
    plain = task_of({"kind": "u1_gauge", **SMALL})
    explicit = task_of({"kind": "u1_gauge", **SMALL, "activation": "leaky_relu"})
    smooth = task_of({"kind": "u1_gauge", **SMALL, "activation": "silu"})
    assert "activation" not in task_settings(plain)["params"]["generator"]["flow"]
    assert task_settings(smooth)["params"]["generator"]["flow"]["activation"] == "silu"
    assert settings_hash(plain) == settings_hash(explicit) != settings_hash(smooth)
    assert "activation" not in settings_of(FlowParams())


def test_the_result_reports_every_setting_including_an_added_one_at_its_default(tmp_path):
    """The hash leaves a defaulted added setting out; the result's ``config`` does not, so a
    reader of result.json sees which activation ran."""
    task = task_of({"kind": "u1_gauge", **SMALL})
    task = replace(task, system=replace(task.system, overrides={"L": 4}))
    result = run_task(task, tmp_path)
    assert result["config"]["generator"]["flow"]["activation"] == "leaky_relu"
    assert "activation" not in task_settings(task)["params"]["generator"]["flow"]
    assert settings_of(FlowParams(), complete=True)["activation"] == "leaky_relu"
