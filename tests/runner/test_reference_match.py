"""A stored reference set scores a system only if it was made for that system's energy and
temperature (its manifest's record); otherwise the result says why it was not used."""

from __future__ import annotations

import pytest
import torch
import yaml

from boltzgen.records import WeightedSamples
from boltzgen.records.reference_sets import (
    load_reference,
    reference_dir,
    settings_mismatch,
    split_manifest,
    write_frames,
    write_manifest,
)
from boltzgen.runner.evaluate import evaluate, load_reference_for
from boltzgen.runner.methods.training import training_reference
from boltzgen.runner.system_specs import SystemSpec, load_task_system
from boltzgen.systems import load_system

N_FRAMES = 40
MADE_AT = {"L": 4, "m2": -4.0, "lam": 8.0}


def _write_set(system, method, x):
    """``x`` stored as ``system``'s ``method`` set, its manifest recording how it was made."""
    out = reference_dir(system.name, method)
    out.mkdir(parents=True)
    empty = torch.zeros(len(x), 0, dtype=torch.float64)
    write_frames(out, x, system.energy.energy(x).detach(), empty, empty)
    made_for = {"energy": system.card["energy"], "temperature": system.temperature}
    write_manifest(out, {"split": split_manifest(len(x)), **made_for})
    return out


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A φ⁴ PT set at L = 4 whose manifest records the card's energy at L = 4, T = 1."""
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path))
    x = torch.randn(N_FRAMES, 4, 4, generator=torch.Generator().manual_seed(0)).double()
    return _write_set(load_system("phi4_2d", **MADE_AT), "pt", x)


def _score(system, L=4):
    x = torch.randn(64, L, L, generator=torch.Generator().manual_seed(1)).double()
    samples = WeightedSamples(x, torch.zeros(64, dtype=torch.float64), system.energy.energy(x))
    reference = load_reference_for(system, 1000)
    return reference, evaluate(system, samples, reference, torch.Generator().manual_seed(2))


def test_a_set_made_for_the_system_is_used(data):
    system = load_system("phi4_2d", L=4, m2=-4, lam=8)  # the same numbers, written as ints
    reference, result = _score(system)
    frames = load_reference("phi4_2d", "pt", part="evaluation")
    torch.testing.assert_close(reference.energies, frames.energies)
    assert result["metrics"]["e_w2"] is not None
    chi2 = result["observables"]["chi2"]
    assert chi2["reference"] == pytest.approx(system.reference_observables()["chi2"])
    assert chi2["reference_note"] == f"pt: {N_FRAMES // 2} evaluation frames"


@pytest.mark.parametrize("override", [{"lam": 6.0}, {"m2": -3.0}])
def test_a_set_made_at_other_settings_is_not_used(data, override):
    system = load_system("phi4_2d", **{**MADE_AT, **override})
    reference, result = _score(system)
    assert reference is None and "e_w2" not in result["metrics"]
    assert system.reference_observables() == {}
    for entry in result["observables"].values():
        assert entry["reference"] is None and "not used" in entry["reference_note"]
    with pytest.raises(ValueError, match="not used"):
        training_reference(system)


def test_a_set_that_records_no_settings_is_not_used(data):
    manifest = (data / "manifest.json").read_text()
    write_manifest(data, {"split": split_manifest(N_FRAMES)})
    assert "energy" in manifest
    system = load_system("phi4_2d", **MADE_AT)
    assert system.stored_reference().data is None
    assert "records no energy and temperature" in system.stored_reference().note
    assert load_reference_for(system, 10) is None


ENERGY = {"kind": "openmm", "pdb": "structures/x.pdb", "forcefield": ["amber14-all.xml"]}


@pytest.mark.parametrize(
    "manifest, fits",
    [
        ({"energy": ENERGY, "temperature": 300.0}, True),
        ({"energy": ENERGY, "temperature": 400.0}, False),
        ({"energy": {**ENERGY, "pdb": "structures/y.pdb"}, "temperature": 300.0}, False),
        ({"energy": ENERGY}, False),
        ({}, False),
    ],
)
def test_a_manifest_fits_only_its_own_energy_and_temperature(manifest, fits):
    reason = settings_mismatch(manifest, ENERGY, 300, "md")
    assert (reason is None) == fits
    assert fits or reason.startswith("the md set")


@pytest.fixture
def card_set(tmp_path, monkeypatch):
    """A φ⁴ PT set made at the card's own settings (L = 8, m² = −4, λ = 8)."""
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path))
    x = torch.randn(N_FRAMES, 8, 8, generator=torch.Generator().manual_seed(0)).double()
    return _write_set(load_system("phi4_2d"), "pt", x)


def _task_system(card, overrides):
    return load_task_system(SystemSpec("label", card, overrides, "x.yaml", "systems[0]"))


@pytest.mark.parametrize("override", [{"L": 8}, {"m2": -4, "lam": 8.0}])
def test_an_override_restating_the_card_keeps_its_set(card_set, override):
    system = _task_system("phi4_2d", override)
    reference, result = _score(system, L=8)
    frames = load_reference("phi4_2d", "pt", part="evaluation")
    torch.testing.assert_close(reference.energies, frames.energies)
    assert result["metrics"]["e_w2"] is not None
    chi2 = result["observables"]["chi2"]
    m = frames.x.sum(dim=(1, 2)) / 8  # χ₂ = V⟨M²⟩ = ⟨(Σφ)²⟩/V over the frames (⟨M⟩ = 0)
    assert chi2["reference"] == pytest.approx(float(m.square().mean()))
    assert chi2["reference_note"] == f"pt: {N_FRAMES // 2} evaluation frames"
    training = training_reference(system)
    assert training.part == "training" and len(training.x) == N_FRAMES // 2


def test_an_override_of_the_energy_drops_its_set_and_says_why(card_set):
    system = _task_system("phi4_2d", {"lam": 6.0})
    reference, result = _score(system, L=8)
    assert reference is None and "e_w2" not in result["metrics"]
    for entry in result["observables"].values():
        note = entry["reference_note"]
        assert entry["reference"] is None and "not used" in note
        assert '"lam": 8.0' in note and '"lam": 6.0' in note, note
    with pytest.raises(ValueError, match="not used"):
        training_reference(system)


@pytest.fixture
def tempered_md_card(tmp_path, monkeypatch):
    """A card of the 2-D Gaussian mixture at T = 2 (no exact answers there) reading an MD
    set made at T = 2; 200 frames, so the reference ΔF sees many left/right crossings."""
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path / "data"))
    card = yaml.safe_load(load_system("gaussian_mixture_2d").card_path.read_text())
    card.update(name="mixture_md", temperature=2.0, reference={"kind": "md"})
    path = tmp_path / "mixture_md.yaml"
    path.write_text(yaml.safe_dump(card))
    system = load_system(path)
    draws = load_system("gaussian_mixture_2d").energy.sample_exact(
        200, torch.Generator().manual_seed(4)
    )
    _write_set(system, "md", draws.to(torch.float64))
    return str(path)


def _free_energy_entry(system):
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1)).double() * 3
    samples = WeightedSamples(x, torch.zeros(64, dtype=torch.float64), system.energy.energy(x))
    reference = load_reference_for(system, 1000)
    result = evaluate(system, samples, reference, torch.Generator().manual_seed(2))
    return reference, result["free_energies"]["right_vs_left"]


def test_a_temperature_override_keeps_the_set_only_at_its_temperature(tempered_md_card):
    same = _task_system(tempered_md_card, {"temperature": 2.0})
    reference, entry = _free_energy_entry(same)
    frames = load_reference("mixture_md", "md", part="evaluation")
    torch.testing.assert_close(reference.energies, frames.energies)
    assert entry["reference"] is not None and entry["reference_note"].startswith("md: ")
    assert len(training_reference(same).x) == 100

    hotter = _task_system(tempered_md_card, {"temperature": 3.0})
    reference, entry = _free_energy_entry(hotter)
    assert reference is None and entry["reference"] is None
    note = entry["reference_note"]
    assert "at temperature 2.0" in note and "at 3.0: not used" in note, note
    with pytest.raises(ValueError, match=r"at 3\.0: not used"):
        training_reference(hotter)
