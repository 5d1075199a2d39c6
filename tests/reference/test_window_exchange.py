"""Exchanges between umbrella windows: the pairs, the rebuilt biased state, and the
acceptance rule checked against the exact stationary distribution of two windows."""

from __future__ import annotations

import pytest
import torch

from boltzgen.kernels import hmc
from boltzgen.kernels.potential import from_energy
from boltzgen.reference.umbrella import biased_potential, collective_variable
from boltzgen.reference.umbrella_mbar import Windows
from boltzgen.reference.window_exchange import ExchangeRecord, exchange, neighbour_pairs
from boltzgen.systems import load_system


@pytest.mark.parametrize(
    ("k", "parity", "periodic", "expected"),
    [
        (6, 0, False, [[0, 1], [2, 3], [4, 5]]),
        (6, 1, False, [[1, 2], [3, 4]]),
        (6, 1, True, [[1, 2], [3, 4], [5, 0]]),
        (5, 1, True, [[1, 2], [3, 4]]),  # (4, 0) would overlap (0, 1) of the other parity
        (5, 0, True, [[0, 1], [2, 3]]),
    ],
)
def test_neighbour_pairs_are_disjoint_and_wrap_only_for_an_even_periodic_ladder(
    k, parity, periodic, expected
):
    pairs = neighbour_pairs(k, parity, periodic)
    assert pairs.tolist() == expected
    assert len(set(pairs.flatten().tolist())) == pairs.numel()


def _walkers(n_chains: int, generator: torch.Generator):
    system = load_system("double_well_2d")
    cv = collective_variable(system.states["left"])
    windows = Windows(torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=torch.float64), 3.0, None)
    centres = windows.centres.repeat_interleave(n_chains)
    x = torch.randn(4 * n_chains, 2, generator=generator, dtype=torch.float64)
    potential = biased_potential(from_energy(system.energy), cv, windows, centres)
    return cv, windows, potential, hmc.init(x, potential)


def test_after_an_exchange_the_state_holds_the_biased_energy_and_gradient_of_its_window():
    generator = torch.Generator().manual_seed(0)
    cv, windows, potential, state = _walkers(8, generator)
    record = ExchangeRecord.start(4, 8)
    for parity in (0, 1, 0):
        state = exchange(state, cv, windows, 8, parity, generator, record)
    u, grad = potential(state.x)
    torch.testing.assert_close(state.energy, u)
    torch.testing.assert_close(state.grad, grad)
    assert int(record.accepted.sum()) > 0  # some swaps happened: the check is not vacuous
    assert sorted(record.replica.tolist()) == list(range(32))  # a permutation
    assert record.attempted.tolist() == [16, 8, 16, 0]


def test_a_swap_is_accepted_with_the_metropolis_probability_of_the_bias_change():
    # window 0 holds s = a, window 1 holds s = b, for every (a, b) on an 8 × 8 grid (one
    # chain index each); the swap rate must be min(1, exp(−Δ)), which makes the product
    # of the two windows' Boltzmann factors stationary (detailed balance).
    windows = Windows(torch.tensor([-0.5, 0.5], dtype=torch.float64), 2.0, None)
    grid = torch.linspace(-1.5, 1.5, 8, dtype=torch.float64)
    a, b = (g.reshape(-1) for g in torch.meshgrid(grid, grid, indexing="ij"))
    n = a.shape[0]
    x = torch.stack([torch.cat([a, b]), torch.zeros(2 * n, dtype=torch.float64)], dim=1)
    centres = windows.centres.repeat_interleave(n)
    state = hmc.HMCState(x, windows.bias(x[:, 0], centres), torch.zeros_like(x))
    record = ExchangeRecord.start(2, n)
    generator = torch.Generator().manual_seed(1)
    trials = 400
    swaps = torch.zeros(n, dtype=torch.float64)
    for _ in range(trials):
        out = exchange(state, lambda y: y[:, 0], windows, n, 0, generator, record)
        swaps += (out.x[:n, 0] != a).double()
    c0, c1 = windows.centres
    delta = windows.bias(b, c0) + windows.bias(a, c1) - windows.bias(a, c0) - windows.bias(b, c1)
    expected = torch.clamp(torch.exp(-delta), max=1.0)
    sigma = torch.sqrt(expected * (1 - expected) / trials).clamp(min=1e-3)
    seen = a != b  # a swap of equal values changes nothing that can be seen
    z = (swaps / trials - expected).abs() / sigma
    assert float(z[seen].max()) < 4.5
    assert float(expected.min()) < 0.2  # the grid holds unlikely swaps, not only sure ones
