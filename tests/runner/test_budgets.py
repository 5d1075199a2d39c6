"""Equal budgets: every method and every move type spends 80–100 % of the experiment's
budget, all costs counted (training, and the charge of training data)."""

from __future__ import annotations

import json

import pytest

BUDGET = 40_000
FLOW = {"n_layers": 2, "hidden": 8}
DATA_TRAIN = {"steps": 10, "batch_size": 32, "n_data": 3000}
GENERATOR = {"flow": FLOW, "train": {**DATA_TRAIN, "loss": "mixed"}}
SNF = {"n_blocks": 2, "block_steps": 2, "hidden": 8, "train_steps": 5, "batch_size": 32}
TSF = {"n_temperatures": 3, "n_chains": 32, "hidden": 8, "n_layers": 2, "train_steps": 5}
FP = {"hidden": 8, "train_steps": 10, "n_data": 3000, "ode_steps": 3, "scale_steps": 2}

CASES = {
    "hmc": {"method": "hmc", "n_chains": 64, "n_leapfrog": 5},
    "pt-hmc": {"method": "parallel_tempering", "n_temperatures": 3, "n_chains": 32, "move": "hmc"},
    "pt-langevin": {
        "method": "parallel_tempering",
        "n_temperatures": 3,
        "n_chains": 32,
        "move": "langevin",
    },
    "tsf-hmc": {"method": "tsf_replica_exchange", **TSF, "move": "hmc", "n_leapfrog": 4},
    "tsf-langevin": {"method": "tsf_replica_exchange", **TSF, "move": "langevin"},
    "bg-reverse": {
        "method": "boltzmann_generator",
        "flow": FLOW,
        "train": {**DATA_TRAIN, "loss": "reverse_kl"},
    },
    "bg-forward": {
        "method": "boltzmann_generator",
        "flow": FLOW,
        "train": {**DATA_TRAIN, "loss": "forward_kl"},
    },
    "bg-mixed-finetune": {
        "method": "boltzmann_generator",
        "flow": FLOW,
        "train": {**DATA_TRAIN, "loss": "mixed"},
        "finetune": {**DATA_TRAIN, "loss": "reverse_kl"},
    },
    "bg-three-stages": {
        "method": "boltzmann_generator",
        "flow": FLOW,
        "train": {**DATA_TRAIN, "loss": "forward_kl"},
        "finetune": {**DATA_TRAIN, "loss": "reverse_kl"},
        "polish": {**DATA_TRAIN, "loss": "mixed", "batch_size": 64, "lr_schedule": "cosine"},
    },
    "smc-ula": {"method": "smc", "generator": GENERATOR, "n_steps": 3, "kernel": "ula"},
    "smc-mala": {"method": "smc", "generator": GENERATOR, "n_steps": 3, "kernel": "mala"},
    "smc-hmc": {"method": "smc", "generator": GENERATOR, "n_steps": 3, "kernel": "hmc"},
    "flow-mcmc": {"method": "flow_mcmc", "generator": GENERATOR, "n_chains": 64},
    "flow-hmc": {"method": "flow_hmc", "generator": GENERATOR, "n_chains": 64, "n_leapfrog": 3},
    "snf-langevin": {"method": "snf", **SNF, "block": "langevin"},
    "snf-mala": {"method": "snf", **SNF, "block": "mala"},
    "snf-metropolis": {"method": "snf", **SNF, "block": "metropolis"},
    "fp-path": {"method": "flow_perturbation", **FP, "estimator": "path"},
    "fp-radial": {"method": "flow_perturbation", **FP, "estimator": "radial"},
    "fp-segments": {"method": "flow_perturbation", **FP, "n_segments": 2},
}


def spent(cost: dict[str, float]) -> float:
    keys = ("energy_evals", "force_evals", "train_energy_evals", "train_force_evals")
    return sum(cost[k] for k in keys)


def run(run_experiment, system: str, label: str, spec: dict) -> dict:
    raw = {
        "name": "budget",
        "systems": [system],
        "seeds": [0],
        "n_reference": 200,
        "budget": {"energy_evals": BUDGET},
        "methods": {label: spec},
    }
    return json.loads((run_experiment(raw) / system / label / "seed0" / "result.json").read_text())


@pytest.mark.parametrize("label", list(CASES))
def test_every_method_spends_80_to_100_percent_of_the_budget(run_experiment, label):
    result = run(run_experiment, "double_well_2d", label, CASES[label])
    assert 0.8 * BUDGET <= spent(result["cost"]) <= BUDGET, (label, result["cost"])


MOLECULAR = {
    "md": {"method": "md", "n_equilibration": 2000, "frame_interval": 100},
    "pt-openmm": {
        "method": "parallel_tempering",
        "backend": "openmm",
        "n_temperatures": 2,
        "steps_per_iteration": 500,
        "n_warmup": 5,
    },
}


@pytest.mark.parametrize("label", list(MOLECULAR))
def test_openmm_methods_spend_80_to_100_percent_of_the_budget(run_experiment, label):
    result = run(run_experiment, "alanine_dipeptide_vacuum", label, MOLECULAR[label])
    assert 0.8 * BUDGET <= spent(result["cost"]) <= BUDGET, (label, result["cost"])


@pytest.mark.parametrize("label", ["bg-forward", "smc-mala", "fp-path"])
def test_exact_training_draws_are_charged_one_evaluation_each(run_experiment, label):
    result = run(run_experiment, "double_well_2d", label, CASES[label])
    records = result["info"]["training_data"]
    assert records[0]["source"] == "exact" and records[0]["n"] == 3000
    assert records[0]["charged_evals"] == 3000
    assert result["cost"]["train_energy_evals"] + result["cost"]["train_force_evals"] >= 3000
