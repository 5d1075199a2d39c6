"""`train.loss: fab` through an experiment: no data drawn, every AIS evaluation charged."""

import json

import yaml

from boltzgen.training.fab import ais_evaluations

RAW = yaml.safe_load(
    """
name: fab
systems: [double_well_2d]
seeds: [0]
n_reference: 300
methods:
  fab:
    method: boltzmann_generator
    flow: {n_layers: 2, hidden: 16}
    train: {loss: fab, steps: 6, batch_size: 64, ais_distributions: 3, ais_leapfrog: 2,
            buffer_size: 512, buffer_updates: 2}
    n_samples: 500
"""
)


def test_fab_method_charges_its_ais_evaluations(run_experiment):
    root = run_experiment(RAW)
    result = json.loads((root / "double_well_2d/fab/seed0/result.json").read_text())
    cost = result["cost"]
    assert cost["train_force_evals"] == 3 * ais_evaluations(64, 3, 2)
    assert cost["energy_evals"] == 500
    assert result["info"]["training_data"][0]["source"] == "none"
