"""Parallel tempering: the ladder, the swap schedule, round trips, cost, and the sampler
against exact quadrature (free energy at T_0, swap acceptance of every neighbour pair)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.metrics import free_energy_difference
from boltzgen.metrics.mbar import ladder_state_free_energy
from boltzgen.records import WeightedSamples
from boltzgen.samplers.parallel_tempering import ParallelTempering, geometric_ladder

F64 = torch.float64
A_BARRIER, TILT = 8.0, 0.5  # u(x) = a(x² − 1)² + c·x: barrier ≈ 8 kT at T_0 = 1
LADDER = geometric_ladder(1.0, 10.0, 5)
N_CHAINS = 16


class DoubleWell1D(Energy):
    """u(x) = a(x² − 1)² + c·x in reduced units at T_0 = 1, with its analytic force."""

    def __init__(self, a: float = A_BARRIER, c: float = TILT):
        super().__init__((1,), temperature=1.0)
        self.a, self.c = a, c

    def _energy(self, x: Tensor) -> Tensor:
        y = x[:, 0]
        return self.a * (y * y - 1.0) ** 2 + self.c * y

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = x[:, 0]
        return self._energy(x), -(4.0 * self.a * y * (y * y - 1.0) + self.c)[:, None]


class Flat(Energy):
    """u = 0: every swap is accepted."""

    def __init__(self) -> None:
        super().__init__((1,), temperature=1.0)

    def _energy(self, x: Tensor) -> Tensor:
        return 0.0 * x[:, 0]


def _u(x: np.ndarray | float) -> np.ndarray | float:
    return A_BARRIER * (x * x - 1.0) ** 2 + TILT * x


def exact_delta_f() -> float:
    """−ln(P(x > 0) / P(x < 0)) at T_0 = 1 by adaptive quadrature."""
    p_a = integrate.quad(lambda x: math.exp(-_u(x)), -4.0, 0.0, points=[-1.0])[0]
    p_b = integrate.quad(lambda x: math.exp(-_u(x)), 0.0, 4.0, points=[1.0])[0]
    return -math.log(p_b / p_a)


def exact_swap_acceptance(t_i: float, t_j: float) -> float:
    """E[min(1, exp((β_i − β_j)(u(x_i) − u(x_j))))], x_i ~ p_{T_i}, x_j ~ p_{T_j}, on a grid."""
    x = np.linspace(-3.0, 3.0, 3001)
    u = _u(x)
    p_i, p_j = np.exp(-(u - u.min()) / t_i), np.exp(-(u - u.min()) / t_j)
    p_i, p_j = p_i / p_i.sum(), p_j / p_j.sum()
    log_alpha = (1.0 / t_i - 1.0 / t_j) * (u[:, None] - u[None, :])
    return float(p_i @ np.exp(np.minimum(log_alpha, 0.0)) @ p_j)


def _in_a(x: Tensor) -> Tensor:
    return x[:, 0] < 0


def _in_b(x: Tensor) -> Tensor:
    return x[:, 0] > 0


@pytest.fixture(scope="module", params=["hmc", "langevin"])
def double_well_run(request: pytest.FixtureRequest) -> WeightedSamples:
    n_leapfrog = 5 if request.param == "hmc" else 1
    pt = ParallelTempering(
        DoubleWell1D(), LADDER, move=request.param, step_size=0.1, n_leapfrog=n_leapfrog
    )
    x0 = -torch.ones(N_CHAINS, 1, dtype=F64)  # every replica starts in the left well
    return pt.sample(
        x0,
        n_steps=3000,
        generator=torch.Generator().manual_seed(1),
        n_warmup=300,
        states={"A": _in_a, "B": _in_b},
    )


def test_geometric_ladder_has_constant_ratio_and_exact_ends() -> None:
    ladder = geometric_ladder(300.0, 600.0, 5)
    assert ladder[0] == 300.0 and ladder[-1] == 600.0 and len(ladder) == 5
    ratios = np.array(ladder[1:]) / np.array(ladder[:-1])
    np.testing.assert_allclose(ratios, 2.0 ** (1 / 4), rtol=1e-12)


@pytest.mark.parametrize("args", [(1.0, 1.0, 3), (2.0, 1.0, 3), (1.0, 2.0, 1), (0.0, 2.0, 3)])
def test_geometric_ladder_rejects_bad_arguments(args: tuple[float, float, int]) -> None:
    with pytest.raises(ValueError):
        geometric_ladder(*args)


def test_recovers_double_well_free_energy_at_lowest_temperature(
    double_well_run: WeightedSamples,
) -> None:
    value, stderr = free_energy_difference(double_well_run, _in_a, _in_b)
    assert stderr < 0.1
    assert abs(value - exact_delta_f()) < 4 * stderr


def test_mbar_over_all_temperatures_recovers_free_energy(double_well_run: WeightedSamples) -> None:
    value, stderr = ladder_state_free_energy(double_well_run, "A", "B")
    assert stderr < 0.1
    assert abs(value - exact_delta_f()) < 4 * stderr


def test_mbar_over_a_run_shorter_than_its_correlation_keeps_enough_steps() -> None:
    """State B visited in one stretch, the last quarter of a 200-step run, on every rung
    and chain, energies the same in A and B: g of the indicator is about the run's length,
    so a stride of ⌈g⌉ would keep the first step alone (B never seen, ΔF infinite). The
    stride keeps 20 steps, a quarter of them in B: ΔF_{B vs A} = ln 3 up to the energies'
    noise, with a finite error bar."""
    n, temperatures, chains = 200, [1.0, 2.0], 4
    g = torch.Generator().manual_seed(0)
    energies = torch.rand(n, len(temperatures), chains, generator=g, dtype=torch.float64)
    in_b = torch.zeros(n, len(temperatures), chains, dtype=torch.bool)
    in_b[150:] = True
    info = {
        "temperatures": temperatures,
        "ladder_energies": energies,
        "ladder_states": {"A": ~in_b, "B": in_b},
    }
    x = torch.zeros(1, 1, dtype=torch.float64)
    samples = WeightedSamples(x, torch.zeros(1), torch.zeros(1), info=info)
    value, stderr = ladder_state_free_energy(samples, "A", "B")
    assert abs(value - math.log(3.0)) < 0.1
    assert math.isfinite(stderr)


@pytest.mark.parametrize("pair", range(len(LADDER) - 1))
def test_swap_acceptance_matches_exact_energy_distributions(
    double_well_run: WeightedSamples, pair: int
) -> None:
    per_chain = torch.tensor(double_well_run.info["swap_acceptance_prob_per_chain"][pair])
    stderr = float(per_chain.std() / math.sqrt(per_chain.numel()))  # chains are independent
    exact = exact_swap_acceptance(LADDER[pair], LADDER[pair + 1])
    assert 0.0 < stderr < 0.02
    assert abs(float(per_chain.mean()) - exact) < 4 * stderr


def test_warmup_tunes_each_temperature_toward_target_acceptance(
    double_well_run: WeightedSamples,
) -> None:
    acceptance = np.array(double_well_run.info["move_acceptance"])
    assert np.all(np.abs(acceptance - 0.8) < 0.1), acceptance
    assert double_well_run.info["round_trips"] > 100


def test_swaps_alternate_even_and_odd_pairs() -> None:
    pt = ParallelTempering(Flat(), [1.0, 2.0, 3.0, 4.0], n_leapfrog=1)
    state = pt.init(torch.zeros(2, 1, dtype=F64))
    g = torch.Generator().manual_seed(0)
    attempted = []
    for _ in range(4):
        state, info = pt.step(state, g)
        attempted.append(info.swap_attempted.tolist())
    even, odd = [True, False, True], [False, True, False]
    assert attempted == [even, odd, even, odd]


@pytest.mark.parametrize("swap_every", [1, 3])
def test_swap_every_sets_the_number_of_attempts(swap_every: int) -> None:
    pt = ParallelTempering(Flat(), [1.0, 2.0, 3.0], n_leapfrog=1, swap_every=swap_every)
    samples = pt.sample(torch.zeros(2, 1, dtype=F64), 12, torch.Generator().manual_seed(0), 0)
    rounds = 12 // swap_every
    assert samples.info["swap_attempts"] == [math.ceil(rounds / 2), rounds // 2]


@pytest.mark.parametrize("n_temps", [2, 3, 5])
def test_round_trips_are_ballistic_when_every_swap_is_accepted(n_temps: int) -> None:
    # With all swaps accepted, deterministic even/odd swaps move each walker one rung
    # per step: bottom → top → bottom takes exactly 2K steps.
    ladder = [1.0 + k for k in range(n_temps)]
    pt = ParallelTempering(Flat(), ladder, n_leapfrog=1, target_acceptance=None)
    samples = pt.sample(torch.zeros(3, 1, dtype=F64), 400, torch.Generator().manual_seed(0), 0)
    assert samples.info["swap_acceptance"] == [1.0] * (n_temps - 1)
    assert abs(samples.info["mean_round_trip_steps"] - 2 * n_temps) < 0.05
    assert samples.info["round_trips"] >= 3 * n_temps * (400 // (2 * n_temps) - 1)


def test_cost_counts_every_replica_and_samples_are_at_lowest_temperature() -> None:
    energy = DoubleWell1D()
    ladder, n_chains, n_leapfrog, n_warmup, n_steps = [1.0, 2.0, 4.0], 4, 3, 5, 10
    pt = ParallelTempering(energy, ladder, step_size=0.05, n_leapfrog=n_leapfrog)
    samples = pt.sample(
        torch.zeros(n_chains, 1, dtype=F64), n_steps, torch.Generator().manual_seed(0), n_warmup
    )
    expected = len(ladder) * n_chains * (1 + n_leapfrog * (n_warmup + n_steps))
    assert samples.cost.force_evals == expected == energy.counter.force
    assert samples.cost.energy_evals == 0
    assert samples.n_chains == n_chains and len(samples) == n_steps * n_chains
    ladder_energies = samples.info["ladder_energies"]
    assert ladder_energies.shape == (n_steps, len(ladder), n_chains)
    torch.testing.assert_close(samples.energies, ladder_energies[:, 0].reshape(-1))
    torch.testing.assert_close(samples.energies, energy.energy(samples.x))


def test_same_generator_seed_gives_identical_samples() -> None:
    pt = ParallelTempering(DoubleWell1D(), LADDER, step_size=0.1, n_leapfrog=2)
    x0 = torch.zeros(3, 1, dtype=F64)
    a, b = (pt.sample(x0, 20, torch.Generator().manual_seed(7), 10) for _ in range(2))
    assert torch.equal(a.x, b.x) and a.info["step_size"] == b.info["step_size"]


def test_tempered_view_targets_its_own_temperature() -> None:
    hot = DoubleWell1D().at_temperature(2.0)
    pt = ParallelTempering(hot, [2.0, 4.0], step_size=0.1, n_leapfrog=2)
    samples = pt.sample(torch.zeros(2, 1, dtype=F64), 5, torch.Generator().manual_seed(0), 0)
    torch.testing.assert_close(samples.energies, 0.5 * DoubleWell1D().energy(samples.x))


@pytest.mark.parametrize(
    "temperatures",
    [[2.0, 4.0], [1.0], [1.0, 3.0, 2.0], [1.0, 1.0]],
    ids=["not-at-target", "single", "unsorted", "repeated"],
)
def test_rejects_bad_ladders(temperatures: list[float]) -> None:
    with pytest.raises(ValueError, match="temperature"):
        ParallelTempering(DoubleWell1D(), temperatures)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="move"):
        ParallelTempering(DoubleWell1D(), [1.0, 2.0], move="gibbs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step_size"):
        ParallelTempering(DoubleWell1D(), [1.0, 2.0], step_size=[0.1, 0.1, 0.1])
    pt = ParallelTempering(DoubleWell1D(), [1.0, 2.0])
    with pytest.raises(ValueError, match="x0"):
        pt.init(torch.zeros(3, 3, 1, dtype=F64))
    with pytest.raises(ValueError, match="non-finite"):
        pt.init(torch.tensor([[math.inf]], dtype=F64))
