"""HMC and MALA leave the target invariant: Gaussian moments within a few standard errors
(with the integrated autocorrelation time), and detailed balance of the binned kernel,
which the unadjusted Langevin step visibly violates."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from boltzgen.energies.toy import CorrelatedGaussian
from boltzgen.kernels import hmc, langevin, mala
from boltzgen.kernels.potential import Potential, from_energy
from boltzgen.metrics import integrated_time

F64 = torch.float64
Step = Callable[[torch.Generator, Tensor, Potential], Tensor]
"""One kernel step from ``x``, returning the new positions."""


def _hmc(step_size: float, n_leapfrog: int) -> Step:
    def step(g: torch.Generator, x: Tensor, potential: Potential) -> Tensor:
        new, _ = hmc.step(g, hmc.init(x, potential), potential, step_size, n_leapfrog)
        return new.x

    return step


def _mala(step_size: float) -> Step:
    def step(g: torch.Generator, x: Tensor, potential: Potential) -> Tensor:
        new, _ = mala.step(g, langevin.init(x, potential), potential, step_size)
        return new.x

    return step


def _ula(step_size: float) -> Step:
    def step(g: torch.Generator, x: Tensor, potential: Potential) -> Tensor:
        new, _ = langevin.step(g, langevin.init(x, potential), potential, step_size)
        return new.x

    return step


KERNELS = {"hmc": _hmc(0.25, 5), "mala": _mala(0.15)}


def _mean_and_stderr(series: Tensor) -> tuple[float, float]:
    """Mean of ``series: [T, C]`` and its standard error √(var · τ_int / n)."""
    return float(series.mean()), math.sqrt(
        float(series.var()) * integrated_time(series) / series.numel()
    )


@pytest.mark.parametrize("kernel", KERNELS)
def test_chains_recover_gaussian_mean_and_covariance(kernel: str) -> None:
    energy = CorrelatedGaussian([1.0, -2.0], [[1.0, 0.8], [0.8, 1.0]])
    potential = from_energy(energy)
    g = torch.Generator().manual_seed(0)
    x = 3.0 * torch.randn(64, 2, generator=g, dtype=F64)
    for _ in range(200):  # burn-in from an overdispersed start
        x = KERNELS[kernel](g, x, potential)
    kept = []
    for _ in range(1000):
        x = KERNELS[kernel](g, x, potential)
        kept.append(x)
    chains = torch.stack(kept)  # [T, C, 2]
    for i in range(2):
        value, se = _mean_and_stderr(chains[..., i])
        assert se < 0.1
        assert abs(value - float(energy.mean[i])) < 4 * se, (i, value, se)
        for j in range(i, 2):
            value, se = _mean_and_stderr(chains[..., i] * chains[..., j])
            expected = float(energy.cov[i, j] + energy.mean[i] * energy.mean[j])
            assert abs(value - expected) < 4 * se, (i, j, value, expected, se)


def _flux_asymmetry(step: Step, n: int = 400_000) -> Tensor:
    """(N_ij − N_ji) / √(N_ij + N_ji) for i < j over 4 bins of a 1-D Gaussian target, with
    x ~ N(μ, σ²) exactly and y one kernel step from x. Zero mean for a reversible kernel."""
    mean, sigma = 0.5, 0.7
    energy = CorrelatedGaussian([mean], [[sigma**2]])
    g = torch.Generator().manual_seed(7)
    x = mean + sigma * torch.randn(n, 1, generator=g, dtype=F64)
    y = step(g, x, from_energy(energy))
    edges = torch.tensor([mean - sigma, mean, mean + sigma], dtype=F64)
    i, j = torch.bucketize(x[:, 0], edges), torch.bucketize(y[:, 0], edges)
    counts = torch.zeros(4, 4, dtype=F64).index_put_((i, j), torch.ones(n, dtype=F64), True)
    upper = torch.triu_indices(4, 4, offset=1)
    forward, backward = counts[upper[0], upper[1]], counts[upper[1], upper[0]]
    return (forward - backward) / (forward + backward).sqrt()


@pytest.mark.parametrize("kernel", KERNELS)
def test_binned_kernel_is_in_detailed_balance(kernel: str) -> None:
    assert float(_flux_asymmetry(KERNELS[kernel]).abs().max()) < 5.0


def test_detailed_balance_check_detects_the_unadjusted_langevin_bias() -> None:
    """ULA from the target spreads it (variance σ² + ε²/σ² after one step): flux out of
    the central bins exceeds the flux back."""
    assert float(_flux_asymmetry(_ula(0.3)).abs().max()) > 20.0
