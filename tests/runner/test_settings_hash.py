"""Results are never reused for other settings, and the manifest describes what ran."""

import json

import pytest
import yaml

from boltzgen.runner.cli import main
from boltzgen.runner.config import parse_experiment
from boltzgen.runner.tasks import StaleResultError, plan, run_task, settings_hash

HMC = {"method": "hmc", "n_chains": 4, "n_warmup": 5, "n_steps": 30, "n_leapfrog": 3}
RAW = {"name": "t", "systems": ["double_well_2d"], "executor": "debug", "n_reference": 50}


@pytest.fixture
def first_run(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**RAW, "methods": {"hmc": HMC}}))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out)]) == 0
    return path, out, out / "double_well_2d" / "hmc" / "seed0"


def result(folder):
    return json.loads((folder / "result.json").read_text())


def test_result_and_checkpoint_carry_the_settings_hash(first_run):
    _, _, folder = first_run
    task = plan(parse_experiment({**RAW, "methods": {"hmc": HMC}}, "x.yaml"))[0]
    assert result(folder)["settings_hash"] == settings_hash(task)
    stamp = json.loads((folder / "checkpoint" / "settings.json").read_text())
    assert stamp["settings_hash"] == settings_hash(task)
    assert stamp["settings"]["params"]["n_steps"] == 30


def test_rerun_with_other_settings_is_refused_and_nothing_is_rewritten(first_run, capsys):
    path, out, folder = first_run
    manifest = (out / "manifest.yaml").read_text()
    before = result(folder)
    code = main(["run", str(path), "--out", str(out), "--set", "methods.hmc.n_steps=60"])
    err = capsys.readouterr().err
    assert code == 2
    assert "n_steps: 30 → 60" in err and "--force" in err
    assert result(folder) == before
    assert (out / "manifest.yaml").read_text() == manifest


def test_force_recomputes_with_the_new_settings(first_run):
    path, out, folder = first_run
    args = ["run", str(path), "--out", str(out), "--set", "methods.hmc.n_steps=60", "--force"]
    assert main(args) == 0
    assert result(folder)["config"]["n_steps"] == 60
    manifest = yaml.safe_load((out / "manifest.yaml").read_text())
    assert manifest["experiment"]["methods"]["hmc"]["n_steps"] == 60
    assert (
        manifest["settings_hashes"]["double_well_2d/hmc/seed0"] == result(folder)["settings_hash"]
    )


def test_same_settings_reuse_the_result(first_run):
    path, out, folder = first_run
    finished = result(folder)["finished"]
    assert main(["run", str(path), "--out", str(out)]) == 0
    assert result(folder)["finished"] == finished


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    tasks = [
        plan(parse_experiment({**RAW, "methods": {"hmc": {**HMC, "n_steps": n}}}, "x.yaml"))[0]
        for n in (30, 60)
    ]
    (tasks[0].directory(tmp_path) / "checkpoint").mkdir(parents=True)
    (tasks[0].directory(tmp_path) / "checkpoint" / "settings.json").write_text(
        json.dumps({"settings_hash": settings_hash(tasks[0]), "settings": {}})
    )
    with pytest.raises(StaleResultError):
        run_task(tasks[1], tmp_path)
    assert run_task(tasks[1], tmp_path, force=True)["config"]["n_steps"] == 60
