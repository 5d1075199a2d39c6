"""MBAR helpers against exact Gaussian free energies, exact state probabilities, and the
statistical inefficiency of an AR(1) process."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.special import ndtr

from boltzgen.metrics.mbar import (
    ladder_reduced_energies,
    mbar_free_energies,
    mbar_state_free_energy,
    statistical_inefficiency,
)

F64 = torch.float64
TEMPERATURES = [1.0, 1.5, 2.25, 3.375]


def gaussian_ladder(dim: int, n_per_state: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact draws x ~ N(0, T_k I_d) at each T_k of u = |x|²/2 (reduced at T_0 = 1).

    Returns ``x [K·n, d]`` (state-major) and ``u_kn [K, K·n]`` with u_l = |x|² / (2 T_l).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.cat(
        [math.sqrt(t) * torch.randn(n_per_state, dim, generator=g, dtype=F64) for t in TEMPERATURES]
    )
    temps = torch.tensor(TEMPERATURES, dtype=F64)
    return x, 0.5 * x.square().sum(dim=1)[None, :] / temps[:, None]


@pytest.mark.parametrize("dim", [1, 3])
def test_mbar_free_energies_match_exact_gaussian_partition_functions(dim: int) -> None:
    n = 2000
    _, u_kn = gaussian_ladder(dim, n, seed=dim)
    f_k, df_k = mbar_free_energies(u_kn, torch.full((len(TEMPERATURES),), n))
    # Z_k = (2π T_k)^{d/2}: f_k − f_0 = −(d/2) ln(T_k / T_0)
    exact = -0.5 * dim * torch.log(torch.tensor(TEMPERATURES, dtype=F64) / TEMPERATURES[0])
    assert f_k[0] == 0.0 and df_k[0] == 0.0
    assert torch.all(df_k[1:] > 0) and torch.all(df_k < 0.05)
    assert torch.all((f_k - exact).abs()[1:] < 4 * df_k[1:]), (f_k, exact, df_k)


def test_mbar_free_energy_of_an_unsampled_state() -> None:
    n = 2000
    x, u_kn = gaussian_ladder(1, n, seed=5)
    unsampled_t = 1.8
    u_kn = torch.cat([u_kn, 0.5 * x.square().sum(dim=1)[None, :] / unsampled_t])
    n_k = torch.tensor([n] * len(TEMPERATURES) + [0])
    f_k, df_k = mbar_free_energies(u_kn, n_k)
    exact = -0.5 * math.log(unsampled_t / TEMPERATURES[0])
    assert 0 < df_k[-1] < 0.05
    assert abs(float(f_k[-1]) - exact) < 4 * float(df_k[-1])


@pytest.mark.parametrize("target", [0, 2])
def test_state_free_energy_uses_every_state_and_matches_exact_probabilities(target: int) -> None:
    n = 2000
    x, u_kn = gaussian_ladder(1, n, seed=10 + target)
    in_a, in_b = x[:, 0] < 0, x[:, 0] > 0.5
    value, stderr = mbar_state_free_energy(
        u_kn, torch.full((len(TEMPERATURES),), n), in_a, in_b, target
    )
    sigma = math.sqrt(TEMPERATURES[target])
    exact = -math.log((1.0 - ndtr(0.5 / sigma)) / 0.5)
    assert 0 < stderr < 0.05
    assert abs(value - exact) < 4 * stderr


def test_state_free_energy_of_an_empty_state_is_infinite() -> None:
    _, u_kn = gaussian_ladder(1, 50, seed=0)
    n_k = torch.full((len(TEMPERATURES),), 50)
    everywhere = torch.ones(u_kn.shape[1], dtype=torch.bool)
    assert mbar_state_free_energy(u_kn, n_k, everywhere, ~everywhere).value == math.inf
    assert mbar_state_free_energy(u_kn, n_k, ~everywhere, everywhere).value == -math.inf
    assert mbar_state_free_energy(u_kn, n_k, everywhere, ~everywhere).stderr == math.inf


def test_ladder_reduced_energies_scale_by_temperature_in_state_major_order() -> None:
    energies = torch.arange(2 * 3 * 4, dtype=F64).reshape(2, 3, 4)  # [T, K, C]
    temps = [1.0, 2.0, 4.0]
    u_kn, n_k = ladder_reduced_energies(energies, temps)
    assert u_kn.shape == (3, 24) and n_k.tolist() == [8, 8, 8]
    torch.testing.assert_close(u_kn[0, :8], energies[:, 0].reshape(-1))
    torch.testing.assert_close(u_kn[2], u_kn[0] / 4.0)


def test_rejects_inconsistent_shapes() -> None:
    with pytest.raises(ValueError, match="n_k"):
        mbar_free_energies(torch.zeros(2, 5), torch.tensor([2, 2]))
    with pytest.raises(ValueError, match="temperatures"):
        ladder_reduced_energies(torch.zeros(5, 2, 1), [1.0, 2.0, 3.0])


@pytest.mark.parametrize("phi", [0.0, 0.8])
def test_statistical_inefficiency_of_ar1_process(phi: float) -> None:
    g = torch.Generator().manual_seed(3)
    steps, chains = 4000, 8
    noise = torch.randn(steps, chains, generator=g, dtype=F64)
    x = torch.empty_like(noise)
    x[0] = noise[0] / math.sqrt(1 - phi**2)
    for t in range(1, steps):
        x[t] = phi * x[t - 1] + noise[t]
    exact = (1 + phi) / (1 - phi)  # 1 + 2 Σ_t φ^t
    assert statistical_inefficiency(x) == pytest.approx(exact, rel=0.15)


def test_statistical_inefficiency_of_a_constant_series_is_one() -> None:
    assert statistical_inefficiency(torch.ones(100, 3)) == 1.0
