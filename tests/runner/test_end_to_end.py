"""Every method, run through the runner on the double well, recovers the exact answers.

One experiment (one seed per method) on ``double_well_2d``; each method's ΔF (and log Z
where it estimates one) must lie within 4 standard errors of the quadrature value. An
estimate its method flags as not converged must not carry a standard error instead.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml

from boltzgen.runner.config import parse_experiment
from boltzgen.runner.executors import run_debug
from boltzgen.runner.tasks import plan
from boltzgen.systems import load_system

GENERATOR = {
    "flow": {"n_layers": 3, "hidden": 32},
    "train": {"loss": "forward_kl", "steps": 200, "batch_size": 256, "n_data": 5000},
}
METHODS = yaml.safe_load(
    """
hmc: {method: hmc, n_chains: 512, n_warmup: 600, n_steps: 1200, n_leapfrog: 5, thin: 3}
pt: {method: parallel_tempering, n_temperatures: 4, t_max_factor: 6.0, n_chains: 16,
     n_warmup: 200, n_steps: 1500, n_leapfrog: 5}
bg: {method: boltzmann_generator, n_samples: 20000}
smc: {method: smc, n_particles: 5000, n_steps: 10}
fmcmc: {method: flow_mcmc, n_chains: 64, n_warmup: 50, n_steps: 300}
fhmc: {method: flow_hmc, n_chains: 64, n_warmup: 50, n_steps: 150, n_leapfrog: 3}
snf: {method: snf, n_blocks: 3, block_steps: 3, hidden: 32, train_steps: 200,
      batch_size: 256, n_samples: 10000}
fp: {method: flow_perturbation, hidden: 32, train_steps: 3000, n_data: 5000, ode_steps: 8,
     scale_steps: 50, n_samples: 20000, n_segments: 4}
"""
)
METHODS["bg"].update(GENERATOR)
for label in ("smc", "fmcmc", "fhmc"):
    METHODS[label]["generator"] = GENERATOR
SLOW = {"snf", "fp", "fhmc"}  # 25–30 s each on one core
CASES = [pytest.param(k, marks=pytest.mark.slow) if k in SLOW else k for k in METHODS]


def run(root, label: str) -> dict:
    raw = {
        "name": "end_to_end",
        "systems": ["double_well_2d"],
        "seeds": [0],
        "n_reference": 1000,
        "methods": {label: METHODS[label]},
    }
    experiment = parse_experiment(raw, "end_to_end.yaml")
    errors = []
    run_debug(plan(experiment), root, lambda t, r, e: errors.append(e) if e else None, experiment)
    assert not errors, errors
    result = json.loads((root / "double_well_2d" / label / "seed0" / "result.json").read_text())
    out = {f"ΔF {k}": v for k, v in result["free_energies"].items()}
    if "log_z" in result:
        out["log Z"] = result["log_z"]
    return out


@pytest.mark.parametrize("label", CASES)
def test_each_method_recovers_the_exact_answers(tmp_path, label):
    system = load_system("double_well_2d")
    exact = {f"ΔF {k}": v for k, v in system.reference_free_energies().items()}
    exact["log Z"] = system.reference_log_z()
    for name, entry in run(tmp_path, label).items():
        assert entry["reference"] == pytest.approx(exact[name], abs=1e-9)
        if entry.get("converged", True) is False:
            assert entry["stderr"] is None or not math.isfinite(entry["stderr"]), (name, entry)
            continue
        value, stderr = entry["value"], entry["stderr"]
        assert value is not None and stderr is not None and 0 < stderr < 1.0, (name, entry)
        assert abs(value - exact[name]) < 4 * stderr, (label, name, entry)
