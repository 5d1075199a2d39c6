"""Exact references are recognised by what an energy can compute, not by a card flag."""

from __future__ import annotations

import pytest
import yaml

from boltzgen.energies import ExactReference
from boltzgen.energies.toy import CorrelatedGaussian, DoubleWell2D, GaussianMixture, ManyWell
from boltzgen.systems import load_system


@pytest.mark.parametrize(
    "energy, exact",
    [
        (DoubleWell2D(), True),
        (DoubleWell2D().at_temperature(2.0), True),
        (ManyWell(2), True),
        (CorrelatedGaussian([0.0], [[2.0]]).at_temperature(0.5), True),
        (GaussianMixture([[0.0], [3.0]], [[1.0], [1.0]]), True),
        (GaussianMixture([[0.0], [3.0]], [[1.0], [1.0]]).at_temperature(2.0), False),
    ],
)
def test_toy_energies_are_exact_where_they_compute_their_answers(energy, exact):
    assert isinstance(energy, ExactReference) == exact


def test_a_card_without_the_flag_still_has_its_exact_reference(tmp_path):
    card = yaml.safe_load(load_system("double_well_2d").card_path.read_text())
    del card["reference"]
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(card))
    system = load_system(path)
    assert system.reference_kind == "none" and system.has_exact_reference
    assert (
        system.reference_free_energies() == load_system("double_well_2d").reference_free_energies()
    )


def test_a_molecule_has_no_exact_reference():
    system = load_system("alanine_dipeptide_vacuum")
    assert not system.has_exact_reference and system.reference_log_z() is None
