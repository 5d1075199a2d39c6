"""Block averages and block-jackknife free-energy differences of correlated series."""

import math

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from boltzgen.metrics import Estimate, block_average, block_free_energy_difference
from boltzgen.records import WeightedSamples


def ar1(steps: int, chains: int, phi: float, seed: int) -> torch.Tensor:
    """``[steps, chains]`` of x_t = φ x_{t−1} + ε_t, ε ~ N(0, 1), started stationary."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((steps, chains))
    start = rng.standard_normal(chains) / math.sqrt(1 - phi**2)
    x, _ = lfilter([1.0], [1.0, -phi], noise, axis=0, zi=phi * start[None, :])
    return torch.from_numpy(x)


def two_state_chain(steps: int, chains: int, p_ab: float, p_ba: float, seed: int):
    """``[steps, chains]`` booleans (True = in B) of a two-state Markov chain.

    Holding times are geometric (leave A with probability p_ab per step, B with p_ba);
    each chain starts from the stationary distribution P_B = p_ab / (p_ab + p_ba).
    """
    rng = np.random.default_rng(seed)
    out = np.empty((steps, chains), dtype=bool)
    n_holds = int(2 * steps * max(p_ab, p_ba)) + 50
    for c in range(chains):
        in_b = rng.random() < p_ab / (p_ab + p_ba)
        leave = np.where((np.arange(n_holds) % 2 == 0) == in_b, p_ba, p_ab)
        holds = rng.geometric(leave)
        ends = np.cumsum(holds)
        assert ends[-1] >= steps
        segment = np.searchsorted(ends, np.arange(steps), side="right")
        out[:, c] = (segment % 2 == 0) == in_b
    return torch.from_numpy(out)


def trajectory(in_b: torch.Tensor) -> WeightedSamples:
    """Step-major WeightedSamples with ``x[:, 0]`` = 1 in B, 0 in A (energies unused)."""
    flat = in_b.reshape(-1).double()
    zeros = torch.zeros_like(flat)
    return WeightedSamples(flat[:, None], zeros, zeros, n_chains=in_b.shape[1])


def in_a(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0] == 0


def in_b(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0] == 1


@pytest.mark.parametrize(("steps", "chains"), [(100_000, 1), (10_000, 10)])
def test_iid_block_error_matches_sigma_over_root_n(steps, chains):
    x = torch.randn(steps, chains, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    estimate = block_average(x if chains > 1 else x[:, 0], n_blocks=100)
    expected = float(x.std()) / math.sqrt(x.numel())
    assert estimate.value == pytest.approx(float(x.mean()), abs=1e-12)
    assert estimate.stderr == pytest.approx(expected, rel=0.25)


@pytest.mark.parametrize(("chains", "seed"), [(1, 1), (8, 2)])
def test_ar1_block_error_includes_integrated_time(chains, seed):
    """AR(1), φ = 0.9: σ² = 1/(1 − φ²), τ_int = (1 + φ)/(1 − φ) = 19."""
    phi, steps = 0.9, 400_000 // chains
    x = ar1(steps, chains, phi, seed)
    expected = math.sqrt(19.0 / (1 - phi**2) / x.numel())
    estimate = block_average(x, n_blocks=100)
    assert estimate.stderr == pytest.approx(expected, rel=0.3)
    assert abs(estimate.value) < 4 * expected


def test_block_average_by_hand():
    """Blocks of 0..5 in 3: means 0.5, 2.5, 4.5, s = 2, se = 2/√3."""
    value, stderr = block_average(torch.arange(6.0), n_blocks=3)
    assert (value, stderr) == (2.5, pytest.approx(2 / math.sqrt(3), rel=1e-12))


@pytest.mark.parametrize("n_blocks", [1, 11])
def test_block_count_is_checked(n_blocks):
    with pytest.raises(ValueError, match="n_blocks"):
        block_average(torch.zeros(10), n_blocks=n_blocks)


@pytest.mark.parametrize(("chains", "seed"), [(1, 3), (4, 4)])
def test_two_state_chain_free_energy_within_4_standard_errors(chains, seed):
    """P_B / P_A = p_ab / p_ba = 1/5, so ΔF = ln 5."""
    samples = trajectory(two_state_chain(200_000 // chains, chains, 0.01, 0.05, seed))
    estimate = block_free_energy_difference(samples, in_a, in_b)
    assert 0 < estimate.stderr < 0.2
    assert abs(estimate.value - math.log(5.0)) < 4 * estimate.stderr


def test_two_state_chain_error_is_calibrated():
    """Spread of ΔF over 200 independent trajectories ≈ their typical block stderr."""
    states = two_state_chain(20_000, 200, 0.01, 0.05, seed=5)
    estimates = [block_free_energy_difference(trajectory(s[:, None]), in_a, in_b) for s in states.T]
    values = torch.tensor([e.value for e in estimates])
    rms_stderr = math.sqrt(sum(e.stderr**2 for e in estimates) / len(estimates))
    assert float(values.std()) == pytest.approx(rms_stderr, rel=0.3)
    assert float(values.mean()) == pytest.approx(math.log(5.0), abs=4 * rms_stderr / 10)


def test_weighted_value_matches_self_normalised_probabilities():
    in_b_mask = torch.tensor([False, True, False, False, True, False] * 10)
    lw = torch.linspace(-1.0, 1.0, 60, dtype=torch.float64)
    samples = WeightedSamples(in_b_mask.double()[:, None], lw, torch.zeros(60, dtype=torch.float64))
    w = torch.softmax(lw, dim=0)
    expected = math.log(float(w[~in_b_mask].sum()) / float(w[in_b_mask].sum()))
    estimate = block_free_energy_difference(samples, ~in_b_mask, in_b_mask, n_blocks=5)
    assert estimate.value == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(estimate.stderr)


def test_unvisited_or_single_block_state_has_infinite_error():
    never = trajectory(torch.zeros(100, 1, dtype=torch.bool))
    assert block_free_energy_difference(never, in_a, in_b) == Estimate(math.inf, math.inf)
    once = torch.zeros(100, 1, dtype=torch.bool)
    once[3:5] = True
    value, stderr = block_free_energy_difference(trajectory(once), in_a, in_b, n_blocks=10)
    assert value == pytest.approx(math.log(98 / 2)) and stderr == math.inf
