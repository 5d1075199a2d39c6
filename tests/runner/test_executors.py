"""Executors: submitit and dask give the debug executor's results; budgets; resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from boltzgen.runner.config import parse_experiment
from boltzgen.runner.executors import render_job_script, run_dask, run_debug, run_slurm
from boltzgen.runner.manifest import task_status, write_manifest
from boltzgen.runner.tasks import plan

HMC = {"method": "hmc", "n_chains": 8, "n_warmup": 10, "n_steps": 20, "n_leapfrog": 5}
RAW = {
    "name": "x",
    "systems": ["double_well_2d"],
    "seeds": [0, 1],
    "methods": {"hmc": HMC},
    "n_reference": 200,
}


def collect(results):
    def report(task, result, error):
        assert error is None, error
        results[task.key] = result

    return report


def samples(run_dir, key):
    with np.load(run_dir / key / "samples.npz") as data:
        return data["x"]


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("debug")
    experiment = parse_experiment(RAW, "x.yaml")
    run_debug(plan(experiment), run_dir, collect({}), experiment)
    return run_dir


def test_submitit_local_array_matches_debug(debug_run, tmp_path):
    experiment = parse_experiment({**RAW, "resources": {"cpus": 1, "time_min": 5}}, "x.yaml")
    results = {}
    run_slurm(plan(experiment), tmp_path, collect(results), experiment, cluster="local")
    assert sorted(results) == ["double_well_2d/hmc/seed0", "double_well_2d/hmc/seed1"]
    for key in results:
        np.testing.assert_array_equal(samples(tmp_path, key), samples(debug_run, key))
    assert list((tmp_path / "submitit").iterdir())


def test_dask_local_cluster_matches_debug(debug_run, tmp_path):
    experiment = parse_experiment({**RAW, "resources": {"scheduler": "local", "jobs": 2}}, "x.yaml")
    results = {}
    run_dask(plan(experiment), tmp_path, collect(results), experiment)
    assert len(results) == 2
    for key in results:
        np.testing.assert_array_equal(samples(tmp_path, key), samples(debug_run, key))


KILLED = """
import sys
from pathlib import Path
from boltzgen.runner.config import parse_experiment
from boltzgen.runner.tasks import plan, run_task
raw = {"name": "k", "systems": ["double_well_2d"], "seeds": [3], "n_reference": 200,
       "methods": {"bg": {"method": "boltzmann_generator", "n_samples": 400,
                          "flow": {"n_layers": 2, "hidden": 16},
                          "train": {"steps": STEPS, "batch_size": 32, "n_data": 300,
                                    "checkpoint_every": 5}}}}
run_task(plan(parse_experiment(raw, "k.yaml"))[0], Path(sys.argv[1]))
"""


def run_script(run_dir, steps, kill_after_checkpoint=False):
    script = KILLED.replace("STEPS", str(steps))
    process = subprocess.Popen([sys.executable, "-c", script, str(run_dir)])
    if kill_after_checkpoint:
        checkpoint = run_dir / "double_well_2d" / "bg" / "seed3" / "checkpoint"
        deadline = time.time() + 120
        while not any(checkpoint.glob("*")) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(process.pid, signal.SIGKILL)
    return process.wait(timeout=300)


@pytest.mark.faults
def test_task_killed_part_way_resumes_to_the_same_result(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_script(whole, 400) == 0
    assert run_script(killed, 400, kill_after_checkpoint=True) == -signal.SIGKILL
    assert not (killed / "double_well_2d/bg/seed3/result.json").exists()
    assert run_script(killed, 400) == 0
    key = "double_well_2d/bg/seed3"
    np.testing.assert_array_equal(samples(killed, key), samples(whole, key))
    a, b = (json.loads((d / key / "result.json").read_text()) for d in (whole, killed))
    assert a["free_energies"] == b["free_energies"]
    assert a["cost"]["train_energy_evals"] == b["cost"]["train_energy_evals"]


RESOURCES = {
    "cpus": 4,
    "gpus": 1,
    "memory_gb": 16,
    "time_min": 90,
    "partition": "gpu-short",
    "account": "chem42",
    "setup": ["source .venv/bin/activate"],
}


def test_slurm_script_contains_the_resources():
    experiment = parse_experiment({**RAW, "resources": RESOURCES}, "x.yaml")
    script = render_job_script(experiment, "slurm")
    for line in (
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --partition=gpu-short",
        "#SBATCH --account=chem42",
        "#SBATCH --time=90",
        "#SBATCH --mem=16384MB",
        "#SBATCH --gpus-per-node=1",
        "source .venv/bin/activate",
    ):
        assert line in script, line


def test_pbs_script_contains_the_resources():
    experiment = parse_experiment({**RAW, "resources": {**RESOURCES, "scheduler": "pbs"}}, "x.yaml")
    script = render_job_script(experiment, "dask")
    for text in (
        "#PBS -q gpu-short",
        "#PBS -A chem42",
        "ncpus=4",
        "walltime=01:30:00",
        "mem=16GB",
        "ngpus=1",
        "source .venv/bin/activate",
    ):
        assert text in script, text


@pytest.mark.parametrize(
    ("scheduler", "lines"),
    [
        ("lsf", ('#BSUB -P "chem42"', "#BSUB -q gpu-short")),
        ("sge", ("#$ -P chem42", "#$ -q gpu-short")),
    ],
)
def test_lsf_and_sge_scripts_charge_the_account_as_their_project(scheduler, lines):
    resources = {**RESOURCES, "scheduler": scheduler, "gpus": 0}
    experiment = parse_experiment({**RAW, "resources": resources}, "x.yaml")
    script = render_job_script(experiment, "dask")
    for line in (*lines, "source .venv/bin/activate"):
        assert line in script, line


@pytest.mark.parametrize("budget", [20_000, 100_000])
def test_budget_sizes_every_method_within_it(tmp_path, budget):
    raw = {
        **RAW,
        "seeds": [0],
        "budget": {"energy_evals": budget},
        "methods": {
            "hmc": HMC,
            "bg": {
                "method": "boltzmann_generator",
                "n_samples": 2000,
                "flow": {"n_layers": 2, "hidden": 8},
                "train": {"steps": 100, "batch_size": 64, "n_data": 200},
            },
        },
    }
    experiment = parse_experiment(raw, "x.yaml")
    results = {}
    run_debug(plan(experiment), tmp_path, collect(results), experiment)
    for result in results.values():
        c = result["cost"]
        spent = (
            c["energy_evals"] + c["force_evals"] + c["train_energy_evals"] + c["train_force_evals"]
        )
        assert 0.8 * budget <= spent <= budget, (result["method"], spent)


def test_budget_too_small_is_a_config_error():
    from boltzgen.errors import ConfigError

    raw = {**RAW, "budget": {"energy_evals": 10}}
    with pytest.raises(ConfigError, match="budget"):
        plan(parse_experiment(raw, "x.yaml"))


def test_sweep_expands_method_labels():
    raw = {
        **RAW,
        "methods": {"hmc": {**HMC, "sweep": {"n_leapfrog": [2, 4], "step_size": [0.1, 0.2]}}},
    }
    experiment = parse_experiment(raw, "x.yaml")
    labels = [m.label for m in experiment.methods]
    assert labels == [
        "hmc-n_leapfrog2-step_size0.1",
        "hmc-n_leapfrog2-step_size0.2",
        "hmc-n_leapfrog4-step_size0.1",
        "hmc-n_leapfrog4-step_size0.2",
    ]
    assert (
        experiment.methods[3].params.n_leapfrog == 4
        and experiment.methods[3].params.step_size == 0.2
    )


def test_status_reports_done_failed_and_pending(tmp_path):
    experiment = parse_experiment({**RAW, "seeds": [0, 1, 2]}, "x.yaml")
    tasks = plan(experiment)
    write_manifest(tmp_path, experiment, "debug", tasks)
    run_debug(tasks[:1], tmp_path, collect({}), experiment)
    failed = tasks[1].directory(tmp_path)
    failed.mkdir(parents=True)
    (failed / "error.txt").write_text("Traceback ...\nValueError: boom\n")
    states = {key: (state, detail) for key, state, detail in task_status(tmp_path)}
    assert states[tasks[0].key] == ("done", "")
    assert states[tasks[1].key] == ("failed", "ValueError: boom")
    assert states[tasks[2].key] == ("pending", "")
