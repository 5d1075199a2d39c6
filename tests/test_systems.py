"""The catalog: every card builds, references are exact, bad cards are named."""

import math

import pytest
import torch
import yaml

from boltzgen.errors import ConfigError
from boltzgen.systems import list_systems, load_system


def test_catalog_lists_the_toy_systems():
    assert {"double_well_2d", "gaussian_mixture_2d", "many_well_32d"} <= set(list_systems())


@pytest.mark.parametrize("name", ["double_well_2d", "gaussian_mixture_2d", "many_well_32d"])
def test_card_builds_a_valid_system(name):
    system = load_system(name)
    assert system.initial_positions.shape == system.energy.event_shape
    assert math.isfinite(float(system.energy.energy(system.initial_positions[None])[0]))
    for value in system.reference_free_energies().values():
        assert math.isfinite(value)


@pytest.mark.parametrize("name", ["double_well_2d", "gaussian_mixture_2d", "many_well_32d"])
def test_reference_free_energy_agrees_with_exact_samples(name):
    """Quadrature ΔF vs 10⁵ exact draws: within 4 standard errors (binomial delta method)."""
    system = load_system(name)
    x = system.sample_reference(100_000, torch.Generator().manual_seed(11))
    for (a, b), (label, exact) in zip(
        system.free_energy_pairs, system.reference_free_energies().items(), strict=True
    ):
        pa = system.states[a](x).double().mean().item()
        pb = system.states[b](x).double().mean().item()
        se = math.sqrt((1 - pa) / (pa * len(x)) + (1 - pb) / (pb * len(x)))
        assert abs(-math.log(pb / pa) - exact) < 4 * se, label


def test_double_well_reference_is_the_quadrature_value():
    system = load_system("double_well_2d")
    assert system.reference_free_energies()["right_vs_left"] == pytest.approx(4.7772741, abs=1e-6)


def card(tmp_path, **changes):
    data = yaml.safe_load(load_system("double_well_2d").card_path.read_text())
    data.update(changes)
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"temperture": 1.0}, "temperture"),
        ({"temperature": "hot"}, "temperature"),
        ({"energy": {"kind": "triple_well"}}, "energy.kind"),
        ({"energy": {"kind": "double_well", "params": {"q5": 1.0}}}, "energy.params.q5"),
        ({"initial_positions": [0.0, 0.0, 0.0]}, "initial_positions"),
        ({"states": {"left": {"coordinate": 5, "max": 0.0}}}, "states.left.coordinate"),
        ({"free_energies": [{"a": "left", "b": "middle"}]}, "free_energies[0].b"),
        ({"reference": {"kind": "download"}}, "reference.kind"),
    ],
)
def test_bad_card_names_file_and_field(tmp_path, changes, field):
    path = card(tmp_path, **changes)
    with pytest.raises(ConfigError) as info:
        load_system(path)
    assert str(path) in str(info.value) and f"`{field}`" in str(info.value)


def test_unknown_system_lists_the_catalog():
    with pytest.raises(ConfigError, match="double_well_2d"):
        load_system("double_wel_2d")
