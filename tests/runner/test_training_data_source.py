"""``train.data``: a toy system's generator can train on (and pay for) PT frames instead of
exact draws, as a user without an exact sampler would."""

from __future__ import annotations

import math

import pytest
import torch

from boltzgen.errors import ConfigError
from boltzgen.records.reference_sets import load_reference
from boltzgen.reference import TorchPTReferenceSettings, generate_torch_pt_reference
from boltzgen.runner.config import parse_experiment
from boltzgen.runner.methods.training import TrainParams, data_charge, training_data
from boltzgen.runner.preflight import preflight
from boltzgen.runner.tasks import plan, settings_hash
from boltzgen.systems import load_system

NAME = "double_well_2d"
PT = TorchPTReferenceSettings(
    n_temperatures=3, t_max=6.0, n_iterations=200, n_chains=4, n_discard=20, n_frames=400,
    min_entries=0,
)  # fmt: skip


@pytest.fixture
def with_pt_set(tmp_path, monkeypatch):
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path))
    generate_torch_pt_reference(load_system(NAME), PT)
    return load_system(NAME)


def test_pt_frames_of_the_training_part_are_used_and_charged(with_pt_set):
    system = with_pt_set
    params = TrainParams(loss="forward_kl", n_data=100, data="pt")
    data = training_data(system, params, torch.Generator().manual_seed(0))
    train = load_reference(NAME, "pt", part="training")
    assert data.source == "pt" and data.x.shape == (100, 2)
    assert all(bool((train.x == row).all(dim=1).any()) for row in data.x)
    whole = load_reference(NAME, "pt").manifest["cost"]
    per_frame = (whole["energy_evals"] + whole["force_evals"]) / PT.n_frames
    charged = data.cost.energy_evals + data.cost.force_evals
    assert math.isclose(charged, per_frame * 100, rel_tol=0.02)
    assert data_charge(system, params) == charged


def test_auto_keeps_exact_draws_on_a_toy_system(with_pt_set):
    params = TrainParams(loss="forward_kl", n_data=100)
    data = training_data(with_pt_set, params, torch.Generator().manual_seed(0))
    assert data.source == "exact" and data.cost.energy_evals == 100


def experiment(data: str | None):
    train = {"loss": "forward_kl", "steps": 2, "batch_size": 8, "n_data": 50}
    if data is not None:
        train["data"] = data
    raw = {
        "name": "t",
        "systems": [NAME],
        "methods": {"bg": {"method": "boltzmann_generator", "train": train, "n_samples": 10}},
    }
    return parse_experiment(raw, "x.yaml")


def test_a_missing_set_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path))
    exp = experiment("pt")
    with pytest.raises(ConfigError, match=r"train\.data.*boltzgen reference double_well_2d"):
        preflight(exp, plan(exp), None)


def test_a_bad_source_is_refused_and_the_default_keeps_the_hash():
    with pytest.raises(ConfigError, match="data must be one of"):
        experiment("umbrella")
    assert settings_hash(plan(experiment(None))[0]) == settings_hash(plan(experiment("auto"))[0])
    assert settings_hash(plan(experiment(None))[0]) != settings_hash(plan(experiment("pt"))[0])
