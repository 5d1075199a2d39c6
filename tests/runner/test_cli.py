"""The command line: a tiny experiment end to end, resume, and user errors → exit 2."""

import json

import numpy as np
import pytest
import yaml

from boltzgen.runner.cli import main

TINY = {
    "name": "tiny",
    "systems": ["double_well_2d"],
    "seeds": [0, 1],
    "executor": "debug",
    "methods": {
        "hmc": {"method": "hmc", "n_chains": 16, "n_warmup": 20, "n_steps": 40},
        "bg": {
            "method": "boltzmann_generator",
            "flow": {"n_layers": 2, "hidden": 16},
            "train": {"steps": 10, "batch_size": 64, "n_data": 500, "checkpoint_every": 5},
            "n_samples": 500,
        },
    },
    "n_reference": 500,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    experiment = root / "tiny.yaml"
    experiment.write_text(yaml.safe_dump(TINY))
    assert main(["run", str(experiment), "--out", str(root / "run")]) == 0
    return root / "run"


def test_run_writes_the_design_run_folder(run_dir):
    for method in ("hmc", "bg"):
        for seed in (0, 1):
            task = run_dir / "double_well_2d" / method / f"seed{seed}"
            result = json.loads((task / "result.json").read_text())
            for key in (
                "system",
                "method",
                "seed",
                "n_samples",
                "ess",
                "ess_fraction",
                "cost",
                "free_energies",
                "observables",
                "metrics",
                "versions",
                "config",
            ):
                assert key in result, key
            assert set(result["cost"]) >= {
                "energy_evals",
                "force_evals",
                "wall_s",
                "train_energy_evals",
                "train_wall_s",
            }
            fe = result["free_energies"]["right_vs_left"]
            assert fe["reference"] == pytest.approx(4.7772741, abs=1e-6)
            with np.load(task / "samples.npz") as data:
                assert set(data.files) == {"x", "log_weights", "energies"}
    assert (run_dir / "double_well_2d" / "bg" / "seed0" / "checkpoint").is_dir()
    assert (run_dir / "summary.csv").exists() and (run_dir / "report.md").exists()
    assert (run_dir / "double_well_2d_samples.png").exists()
    assert (run_dir / "double_well_2d_log_weights.png").exists()
    assert (run_dir / "manifest.yaml").exists()


def test_training_cost_is_charged_to_the_generator(run_dir):
    result = json.loads((run_dir / "double_well_2d" / "bg" / "seed0" / "result.json").read_text())
    assert result["cost"]["train_energy_evals"] >= 10 * 64 // 2
    assert result["cost"]["energy_evals"] == 500


def test_finished_tasks_are_not_rerun(run_dir, tmp_path):
    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(yaml.safe_dump(TINY))
    result = run_dir / "double_well_2d" / "hmc" / "seed0" / "result.json"
    before = result.stat().st_mtime_ns
    assert main(["run", str(experiment), "--out", str(run_dir)]) == 0
    assert result.stat().st_mtime_ns == before


def test_report_rebuilds_summary(run_dir, capsys):
    (run_dir / "summary.csv").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert "right_vs_left" in (run_dir / "summary.csv").read_text()
    assert "hmc" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change, field",
    [
        ({"methods": {"hmc": {"method": "hmc", "n_stepz": 5}}}, "methods.hmc.n_stepz"),
        ({"systems": ["tripple_well"]}, "systems[0]"),
        ({"methods": {"x": {"method": "nuts"}}}, "methods.x.method"),
    ],
)
def test_bad_yaml_exits_2_naming_the_field_without_traceback(tmp_path, capsys, change, field):
    experiment = tmp_path / "bad.yaml"
    experiment.write_text(yaml.safe_dump({**TINY, **change}))
    assert main(["run", str(experiment), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"`{field}`" in err and str(experiment) in err
    assert "Traceback" not in err
    assert not (tmp_path / "r" / "double_well_2d").exists()


def test_systems_lists_the_catalog(systems_listing):
    code, out = systems_listing
    assert code == 0
    assert "double_well_2d" in out and "many_well_32d" in out
