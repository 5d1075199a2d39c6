"""Every command an error message suggests works, run as written on a tiny case."""

import re
import shlex

import pytest
import torch
import yaml

from boltzgen.flows.internal import FixedFrameInternalCoordinates, StandardizeInternal, ZMatrix
from boltzgen.runner.cli import main
from boltzgen.runner.methods.flows import FlowParams, build_generator, minimise
from boltzgen.systems import load_system

SYSTEM = "alanine_dipeptide_vacuum"
BG = {
    "method": "boltzmann_generator",
    "flow": {"kind": "internal", "n_layers": 1, "hidden": 8, "conditioner_layers": 1},
    "train": {"loss": "forward_kl", "steps": 2, "batch_size": 8, "n_data": 16},
    "n_samples": 16,
}
TINY_REFERENCE = ["--ns", "0.002", "--frames", "20", "--equilibration-ps", "1"]


@pytest.fixture
def setup(tmp_path, monkeypatch, vacuum_card):
    """A run of the vacuum dipeptide (its card reading an MD set, so that the tiny reference
    below is one MD run) with no reference data yet."""
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path / "data"))
    card = str(vacuum_card("{kind: md}"))
    raw = {"name": "h", "systems": [card], "executor": "debug", "n_reference": 20}
    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump({**raw, "methods": {"bg": BG}}))
    return path


def hints(capsys, path) -> list[str]:
    assert main(["run", str(path), "--dry-run"]) == 2
    return re.findall(r"`([^`]+)`", capsys.readouterr().err)


def test_without_data_the_error_suggests_two_commands(setup, capsys):
    commands = hints(capsys, setup)
    assert any(c.startswith("boltzgen reference") for c in commands)
    assert any(c.startswith("--set ") for c in commands)


def test_suggested_reference_command_makes_the_run_work(setup, capsys, tmp_path):
    command = next(c for c in hints(capsys, setup) if c.startswith("boltzgen reference"))
    assert main(shlex.split(command)[1:] + TINY_REFERENCE) == 0
    assert main(["run", str(setup), "--out", str(tmp_path / "run")]) == 0


def test_suggested_reverse_kl_override_makes_the_run_work(setup, capsys, tmp_path):
    command = next(c for c in hints(capsys, setup) if c.startswith("--set "))
    args = ["run", str(setup), "--out", str(tmp_path / "run"), *shlex.split(command)]
    assert main(args) == 0
    result = (tmp_path / "run" / SYSTEM / "bg" / "seed0" / "result.json").read_text()
    assert '"loss": "reverse_kl"' in result


def test_internal_flow_without_data_is_centred_on_the_minimum():
    system = load_system(SYSTEM)
    model = build_generator(system, FlowParams(kind="internal", n_layers=1, hidden=8), seed=0)
    standardize = next(m for m in model.flow.modules() if isinstance(m, StandardizeInternal))
    ic = FixedFrameInternalCoordinates(ZMatrix.from_topology(system.topology))
    q0, _ = ic.inverse(minimise(system.energy, system.initial_positions)[None])
    layout = ic.layout
    torch.testing.assert_close(standardize.mean[~layout.torsion_mask], q0[0, ~layout.torsion_mask])
    assert torch.all(standardize.std[layout.bond_mask] == 0.005)
    assert torch.all(standardize.std[layout.angle_mask] == 0.15)
    assert torch.isfinite(standardize.std).all()


def test_minimise_lowers_the_energy_and_counts_its_evaluations():
    system = load_system(SYSTEM)
    x0 = system.initial_positions
    before = system.energy.counter.snapshot()
    x = minimise(system.energy, x0)
    spent = system.energy.counter.since(before)
    assert spent.force > 0
    assert float(system.energy.energy(x[None])) < float(system.energy.energy(x0[None]))


def test_a_negative_equilibration_is_a_usage_error(tmp_path, capsys):
    args = ["reference", SYSTEM, "--equilibration-ps", "-1", "--data", str(tmp_path)]
    assert main(args) == 2
    assert "--equilibration-ps" in capsys.readouterr().err
    assert not (tmp_path / SYSTEM / "md").exists()
