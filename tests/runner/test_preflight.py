"""Every problem of a run is found before anything runs, also by --dry-run (exit 2)."""

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from boltzgen.runner.cli import main
from boltzgen.systems import CATALOG

HMC = {"method": "hmc", "n_chains": 4, "n_warmup": 2, "n_steps": 4, "n_leapfrog": 2}


def experiment(folder: Path, systems, methods=None, name="e.yaml") -> Path:
    raw = {"name": "e", "systems": systems, "executor": "debug", "n_reference": 50}
    raw["methods"] = methods or {"hmc": HMC}
    path = folder / name
    path.write_text(yaml.safe_dump(raw))
    return path


def peptide_card(folder: Path, **energy) -> Path:
    """A copy of the vacuum alanine dipeptide card (and its structure) with ``energy`` changes."""
    card = yaml.safe_load((CATALOG / "alanine_dipeptide_vacuum.yaml").read_text())
    structure = CATALOG / card["energy"]["structure"]
    shutil.copy(structure, folder / structure.name)
    card["energy"]["structure"] = structure.name
    card["energy"].update(energy)
    path = folder / "cards" / "my_peptide.yaml"
    path.parent.mkdir(exist_ok=True)
    shutil.copy(structure, path.parent / structure.name)
    path.write_text(yaml.safe_dump(card))
    return path


def run(args, capsys):
    code = main(args)
    return code, capsys.readouterr()


@pytest.mark.parametrize("dry", [True, False])
@pytest.mark.parametrize(
    "problem, expected",
    [
        ({"forcefield": ["amber99sbildn_typo.xml"]}, "my_peptide.yaml"),
        ({"structure": "missing.pdb"}, "missing.pdb"),
    ],
)
def test_a_broken_card_fails_before_any_task_runs(tmp_path, capsys, dry, problem, expected):
    peptide_card(tmp_path, **problem)
    # the good system comes first: before the fix its task ran, then the card failed
    path = experiment(tmp_path, ["double_well_2d", "cards/my_peptide.yaml"])
    code, out = run(
        ["run", str(path), "--out", str(tmp_path / "run")] + ["--dry-run"] * dry, capsys
    )
    assert code == 2
    assert expected in out.err and "Traceback" not in out.err
    assert not (tmp_path / "run").exists()


def test_card_paths_are_relative_to_the_experiment_file(tmp_path, capsys, monkeypatch):
    peptide_card(tmp_path)
    path = experiment(tmp_path, ["cards/my_peptide.yaml"])
    monkeypatch.chdir(tmp_path.parent)
    code, out = run(["run", str(path), "--dry-run"], capsys)
    assert code == 0, out.err
    assert "checks passed" in out.out


@pytest.mark.parametrize("dry", [True, False])
def test_missing_training_data_fails_before_any_task_runs(tmp_path, capsys, monkeypatch, dry):
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path / "data"))
    train = {"loss": "mixed", "steps": 2}
    bg = {"method": "boltzmann_generator", "flow": {"kind": "internal"}, "train": train}
    path = experiment(
        tmp_path, ["double_well_2d", "alanine_dipeptide_vacuum"], {"hmc": HMC, "bg": bg}
    )
    code, out = run(
        ["run", str(path), "--out", str(tmp_path / "run")] + ["--dry-run"] * dry, capsys
    )
    assert code == 2
    assert "methods.bg.train.loss" in out.err and "boltzgen reference" in out.err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field, value", [("n_chains", -4), ("n_steps", 0), ("n_leapfrog", -1)])
def test_non_positive_counts_are_config_errors(tmp_path, capsys, field, value):
    path = experiment(tmp_path, ["double_well_2d"], {"hmc": {**HMC, field: value}})
    code, out = run(["run", str(path), "--dry-run"], capsys)
    assert code == 2
    assert f"methods.hmc.{field}" in out.err and str(value) in out.err


def test_zero_warmup_stays_valid(tmp_path, capsys):
    path = experiment(tmp_path, ["double_well_2d"], {"hmc": {**HMC, "n_warmup": 0}})
    assert run(["run", str(path), "--dry-run"], capsys)[0] == 0


@pytest.mark.parametrize("where", ["experiment", "card"])
def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys, where):
    card = peptide_card(tmp_path)
    path = experiment(tmp_path, ["cards/my_peptide.yaml"])
    broken = path if where == "experiment" else card
    lines = broken.read_text().splitlines()
    lines.insert(2, "oops: [unclosed")
    broken.write_text("\n".join(lines) + "\n")
    code, out = run(["run", str(path), "--dry-run"], capsys)
    assert code == 2
    assert f"{broken.name}:" in out.err and "YAML syntax error" in out.err
    line = int(out.err.split(f"{broken.name}:")[1].split(":")[0])
    assert 3 <= line <= 5
    assert "Traceback" not in out.err and "yaml." not in out.err


def test_a_pt_reference_set_is_training_data_for_a_card_that_reads_pt(
    tmp_path, monkeypatch, vacuum_card
):
    from boltzgen.records.reference_sets import (
        reference_dir,
        split_manifest,
        write_frames,
        write_manifest,
    )
    from boltzgen.runner.preflight import has_training_data
    from boltzgen.systems import load_system

    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path / "data"))
    system = load_system(vacuum_card("{kind: pt}"))
    assert not has_training_data(system)
    out = reference_dir(system.name, "pt")
    out.mkdir(parents=True)
    x = system.initial_positions.expand(4, -1, -1).clone()
    empty = torch.zeros(4, 1, dtype=torch.float64)
    write_frames(out, x, torch.zeros(4, dtype=torch.float64), empty, empty)
    made_for = {"energy": system.card["energy"], "temperature": system.temperature}
    write_manifest(out, {"split": split_manifest(4), **made_for})
    assert has_training_data(system)
