"""Autocorrelation and integrated autocorrelation time against exact results."""

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from boltzgen.metrics import autocorrelation, autocovariance, integrated_time, mcmc_ess


def ar1(phi: float, steps: int, chains: int, seed: int) -> torch.Tensor:
    """``[steps, chains]`` of x_t = φ x_{t−1} + ε_t, ε ~ N(0, 1), started stationary."""
    rng = np.random.default_rng(seed)
    start = rng.normal(size=chains) / np.sqrt(1 - phi**2)
    noise = rng.normal(size=(steps, chains))
    x = lfilter([1.0], [1.0, -phi], noise, axis=0, zi=phi * start[None, :])[0]
    return torch.from_numpy(x)


def direct_autocovariance(x: torch.Tensor) -> torch.Tensor:
    """O(T²) reference: chain-averaged (1/T) Σ_s δx_s δx_{s+t}."""
    dx = x - x.mean(dim=0)
    t = x.shape[0]
    return torch.stack([(dx[: t - k] * dx[k:]).sum(dim=0).mean() / t for k in range(t)])


@pytest.mark.parametrize("shape", [(50,), (50, 3), (37, 1), (1, 4)])
def test_fft_autocovariance_matches_direct_sum(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    chains = x if x.dim() == 2 else x[:, None]
    assert torch.allclose(autocovariance(x), direct_autocovariance(chains), atol=1e-12)
    rho = autocorrelation(x)
    assert rho[0] == 1.0
    assert rho.shape == (shape[0],)


def test_single_chain_equals_one_column():
    x = ar1(0.5, 500, 1, seed=0)
    assert integrated_time(x[:, 0]) == integrated_time(x)


@pytest.mark.parametrize("phi", [0.5, 0.8])
def test_ar1_autocorrelation_is_geometric(phi):
    rho = autocorrelation(ar1(phi, 20_000, 8, seed=1))
    lags = torch.arange(6, dtype=torch.float64)
    assert torch.allclose(rho[:6], phi**lags, atol=0.02)


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_ar1_integrated_time(phi):
    """τ_int = (1 + φ) / (1 − φ) for an AR(1) process."""
    tau = integrated_time(ar1(phi, 50_000, 16, seed=2))
    assert tau == pytest.approx((1 + phi) / (1 - phi), rel=0.1 if phi else 0.05)


def test_anticorrelated_series_counts_as_independent():
    assert integrated_time(ar1(-0.5, 5_000, 4, seed=4)) == 1.0


def test_constant_series():
    x = torch.full((100, 3), 2.5, dtype=torch.float64)
    assert integrated_time(x) == 1.0
    rho = autocorrelation(x)
    assert rho[0] == 1.0
    assert (rho[1:] == 0).all()


@pytest.mark.parametrize("phi", [0.0, 0.7])
def test_mcmc_ess_is_n_over_tau(phi):
    x = ar1(phi, 4_000, 5, seed=5)
    assert mcmc_ess(x) == pytest.approx(20_000 / integrated_time(x), rel=1e-12)
    assert mcmc_ess(x, c=8.0) == pytest.approx(20_000 / integrated_time(x, c=8.0), rel=1e-12)


@pytest.mark.parametrize(
    "series",
    [torch.zeros(4, 2, 2), torch.zeros(0), torch.tensor([0.0, float("nan"), 1.0])],
)
def test_bad_series_raise(series):
    with pytest.raises(ValueError, match="series"):
        integrated_time(series)


def test_known_mean_matches_the_chain_mean_on_a_long_stationary_series():
    x = ar1(0.8, 50_000, 4, seed=5)
    exact = (1 + 0.8) / (1 - 0.8)
    assert integrated_time(x, mean=0.0) == pytest.approx(exact, rel=0.1)
    assert integrated_time(x, mean=0.0) == pytest.approx(integrated_time(x), rel=0.02)


def test_frozen_chains_are_slow_only_with_the_known_mean():
    frozen = torch.tensor([1.0, -1.0, 2.0, -2.0]).repeat(400, 1)
    assert integrated_time(frozen) == 1.0
    assert integrated_time(frozen, mean=0.0) > 400 / 2
    assert torch.allclose(
        autocovariance(frozen, mean=0.0)[0], torch.tensor(2.5, dtype=torch.float64)
    )
