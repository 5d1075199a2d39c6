"""Effective sample size of WeightedSamples and ESS per unit cost."""

import math

import pytest
import torch

from boltzgen.metrics import (
    ess_per_energy_eval,
    ess_per_second,
    integrated_time,
    kish_ess,
    sample_ess,
)
from boltzgen.records import Cost, WeightedSamples

from .test_autocorrelation import ar1


def chain_samples(energy_chains: torch.Tensor) -> WeightedSamples:
    """WeightedSamples of ``[T, C]`` chains stored step-major."""
    steps, chains = energy_chains.shape
    u = energy_chains.reshape(-1)
    n = steps * chains
    return WeightedSamples(
        torch.zeros(n, 1), torch.zeros(n, dtype=torch.float64), u, n_chains=chains
    )


def test_independent_draws_use_kish_ess():
    lw = torch.randn(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    samples = WeightedSamples(torch.zeros(200, 1), lw, torch.zeros(200, dtype=torch.float64))
    assert sample_ess(samples) == kish_ess(lw)


def test_chains_use_the_slowest_series():
    energies, slow = ar1(0.3, 3_000, 4, seed=1), ar1(0.9, 3_000, 4, seed=2)
    samples = chain_samples(energies)
    assert sample_ess(samples) == pytest.approx(12_000 / integrated_time(energies), rel=1e-12)
    ess = sample_ess(samples, [slow.reshape(-1)])
    assert ess == pytest.approx(12_000 / integrated_time(slow), rel=1e-12)
    assert ess < sample_ess(samples)


def test_observable_of_wrong_shape_raises():
    samples = chain_samples(ar1(0.3, 100, 2, seed=3))
    with pytest.raises(ValueError, match=r"observables\[0\] must have shape \[200\]"):
        sample_ess(samples, [torch.zeros(100)])


@pytest.mark.parametrize(
    ("cost", "per_eval", "per_second"),
    [
        (Cost(energy_evals=100, force_evals=50, train_energy_evals=850, wall_s=1.0), 0.004, 4.0),
        (Cost(train_force_evals=8, wall_s=0.5, train_wall_s=1.5), 0.5, 2.0),
        (Cost(), math.nan, math.nan),
    ],
)
def test_ess_per_cost(cost, per_eval, per_second):
    samples = WeightedSamples(
        torch.zeros(4, 1), torch.zeros(4, dtype=torch.float64), torch.zeros(4), cost=cost
    )
    for metric, expected in [(ess_per_energy_eval, per_eval), (ess_per_second, per_second)]:
        if math.isnan(expected):
            assert math.isnan(metric(samples))
        else:
            assert metric(samples) == pytest.approx(expected, rel=1e-12)
            assert metric(samples, ess=2.0) == pytest.approx(expected / 2, rel=1e-12)
