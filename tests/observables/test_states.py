"""State kinds are registered: a new kind needs no edit of the catalog code."""

from __future__ import annotations

import pytest
import torch
import yaml

from boltzgen.errors import ConfigError
from boltzgen.observables import states
from boltzgen.observables.states import (
    IntervalState,
    StateContext,
    interval_bounds,
    register_state_kind,
)
from boltzgen.systems import load_system

CARD = """
name: ring
energy: {kind: correlated_gaussian, params: {mean: [0.0, 0.0], cov: [[1.0, 0.0], [0.0, 1.0]]}}
temperature: 1.0
initial_positions: [0.0, 0.0]
states:
  inner: {radius: 0, max: 1.0}
  outer: {radius: 0, min: 1.0}
  left: {coordinate: 0, max: 0.0}
free_energies: [{a: inner, b: outer}]
"""


@pytest.fixture
def radius_kind(monkeypatch):
    """A kind ``radius`` (|x| in an interval) registered for this test only."""
    monkeypatch.setattr(states, "STATE_KINDS", dict(states.STATE_KINDS))

    @register_state_kind("radius")
    def radius(entry, context: StateContext):
        low, high = interval_bounds(entry, context)
        return lambda x: (x.norm(dim=-1) > low) & (x.norm(dim=-1) < high)

    return radius


def test_the_catalog_builds_a_registered_kind(tmp_path, radius_kind):
    path = tmp_path / "ring.yaml"
    path.write_text(CARD)
    system = load_system(path)
    x = torch.tensor([[0.5, 0.0], [-2.0, 1.0]], dtype=torch.float64)
    assert system.states["inner"](x).tolist() == [True, False]
    assert system.states["outer"](x).tolist() == [False, True]
    assert system.states["left"] == IntervalState(0, high=0.0)


def test_a_kind_is_registered_once(radius_kind):
    with pytest.raises(ValueError, match="radius"):
        register_state_kind("radius")(radius_kind)


@pytest.mark.parametrize(
    "entry, field",
    [
        ({"coordinate": 0, "phi": 0}, "states.inner"),
        ({"min": 0.0}, "states.inner"),
        ({"coordinate": 0, "radius": 1.0}, "states.inner"),
        ({"radius": 0, "max": "one"}, "states.inner.max"),
    ],
)
def test_a_bad_entry_names_the_card_and_field(tmp_path, radius_kind, entry, field):
    card = yaml.safe_load(CARD)
    card["states"] = {"inner": entry}
    card["free_energies"] = []
    path = tmp_path / "ring.yaml"
    path.write_text(yaml.safe_dump(card))
    with pytest.raises(ConfigError) as info:
        load_system(path)
    assert str(path) in str(info.value) and f"`{field}`" in str(info.value)
    assert "{radius, min, max}" in str(info.value) or field.endswith(".max")


def test_phi_states_need_a_molecule(tmp_path):
    card = yaml.safe_load(CARD)
    card["states"] = {"inner": {"phi": 0, "max": 0.0}}
    card["free_energies"] = []
    path = tmp_path / "ring.yaml"
    path.write_text(yaml.safe_dump(card))
    with pytest.raises(ConfigError, match=r"`states\.inner\.phi` needs a molecule"):
        load_system(path)
