"""Every sampler as an experiment method: shared trained flows (and loading them back), PT
ladders, budgets, the held-out check of the generator's draws."""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.ladder import mbar_from_file
from boltzgen.runner.trained import load_trained_generator

GENERATOR = {
    "flow": {"n_layers": 2, "hidden": 16},
    "train": {"steps": 30, "batch_size": 64, "n_data": 400},
}
RAW = yaml.safe_load(
    """
name: samplers
systems: [double_well_2d]
seeds: [0]
n_reference: 300
methods:
  pt: {method: parallel_tempering, n_temperatures: 4, t_max_factor: 6.0, n_chains: 8,
       n_warmup: 30, n_steps: 120, n_leapfrog: 5}
  smc: {method: smc, n_particles: 300, n_steps: 4}
  fmcmc: {method: flow_mcmc, n_chains: 8, n_steps: 30, n_warmup: 10}
  fhmc: {method: flow_hmc, n_chains: 8, n_steps: 20, n_warmup: 10, n_leapfrog: 3}
  snf: {method: snf, n_blocks: 2, block_steps: 2, hidden: 16, train_steps: 20, batch_size: 64,
        n_samples: 300}
  tsf: {method: tsf_replica_exchange, n_temperatures: 3, n_chains: 8, n_warmup: 20, n_steps: 60,
        n_leapfrog: 4, hidden: 16, n_layers: 2, train_steps: 20, batch_size: 32}
  fp: {method: flow_perturbation, hidden: 16, train_steps: 50, n_data: 400, ode_steps: 4,
       scale_steps: 20, n_samples: 300, n_segments: 2}
"""
)
for label in ("smc", "fmcmc", "fhmc"):
    RAW["methods"][label]["generator"] = GENERATOR
RAW["methods"]["bg"] = {"method": "boltzmann_generator", "n_samples": 300, **GENERATOR}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, run_on_debug):
    return run_on_debug(RAW, tmp_path_factory.mktemp("samplers"))


def result(run_dir, label):
    return json.loads((run_dir / "double_well_2d" / label / "seed0" / "result.json").read_text())


def test_flow_methods_share_one_trained_generator_and_each_pays_for_it(run_dir):
    """The generator method itself (other ``n_samples``) and the samplers built on a flow."""
    generators = list((run_dir / "double_well_2d" / "_generators").iterdir())
    assert len(generators) == 1
    assert not (run_dir / "double_well_2d" / "bg" / "seed0" / "checkpoint" / "train").exists()
    costs = {
        label: result(run_dir, label)["cost"]["train_energy_evals"]
        for label in ("bg", "smc", "fmcmc", "fhmc")
    }
    assert len(set(costs.values())) == 1 and next(iter(costs.values())) > 0


def test_every_method_reports_the_free_energy_against_the_exact_value(run_dir):
    for label in ("pt", "smc", "fmcmc", "fhmc", "snf", "fp", "tsf"):
        fe = result(run_dir, label)["free_energies"]["right_vs_left"]
        assert fe["reference"] == pytest.approx(4.7772741, abs=1e-6)


def test_path_weighted_methods_estimate_log_z(run_dir):
    for label in ("snf", "fp"):
        log_z = result(run_dir, label)["log_z"]
        assert log_z["reference"] == pytest.approx(12.0649, abs=1e-3)
        assert log_z["value"] is not None


def test_parallel_tempering_saves_its_ladder_and_mbar_estimate(run_dir):
    r = result(run_dir, "pt")
    assert "right_vs_left" in r["info"]["mbar_free_energies"]
    assert "ladder_energies" not in r["info"]
    with np.load(run_dir / "double_well_2d" / "pt" / "seed0" / "ladder.npz") as ladder:
        assert ladder["energies"].shape == (120, 4, 8)
        assert ladder["state_left"].shape == (120, 4, 8)
    assert r["cost"]["force_evals"] == 4 * 8 * (1 + 5 * 150)
    # recomputed from the file, the estimate is the one the run wrote
    folder = run_dir / "double_well_2d" / "pt" / "seed0"
    again = mbar_from_file(folder, r["info"]["temperatures"], ["right_vs_left"])
    saved = r["info"]["mbar_free_energies"]["right_vs_left"]
    assert again["right_vs_left"]["value"] == pytest.approx(saved["value"], rel=1e-9)
    assert again["right_vs_left"]["stderr"] == pytest.approx(saved["stderr"], rel=1e-9)
    assert mbar_from_file(folder.parent, [1.0], ["right_vs_left"]) is None


def test_only_the_generators_own_draws_get_the_held_out_check(run_dir):
    held_out = result(run_dir, "bg")["metrics"]["held_out"]
    fe = held_out["free_energies"]["right_vs_left"]
    exact = result(run_dir, "bg")["free_energies"]["right_vs_left"]["reference"]
    assert abs(fe["value"] - exact) < 4 * fe["stderr"]
    assert held_out["states"]["right"]["n_frames"] > 0
    for label in ("smc", "fmcmc", "fhmc", "pt"):
        assert "held_out" not in result(run_dir, label)["metrics"]


def test_a_finished_generator_loads_back_with_the_density_it_drew_from(run_dir):
    task = run_dir / "double_well_2d" / "bg" / "seed0"
    system, trained = load_trained_generator(task)
    samples = WeightedSamples.load(task)
    with torch.no_grad():
        log_q = trained.model.log_prob(samples.x)
    expected = -samples.log_weights - system.energy.energy(samples.x)
    assert torch.allclose(log_q.double(), expected.double(), atol=1e-6)
    # SMC's task names the same shared generator
    _, from_smc = load_trained_generator(run_dir / "double_well_2d" / "smc" / "seed0")
    with torch.no_grad():
        assert torch.equal(from_smc.model.log_prob(samples.x), log_q)


def test_loading_refuses_other_methods_and_unfinished_training(run_dir, tmp_path):
    with pytest.raises(ValueError, match="trains no generator"):
        load_trained_generator(run_dir / "double_well_2d" / "pt" / "seed0")
    with pytest.raises(FileNotFoundError, match="not a task folder"):
        load_trained_generator(tmp_path)
    alone = tmp_path / "double_well_2d" / "bg" / "seed0" / "checkpoint"
    alone.mkdir(parents=True)
    source = run_dir / "double_well_2d" / "bg" / "seed0" / "checkpoint"
    for name in ("settings.json", "settings.json.sha256"):
        shutil.copy(source / name, alone / name)
    with pytest.raises(ValueError, match="has not finished"):
        load_trained_generator(alone.parent)
