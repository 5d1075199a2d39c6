"""A stored reference set scores a system only if it was made for that system's energy and
temperature (its manifest's record); otherwise the result says why it was not used."""

from __future__ import annotations

import pytest
import torch

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
from boltzgen.systems import load_system

N_FRAMES = 40
MADE_AT = {"L": 4, "m2": -4.0, "lam": 8.0}


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A φ⁴ PT set at L = 4 whose manifest records the card's energy at L = 4, T = 1."""
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path))
    system = load_system("phi4_2d", **MADE_AT)
    x = torch.randn(N_FRAMES, 4, 4, generator=torch.Generator().manual_seed(0)).double()
    out = reference_dir("phi4_2d", "pt")
    out.mkdir(parents=True)
    empty = torch.zeros(N_FRAMES, 0, dtype=torch.float64)
    write_frames(out, x, system.energy.energy(x), empty, empty)
    made_for = {"energy": system.card["energy"], "temperature": system.temperature}
    write_manifest(out, {"split": split_manifest(N_FRAMES), **made_for})
    return out


def _score(system):
    x = torch.randn(64, 4, 4, generator=torch.Generator().manual_seed(1)).double()
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
