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


def _grid_log_z_and_right(energy, low=-8.0, high=8.0, n=1601):
    """log ∫exp(−u) and log P(x₁ > 0) of a 2-D energy by a trapezoid grid (independent check)."""
    t = torch.linspace(low, high, n, dtype=torch.float64)
    x1, x2 = torch.meshgrid(t, t, indexing="ij")
    u = energy.energy(torch.stack([x1.flatten(), x2.flatten()], dim=1)).reshape(n, n)
    density = torch.exp(-u)
    total = torch.trapezoid(torch.trapezoid(density, t, dim=1), t)
    right = torch.trapezoid(torch.trapezoid(density * (x1 > 0), t, dim=1), t)
    return math.log(float(total)), math.log(float(right / total))


@pytest.mark.parametrize("temperature", [0.7, 2.0])
def test_double_well_card_at_another_temperature_keeps_an_exact_reference(tmp_path, temperature):
    system = load_system(card(tmp_path, temperature=temperature))
    assert system.energy.temperature == temperature
    x = torch.tensor([[-2.0, 0.5], [1.5, -1.0]], dtype=torch.float64)
    native = load_system("double_well_2d").energy.energy(x)
    torch.testing.assert_close(system.energy.energy(x), native / temperature)
    log_z, log_right = _grid_log_z_and_right(system.energy)
    assert system.reference_log_z() == pytest.approx(log_z, abs=1e-6)
    # the grid's step at the state boundary x₁ = 0 limits its accuracy to ~1e-3
    assert system.energy.interval_log_prob(0, 0.0, math.inf) == pytest.approx(log_right, abs=2e-3)
    draws = system.sample_reference(200_000, torch.Generator().manual_seed(3))
    p_right = float((draws[:, 0] > 0).double().mean())
    se = math.sqrt(p_right * (1 - p_right) / len(draws))
    exact = math.exp(system.energy.interval_log_prob(0, 0.0, math.inf))
    assert abs(p_right - exact) < 4 * se


def test_tempered_gaussian_is_the_gaussian_with_scaled_covariance():
    from boltzgen.energies.toy import CorrelatedGaussian

    base = CorrelatedGaussian([0.5, -1.0], [[1.0, 0.6], [0.6, 2.0]])
    hot = base.at_temperature(3.0)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(hot.energy(x), base.energy(x) / 3.0)
    assert hot.log_z == pytest.approx(base.log_z + math.log(3.0), abs=1e-12)  # det(3Σ)^{1/2}
    assert hot.counter is base.counter


def test_tempered_mixture_card_with_an_exact_reference_is_refused(tmp_path):
    data = yaml.safe_load(load_system("gaussian_mixture_2d").card_path.read_text())
    data["temperature"] = 2.0
    path = tmp_path / "mixture.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"`reference\.kind`.*native temperature"):
        load_system(path)


@pytest.mark.parametrize(
    "name, overrides, shape",
    [
        ("phi4_2d", {}, (8, 8)),
        ("phi4_2d", {"L": 16, "m2": -3.0, "lam": 4.0}, (16, 16)),
        ("u1_2d", {"L": 6, "beta": 3.0}, (2, 6, 6)),
        ("ising_2d", {"L": 4, "K": 0.3}, (4, 4)),
    ],
)
def test_lattice_cards_take_keyword_overrides(name, overrides, shape):
    system = load_system(name, **overrides)
    assert system.energy.event_shape == shape
    for key, value in overrides.items():
        assert system.card["energy"]["params"][key] == value
    assert system.observables


def test_lattice_exact_references():
    from boltzgen.energies.lattice import kaufman_ising, u1_exact

    ising = load_system("ising_2d", L=8, K=0.44)
    assert ising.reference_log_z() == pytest.approx(kaufman_ising(8, 0.44).log_z, abs=1e-12)
    u1 = load_system("u1_2d")
    assert u1.reference_observables()["plaquette"] == pytest.approx(u1_exact(8, 2.0).plaquette)
    assert load_system("phi4_2d").reference_log_z() is None


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="not a parameter of u1_wilson"):
        load_system("u1_2d", beta_typo=3.0)


@pytest.mark.parametrize(
    "name, coupling", [("phi4_2d", "lam = 16"), ("u1_2d", "beta = 1"), ("ising_2d", "K = 0.22")]
)
def test_lattice_cards_refuse_a_temperature_and_name_the_coupling(name, coupling):
    """A lattice action is dimensionless (u = S, T = 1): its couplings are its temperature."""
    with pytest.raises(ConfigError, match=rf"`temperature`.*dimensionless.*{coupling}"):
        load_system(name, temperature=2.0)
    assert load_system(name, temperature=1.0).temperature == 1.0
