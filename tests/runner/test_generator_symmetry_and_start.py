"""Generators through the runner: averaged over a symmetry, and started from another run's flow."""

from __future__ import annotations

import json
import math

import pytest
import torch

from boltzgen import load_system
from boltzgen.errors import ConfigError
from boltzgen.records import WeightedSamples
from boltzgen.runner.config import parse_experiment
from boltzgen.runner.methods.boltzmann_generator import (
    BoltzmannGeneratorParams,
    settings_key,
    train_generator,
    training_folders,
)
from boltzgen.runner.methods.flows import FlowParams
from boltzgen.runner.methods.training import TrainParams
from boltzgen.runner.report import training_data_label
from boltzgen.runner.trained import load_trained_generator

FLOW = {"kind": "lattice", "n_layers": 2, "hidden": 4}
TRAIN = {"loss": "reverse_kl", "steps": 30, "batch_size": 32}
SYSTEM = {"name": "phi4_2d", "overrides": {"L": 4, "lam": 4.0}}


def _experiment(name, system, methods):
    return {"name": name, "systems": [system], "seeds": [0], "n_reference": 100, "methods": methods}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, run_on_debug):
    """φ⁴ on 4 × 4 near its critical line: one flow, drawn as trained and symmetrised."""
    methods = {
        "bg": {"method": "boltzmann_generator", "flow": FLOW, "train": TRAIN, "n_samples": 512},
        "bg_sym": {
            "method": "boltzmann_generator",
            "flow": FLOW,
            "train": TRAIN,
            "n_samples": 512,
            "symmetrize": "negate",
        },
        "bg_symtrain": {
            "method": "boltzmann_generator",
            "flow": FLOW,
            "train": {**TRAIN, "loss": "reverse_kl_symmetric"},
            "n_samples": 512,
            "symmetrize": "negate",
        },
        "mcmc_sym": {
            "method": "flow_mcmc",
            "generator": {"flow": FLOW, "train": TRAIN, "symmetrize": "negate"},
            "n_chains": 8,
            "n_warmup": 5,
            "n_steps": 40,
        },
    }
    root = tmp_path_factory.mktemp("small")
    return run_on_debug(_experiment("sym", SYSTEM, methods), root) / "phi4_2d"


def test_symmetrised_methods_share_the_trained_flow(small_run):
    folders = {
        m: training_folders(small_run / m / "seed0")[1] for m in ("bg", "bg_sym", "mcmc_sym")
    }
    assert len(set(folders.values())) == 1
    assert (folders["bg"] / "train" / "checkpoint.pt").exists()
    symtrain = training_folders(small_run / "bg_symtrain" / "seed0")[1]
    assert symtrain != folders["bg"]
    assert sorted((small_run / "_generators").iterdir()) == sorted({folders["bg"], symtrain})
    plain = BoltzmannGeneratorParams(flow=FlowParams(**FLOW), train=TrainParams(**TRAIN))
    both = BoltzmannGeneratorParams(
        flow=FlowParams(**FLOW), train=TrainParams(**TRAIN), symmetrize="negate"
    )
    assert settings_key(plain) == settings_key(both)


def test_symmetric_training_runs_through_the_runner_at_the_cost_of_reverse_kl(small_run):
    cost = json.loads((small_run / "bg_symtrain" / "seed0" / "result.json").read_text())["cost"]
    plain = json.loads((small_run / "bg_sym" / "seed0" / "result.json").read_text())["cost"]
    assert cost["train_energy_evals"] == plain["train_energy_evals"] > 0
    assert cost["train_force_evals"] == plain["train_force_evals"]


def test_symmetrised_draws_carry_the_averaged_density(small_run):
    """log w = −u − log ½[q(x) + q(−x)], with q the shared flow loaded on its own."""
    system, trained = load_trained_generator(small_run / "bg" / "seed0")
    samples = WeightedSamples.load(small_run / "bg_sym" / "seed0")
    with torch.no_grad():
        flow_dtype = next(trained.model.parameters()).dtype
        x = samples.x.to(flow_dtype)
        log_q = trained.model.log_prob(x).double()
        log_q_image = trained.model.log_prob(-x).double()
    expected = -system.energy.energy(samples.x) - (
        torch.logaddexp(log_q, log_q_image) - math.log(2.0)
    )
    torch.testing.assert_close(samples.log_weights, expected, rtol=0, atol=1e-9)
    magnetisation = samples.x.sum(dim=(1, 2))
    positive = float((magnetisation > 0).double().mean())
    assert abs(positive - 0.5) < 4 * math.sqrt(0.25 / len(samples))


def test_symmetrised_flow_mcmc_chains_move_between_sectors(small_run):
    samples = WeightedSamples.load(small_run / "mcmc_sym" / "seed0")
    sign = torch.sign(samples.x.sum(dim=(1, 2))).reshape(8, -1)
    assert bool((sign[:, 1:] != sign[:, :-1]).any(dim=1).all())


def test_started_flow_moves_to_a_larger_lattice_and_is_charged_for_its_start(
    small_run, tmp_path, run_on_debug
):
    source = small_run / "bg" / "seed0"
    start = {**FLOW, "init_from": str(source)}
    methods = {
        "bg": {
            "method": "boltzmann_generator",
            "flow": start,
            "train": {**TRAIN, "steps": 0},
            "n_samples": 64,
        }
    }
    large = {"name": "phi4_2d", "overrides": {"L": 8, "lam": 4.0}}
    task = run_on_debug(_experiment("start", large, methods), tmp_path) / "phi4_2d" / "bg" / "seed0"
    _, moved = load_trained_generator(task)
    _, small = load_trained_generator(source)
    for (name, value), (_, original) in zip(
        moved.model.flow.named_parameters(), small.model.flow.named_parameters(), strict=True
    ):
        torch.testing.assert_close(value, original, msg=name)
    # the moved flow on a field that repeats a 4 × 4 field: 4 × the small flow's log q
    # minus the priors' difference (both N(0, 1) per site)
    field = torch.randn(3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    tiled = field.repeat(1, 2, 2)
    with torch.no_grad():
        big, little = moved.model.log_prob(tiled), small.model.log_prob(field)
    torch.testing.assert_close(big, 4 * little, rtol=1e-9, atol=1e-9)
    result = json.loads((task / "result.json").read_text())
    source_result = json.loads((source / "result.json").read_text())
    stage = result["info"]["training_data"][0]
    assert stage["stage"] == "init" and stage["source"] == str(source)
    source_cost = source_result["cost"]
    spent = source_cost["train_energy_evals"] + source_cost["train_force_evals"]
    assert stage["charged_evals"] == spent > 0
    cost = result["cost"]
    assert cost["train_energy_evals"] + cost["train_force_evals"] == spent
    assert training_data_label(result) == f"started from {source} ({spent:.3g} evals)"


def test_a_start_of_another_architecture_is_refused(small_run, tmp_path):
    params = BoltzmannGeneratorParams(
        flow=FlowParams(**{**FLOW, "hidden": 6, "init_from": str(small_run / "bg" / "seed0")}),
        train=TrainParams(**{**TRAIN, "steps": 0}),
    )
    system = load_system("phi4_2d", L=4)
    with pytest.raises(ValueError, match=r"flow\.init_from"):
        train_generator(
            system,
            params,
            torch.Generator().manual_seed(0),
            tmp_path,
            False,
            load_trained_generator,
        )
    with pytest.raises(ValueError, match="needs the runner"):
        train_generator(system, params, torch.Generator().manual_seed(0), tmp_path, False)


def test_symmetrize_needs_a_declared_symmetry(tmp_path, run_on_debug):
    methods = {
        "bg": {
            "method": "boltzmann_generator",
            "train": {"steps": 1, "batch_size": 8},
            "n_samples": 8,
            "symmetrize": "negate",
        }
    }
    with pytest.raises(AssertionError, match="declares"):
        run_on_debug(_experiment("asym", "double_well_2d", methods), tmp_path)


def test_symmetrize_is_refused_by_flow_hmc_and_checked_by_name():
    flow_hmc = {"method": "flow_hmc", "generator": {"flow": FLOW, "symmetrize": "negate"}}
    with pytest.raises(ConfigError, match="latent space"):
        parse_experiment(_experiment("fhmc", SYSTEM, {"fhmc": flow_hmc}), "fhmc.yaml")
    with pytest.raises(ConfigError, match="symmetrize` must be one of"):
        parse_experiment(
            _experiment(
                "bad", SYSTEM, {"bg": {"method": "boltzmann_generator", "symmetrize": "x"}}
            ),
            "bad.yaml",
        )


@pytest.mark.parametrize(
    "name, overrides", [("phi4_2d", {"L": 4}), ("u1_2d", {"L": 4}), ("ising_2d", {"L": 4})]
)
def test_declared_symmetries_leave_the_energy_unchanged(name, overrides):
    system = load_system(name, **overrides)
    assert system.energy.symmetries == {"negate"}
    x = torch.randn(16, *system.energy.event_shape, dtype=torch.float64) * 2
    torch.testing.assert_close(
        system.energy.energy(-x), system.energy.energy(x), rtol=1e-12, atol=1e-10
    )
    assert system.energy.at_temperature(2.0).symmetries == {"negate"}
