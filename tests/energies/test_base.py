"""The Energy contract: shapes, non-finite handling, counting, forces, tempering."""

import math

import pytest
import torch

from boltzgen.energies.base import Energy
from boltzgen.energies.toy import CorrelatedGaussian, DoubleWell2D, GaussianMixture, ManyWell


class Overlap(Energy):
    """u = 1/|x|²: infinite at the origin, like two overlapping particles."""

    def __init__(self):
        super().__init__((2,), temperature=300.0)

    def _energy(self, x):
        return 1.0 / (x * x).sum(dim=1)


def energies():
    return [
        DoubleWell2D(),
        ManyWell(n_copies=3),
        CorrelatedGaussian([1.0, -2.0, 0.5], [[1.0, 0.8, 0.1], [0.8, 1.0, 0.2], [0.1, 0.2, 2.0]]),
        GaussianMixture([[-1.0, 0.0], [2.0, 1.0]], [[0.5, 1.0], [0.7, 0.3]], [0.3, 0.7]),
    ]


@pytest.mark.parametrize("energy", energies(), ids=lambda e: type(e).__name__)
def test_force_is_minus_gradient_by_finite_differences(energy):
    x = torch.randn(
        4, *energy.event_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    force = energy.force(x)
    h = 1e-6
    for i in range(energy.dim):
        e = torch.zeros(energy.dim, dtype=torch.float64)
        e[i] = h
        e = e.reshape(energy.event_shape)
        numeric = (energy.energy(x + e) - energy.energy(x - e)) / (2 * h)
        torch.testing.assert_close(-force.reshape(4, -1)[:, i], numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("energy", energies(), ids=lambda e: type(e).__name__)
def test_analytic_force_matches_autograd(energy):
    x = torch.randn(
        5, *energy.event_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    _, autograd_force = Energy._force(energy, x)
    torch.testing.assert_close(energy.force(x), autograd_force, rtol=1e-12, atol=1e-12)


def test_nonfinite_configurations_get_infinite_energy_and_are_counted():
    energy = DoubleWell2D()
    x = torch.tensor(
        [[0.0, 1.0], [math.nan, 0.0], [math.inf, 1.0], [1.0, 2.0]], dtype=torch.float64
    )
    u = energy.energy(x)
    assert math.isfinite(u[0]) and math.isfinite(u[3])
    assert u[1] == math.inf and u[2] == math.inf
    assert energy.counter.energy == 4 and energy.counter.nonfinite == 2
    u, f = energy.energy_and_force(x)
    assert u[1] == math.inf and bool((f[1:3] == 0).all()) and bool(torch.isfinite(f).all())
    assert energy.counter.force == 4 and energy.counter.nonfinite == 4


def test_overlap_gives_infinite_energy_not_a_crash():
    energy = Overlap()
    u = energy.energy(torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64))
    assert u[0] == math.inf and u[1] == pytest.approx(0.5)
    assert energy.counter.nonfinite == 1


def test_gradient_through_energy_is_finite_next_to_nonfinite_rows():
    energy = DoubleWell2D()
    x = torch.tensor([[0.5, 1.0], [math.nan, 0.0]], dtype=torch.float64, requires_grad=True)
    u = energy.energy(x)
    u[0].backward()
    assert bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize("shape", [(3,), (4, 3), (2, 2, 1)])
def test_wrong_shape_is_a_clear_error(shape):
    with pytest.raises(ValueError, match=r"shape \[B, 2\]"):
        DoubleWell2D().energy(torch.zeros(shape, dtype=torch.float64))


@pytest.mark.parametrize("temperature", [0.5, 2.0, 7.0])
def test_tempered_view_scales_energy_and_force_and_shares_counter(temperature):
    energy = DoubleWell2D()
    hot = energy.at_temperature(temperature)
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(hot.energy(x), energy.energy(x) / temperature)
    torch.testing.assert_close(hot.force(x), energy.force(x) / temperature)
    assert energy.counter.energy == 12 and energy.counter.force == 12
    assert hot.at_temperature(1.0).energy(x).sub(energy.energy(x)).abs().max() < 1e-12
