"""Observable kinds a card names: the energy observable of particle cards."""

from __future__ import annotations

import math

import pytest
import torch

from boltzgen.errors import ConfigError
from boltzgen.observables.kinds import OBSERVABLE_KINDS
from boltzgen.records import WeightedSamples
from boltzgen.runner.evaluate import evaluate
from boltzgen.systems import load_system

F64 = torch.float64


@pytest.mark.parametrize(
    "card, n", [("kob_andersen_3d", 160), ("kob_andersen_2d_ternary", 80), ("polydisperse_3d", 80)]
)
def test_particle_cards_report_the_energy_per_particle(card, n):
    """The weighted mean of U/N = u·T/N equals Σ w U(x)/N computed from the energy."""
    system = load_system(card, n_particles=n)
    g = torch.Generator().manual_seed(0)
    x0 = system.initial_positions.to(F64)
    x = x0 + 0.02 * torch.randn((6, *x0.shape), generator=g, dtype=F64)
    u = system.energy.energy(x)
    log_w = torch.randn(6, generator=g, dtype=F64)
    samples = WeightedSamples(x, log_w, u)
    result = evaluate(system, samples, None, torch.Generator().manual_seed(1))
    w = torch.softmax(log_w, 0)
    expected = float((w * u).sum()) * system.energy.temperature / n
    entry = result["observables"]["energy_per_particle"]
    assert math.isclose(entry["value"], expected, rel_tol=1e-12)
    assert entry["stderr"] > 0


def test_the_energy_observable_reads_the_energies_not_the_positions():
    observable = OBSERVABLE_KINDS["potential_energy_per_particle"]
    x = torch.zeros(3, 5, 2, dtype=F64)
    u = torch.tensor([1.0, 2.0, -4.0], dtype=F64)
    assert torch.equal(observable.values(x, u, 0.5), u * 0.5 / 5)


def test_an_unknown_kind_names_the_known_ones(tmp_path):
    card = tmp_path / "c.yaml"
    card.write_text(
        "name: c\nenergy: {kind: double_well}\ntemperature: 1.0\ninitial_positions: minimum\n"
        "observables: {e: energy_per_particle}\nreference: {kind: exact}\n"
    )
    with pytest.raises(ConfigError, match="potential_energy_per_particle"):
        load_system(str(card))
