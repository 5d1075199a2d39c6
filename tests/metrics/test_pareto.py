"""Pareto k̂ of importance weights against the exact tail index of a Gaussian pair."""

import math

import pytest
import torch

from boltzgen.metrics.convergence import state_coverage
from boltzgen.metrics.pareto import pareto_k, pareto_k_threshold, tail_is_reliable

F64 = torch.float64


def gaussian_log_weights(target_variance: float, n: int, seed: int) -> torch.Tensor:
    """x ~ N(0, 1) weighted towards N(0, σ²): log w = x²/2 − x²/(2σ²), whose tail has the
    Pareto shape k = 1 − 1/σ² (P(w > t) ~ t^(−1/k), up to logarithms)."""
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return 0.5 * x.square() * (1.0 - 1.0 / target_variance)


@pytest.mark.parametrize("target_variance", [1.25, 2.0, 4.0, 10.0])
def test_pareto_k_recovers_the_tail_index_of_a_gaussian_pair(target_variance):
    exact = 1.0 - 1.0 / target_variance
    fits = [pareto_k(gaussian_log_weights(target_variance, 20_000, seed)) for seed in range(8)]
    assert abs(sum(fits) / len(fits) - exact) < 0.1, (exact, fits)


def test_pareto_k_does_not_depend_on_the_weights_constant():
    lw = gaussian_log_weights(2.0, 5000, 0)
    assert pareto_k(lw + 1234.5) == pytest.approx(pareto_k(lw), abs=1e-9)


@pytest.mark.parametrize(
    "log_weights",
    [
        torch.zeros(1000, dtype=F64),
        torch.randn(20, generator=torch.Generator().manual_seed(0), dtype=F64),
        torch.full((5,), -math.inf, dtype=F64),
    ],
    ids=["uniform", "too-few", "all-zero-weight"],
)
def test_no_tail_to_fit_gives_none_and_is_not_flagged(log_weights):
    assert pareto_k(log_weights) is None
    assert tail_is_reliable(log_weights)


def test_threshold_follows_the_number_of_draws():
    assert pareto_k_threshold(10) == -math.inf
    assert pareto_k_threshold(50) == pytest.approx(1.0 - 1.0 / math.log10(50))
    assert pareto_k_threshold(100) == pytest.approx(0.5)
    assert pareto_k_threshold(10**8) == pytest.approx(0.5)


def test_heavy_tails_are_flagged_light_tails_are_not():
    assert tail_is_reliable(gaussian_log_weights(1.25, 20_000, 0))  # k = 0.2
    assert not tail_is_reliable(gaussian_log_weights(100.0, 20_000, 0))  # k = 0.99


def test_a_state_with_many_draws_but_a_heavy_tail_is_not_covered():
    lw = gaussian_log_weights(100.0, 20_000, 1)
    inside = torch.zeros(20_000, dtype=torch.bool)
    inside[:5000] = True
    assert float(1.0 / torch.softmax(lw[inside], 0).square().sum()) >= 10.0
    assert not state_coverage(lw, [inside], None)
    assert state_coverage(gaussian_log_weights(1.25, 20_000, 1), [inside], None)


def test_runs_that_each_hold_a_rare_state_need_enough_weight_inside_it():
    """8 runs of 100 equally weighted particles: a state held by one particle per run (ESS 8)
    is not covered; by two per run (ESS 16) it is; a run without it fails either way."""
    lw = torch.zeros(800, dtype=torch.float64)
    runs = torch.arange(800) % 100
    assert not state_coverage(lw, [runs < 1], 8)
    assert state_coverage(lw, [runs < 2], 8)
    missing = (runs < 2) & (torch.arange(800) >= 100)
    assert not state_coverage(lw, [missing], 8)


def test_a_fitted_k_is_used_instead_of_a_second_fit():
    light = gaussian_log_weights(1.25, 20_000, 2)
    assert tail_is_reliable(light, pareto_k(light)) == tail_is_reliable(light)
    assert not tail_is_reliable(light, 0.9)
