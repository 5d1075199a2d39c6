"""Experiment ``systems:`` entries with keyword overrides of their cards, and sweeps of them."""

import csv
import json
import math

import pytest
import torch
import yaml

from boltzgen.errors import ConfigError
from boltzgen.records import WeightedSamples
from boltzgen.runner.cli import main
from boltzgen.runner.config import parse_experiment
from boltzgen.runner.system_specs import load_task_system
from boltzgen.runner.tasks import plan, settings_hash, task_settings
from boltzgen.systems import load_system

HMC = {"method": "hmc", "n_chains": 4, "n_warmup": 5, "n_steps": 20, "n_leapfrog": 3}
LADDER = {"temperature": [2.0, 1.0, 0.6]}
ISING = {"name": "ising_2d", "overrides": {"L": 4}, "sweep": {"K": [0.3, 0.44]}}


def experiment(systems, **extra):
    raw = {"name": "t", "systems": systems, "methods": {"hmc": HMC}, **extra}
    return parse_experiment(raw, "x.yaml")


def test_entries_expand_to_labels_with_their_overrides():
    systems = [
        "double_well_2d",
        {"name": "kob_andersen_2d_ternary", "overrides": {"n_particles": 64}, "sweep": LADDER},
        {"name": "u1_2d", "label": "u1_beta3", "overrides": {"beta": 3.0}},
        {"name": "phi4_2d", "overrides": {"L": 16}},
    ]
    specs = experiment(systems).systems
    assert [s.label for s in specs] == [
        "double_well_2d",
        "kob_andersen_2d_ternary-temperature2.0",
        "kob_andersen_2d_ternary-temperature1.0",
        "kob_andersen_2d_ternary-temperature0.6",
        "u1_beta3",
        "phi4_2d",
    ]
    assert specs[0].overrides == {} and specs[4].overrides == {"beta": 3.0}
    assert specs[3].overrides == {"n_particles": 64, "temperature": 0.6}
    assert {s.card for s in specs[1:4]} == {"kob_andersen_2d_ternary"}


def test_two_swept_keys_make_a_grid_first_key_outermost():
    entry = {"name": "phi4_2d", "sweep": {"m2": [-4, -3], "lam": [8, 9]}}
    labels = [s.label for s in experiment([entry]).systems]
    assert labels == [
        "phi4_2d-m2-4-lam8",
        "phi4_2d-m2-4-lam9",
        "phi4_2d-m2-3-lam8",
        "phi4_2d-m2-3-lam9",
    ]


@pytest.mark.parametrize(
    "systems, field, words",
    [
        ([{"name": "triple_well"}], "systems[0].name", "names no system"),
        ([{"overrides": {"K": 1}}], "systems[0].name", "must be"),
        ([{"name": "ising_2d", "overides": {"K": 1}}], "systems[0].overides", "not a known"),
        ([{"name": "ising_2d", "overrides": [1]}], "systems[0].overrides", "must map"),
        ([{"name": "ising_2d", "sweep": {"K": 0.3}}], "systems[0].sweep.K", "non-empty list"),
        ([{"name": "ising_2d", "sweep": {"K": []}}], "systems[0].sweep.K", "non-empty list"),
        (
            [{"name": "ising_2d", "label": "a", "sweep": {"K": [0.3]}}],
            "systems[0].label",
            "sweep",
        ),
        ([{"name": "ising_2d", "label": "a/b"}], "systems[0]", "folder name"),
        ([{"name": "ising_2d", "sweep": {"L": [[4, 4]]}}], "systems[0]", "folder name"),
        (["ising_2d", {"name": "ising_2d", "overrides": {"K": 0.3}}], "systems[1]", "systems[0]"),
        ([3], "systems[0]", "must be a name"),
    ],
)
def test_bad_entries_name_the_field(systems, field, words):
    with pytest.raises(ConfigError) as info:
        experiment(systems)
    message = str(info.value)
    assert f"`{field}`" in message and words in message, message


def test_settings_hash_changes_with_an_override_and_not_without_one():
    plain = plan(experiment(["ising_2d"]))[0]
    assert "overrides" not in task_settings(plain)
    hashes = {
        settings_hash(plan(experiment([{"name": "ising_2d", "overrides": {"K": k}}]))[0])
        for k in (0.3, 0.31)
    }
    assert len(hashes) == 2 and settings_hash(plain) not in hashes
    labelled = experiment([{"name": "ising_2d", "label": "x", "overrides": {"K": 0.3}}])
    assert settings_hash(plan(labelled)[0]) in hashes  # a label is a folder, not a setting


def write(tmp_path, systems) -> str:
    raw = {"name": "t", "systems": systems, "methods": {"hmc": HMC}, "executor": "debug"}
    raw["n_reference"] = 50
    path = tmp_path / "experiments" / "x.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return str(path)


WELL = {"name": "double_well_2d", "sweep": {"temperature": [1.0, 2.0]}}


def test_a_swept_run_writes_one_folder_per_point_on_the_overridden_energy(tmp_path):
    out = tmp_path / "run"
    assert main(["run", write(tmp_path, [WELL, ISING]), "--out", str(out)]) == 0
    references = {}
    for k in (0.3, 0.44):
        folder = out / f"ising_2d-K{k}" / "hmc" / "seed0"
        result = json.loads((folder / "result.json").read_text())
        assert result["system"] == f"ising_2d-K{k}" and result["system_card"] == "ising_2d"
        assert result["config"]["system_overrides"] == {"L": 4, "K": k}
        exact = load_system("ising_2d", L=4, K=k)
        samples = WeightedSamples.load(folder)
        recomputed = exact.energy.energy(samples.x.to(torch.float64))
        assert torch.allclose(recomputed, samples.energies.to(recomputed), rtol=1e-9, atol=1e-9)
        reference = result["observables"]["energy_density"]["reference"]
        assert math.isclose(reference, exact.reference_observables()["energy_density"])
        references[k] = reference
    assert not math.isclose(references[0.3], references[0.44])
    with (out / "summary.csv").open() as handle:
        rows = {r["system"]: r for r in csv.DictReader(handle)}
    for t in (1.0, 2.0):
        row = rows[f"double_well_2d-temperature{t}"]
        assert json.loads(row["overrides"]) == {"temperature": t}
        exact = load_system("double_well_2d", temperature=t).reference_free_energies()
        assert float(row["reference"]) == pytest.approx(exact["right_vs_left"], rel=1e-4)
    assert (
        rows["double_well_2d-temperature1.0"]["reference"]
        != rows["double_well_2d-temperature2.0"]["reference"]
    )
    assert '`ising_2d-K0.44`: ising_2d, {"L":4,"K":0.44}' in (out / "report.md").read_text()
    assert "`double_well_2d-temperature2.0`: double_well_2d, " in (out / "report.md").read_text()


def test_exact_log_z_follows_the_override():
    for k in (0.3, 0.44):
        spec = experiment([{"name": "ising_2d", "overrides": {"K": k, "L": 4}}]).systems[0]
        got = load_task_system(spec).reference_log_z()
        assert got == pytest.approx(load_system("ising_2d", K=k, L=4).reference_log_z())
    at = [load_system("ising_2d", K=k, L=4).reference_log_z() for k in (0.3, 0.44)]
    assert at[0] != pytest.approx(at[1])


def test_changing_an_override_is_refused_as_other_settings(tmp_path, capsys):
    out = tmp_path / "run"
    entry = {"name": "ising_2d", "label": "ising", "overrides": {"L": 4, "K": 0.3}}
    assert main(["run", write(tmp_path, [entry]), "--out", str(out)]) == 0
    entry["overrides"]["K"] = 0.35
    code = main(["run", write(tmp_path, [entry]), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "overrides.K: 0.3 → 0.35" in err and "--force" in err


@pytest.mark.parametrize("dry", [True, False])
def test_a_typo_in_an_override_fails_before_any_task_runs(tmp_path, capsys, dry):
    entry = {"name": "double_well_2d", "sweep": {"temprature": [1.0, 2.0]}}
    path = write(tmp_path, ["ising_2d", entry])
    code = main(["run", path, "--out", str(tmp_path / "run")] + ["--dry-run"] * dry)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"{path}: field `systems[1].overrides.temprature`" in err and "q4" in err
    assert not (tmp_path / "run").exists()


def test_a_value_the_builder_refuses_names_its_key(tmp_path, capsys):
    path = write(tmp_path, [{"name": "ising_2d", "overrides": {"L": 0, "K": 0.3}}])
    code = main(["run", path, "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "systems[0].overrides" in err, err


def test_dry_run_lists_labels_and_overrides(tmp_path, capsys):
    assert main(["run", write(tmp_path, [ISING]), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "ising_2d-K0.44" in text and "L=4 K=0.44" in text and "2 systems" in text


@pytest.mark.parametrize("overrides", [{"temperature": 0.5}, {"L": 4, "temperature": 2.0}])
def test_a_temperature_override_of_a_lattice_card_names_the_override(overrides):
    spec = experiment([{"name": "u1_2d", "overrides": overrides}]).systems[0]
    with pytest.raises(ConfigError) as info:
        load_task_system(spec)
    message = str(info.value)
    assert "`systems[0].overrides.temperature`" in message and "override beta" in message
