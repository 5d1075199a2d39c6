"""MBAR helpers against exact Gaussian free energies, exact state probabilities, and the
statistical inefficiency of an AR(1) process."""

from __future__ import annotations

import math

import pytest
import torch
from pymbar.utils import ParameterError
from scipy.special import ndtr

from boltzgen.metrics.mbar import (
    ladder_reduced_energies,
    ladder_state_free_energies,
    ladder_state_free_energy,
    mbar_free_energies,
    mbar_state_free_energy,
    statistical_inefficiency,
)
from boltzgen.records import WeightedSamples

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


def test_ladder_free_energy_at_every_rung_matches_the_exact_probabilities_there() -> None:
    """A ladder record of exact draws x ~ N(0, T_k) on 8 chains: ΔF(x > 0.5 vs x < 0) at each
    rung T_k equals −ln[(1 − Φ(0.5/√T_k)) / ½] within 4 standard errors, and rung 0 is
    what the single-rung estimate gives."""
    steps, chains = 600, 8
    g = torch.Generator().manual_seed(4)
    sigma = torch.tensor(TEMPERATURES, dtype=F64).sqrt()
    x = sigma[None, :, None] * torch.randn(steps, len(TEMPERATURES), chains, generator=g, dtype=F64)
    info = {
        "temperatures": TEMPERATURES,
        "ladder_energies": 0.5 * x.square() / TEMPERATURES[0],
        "ladder_states": {"A": x < 0, "B": x > 0.5},
    }
    zeros = torch.zeros(1, dtype=F64)
    samples = WeightedSamples(zeros[:, None], zeros, zeros, info=info)
    rungs = range(len(TEMPERATURES))
    estimates = ladder_state_free_energies(samples, "A", "B", rungs)
    for t, (value, stderr) in zip(TEMPERATURES, estimates, strict=True):
        exact = -math.log((1.0 - ndtr(0.5 / math.sqrt(t))) / 0.5)
        assert 0 < stderr < 0.05
        assert abs(value - exact) < 4 * stderr, (t, value, exact, stderr)
    assert estimates[0] == ladder_state_free_energy(samples, "A", "B")
    assert estimates[2] == ladder_state_free_energy(samples, "A", "B", rung=2)
    with pytest.raises(ValueError, match="outside the ladder"):
        ladder_state_free_energies(samples, "A", "B", [len(TEMPERATURES)])


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


Q_IN, Q_OUT = 0.01, 0.02
"""Telegraph switching probabilities per step into and out of state B: P(B) = 1/3."""


def telegraph_ladder(
    steps: int, chains: int, seed: int, temperatures: tuple[float, ...] = (1.0, 2.0)
) -> WeightedSamples:
    """A ladder record whose state B is a slow telegraph process (g ≈ 66 steps) on every rung
    and chain, independent of white-noise energies (g = 1): ΔF_{B vs A} = ln 2 at every T."""
    g = torch.Generator().manual_seed(seed)
    shape = (len(temperatures), chains)
    in_b = torch.empty(steps, *shape, dtype=torch.bool)
    in_b[0] = torch.rand(shape, generator=g) < Q_IN / (Q_IN + Q_OUT)
    for t in range(1, steps):
        flip = torch.rand(shape, generator=g) < torch.where(in_b[t - 1], Q_OUT, Q_IN)
        in_b[t] = in_b[t - 1] ^ flip
    energies = torch.randn(steps, *shape, generator=g, dtype=F64)
    info = {
        "temperatures": list(temperatures),
        "ladder_energies": energies,
        "ladder_states": {"A": ~in_b, "B": in_b},
    }
    zeros = torch.zeros(1, dtype=F64)
    return WeightedSamples(zeros[:, None], zeros, zeros, info=info)


def test_ladder_estimate_with_a_jackknife_keeps_every_step_the_energies_allow() -> None:
    """8 chains: the jackknife measures the error, so the stride follows the energies' g (≈ 1
    here), not the indicator's (≈ 66); 2 chains: MBAR's own error needs the indicator's."""
    many = telegraph_ladder(2000, 8, seed=0)
    energies = many.info["ladder_energies"]
    g_energies = max(statistical_inefficiency(energies[:, k]) for k in range(2))
    assert math.ceil(g_energies) <= 2
    assert ladder_state_free_energy(many, "A", "B") == ladder_state_free_energy(
        many, "A", "B", stride=math.ceil(g_energies)
    )
    few = telegraph_ladder(2000, 2, seed=0)
    g_indicator = statistical_inefficiency(few.info["ladder_states"]["B"][:, 0].double())
    assert g_indicator > 30
    default = ladder_state_free_energy(few, "A", "B")
    assert default != ladder_state_free_energy(few, "A", "B", stride=1)
    strides = range(math.ceil(g_indicator) - 10, math.ceil(g_indicator) + 30)
    assert default in [ladder_state_free_energy(few, "A", "B", stride=s) for s in strides]


@pytest.mark.slow
def test_ladder_error_at_the_energies_stride_covers_the_exact_free_energy() -> None:
    """Over 100 independent 8-chain records of a slow telegraph state (ln 2 exact), the
    jackknife error of the estimate on every step is calibrated: |z| > 2 in 1–12 % of runs
    (about 5 % expected; the bounds leave binomial room), and the errors are no larger than
    those thinned to the indicator's g."""
    z, fine, thinned = [], [], []
    for seed in range(100):
        samples = telegraph_ladder(1500, 8, seed=seed)
        value, stderr = ladder_state_free_energy(samples, "A", "B")
        z.append((value - math.log(2.0)) / stderr)
        fine.append(stderr)
        thinned.append(ladder_state_free_energy(samples, "A", "B", stride=66).stderr)
    over = sum(abs(v) > 2 for v in z) / len(z)
    assert 0.01 <= over <= 0.12, over
    assert sum(fine) < sum(thinned)


def test_mbar_that_does_not_converge_reports_no_error_bar(monkeypatch) -> None:
    """When pymbar's check of the weights refuses a solution (the MBAR equations did not
    converge), the estimate keeps its value and carries an infinite stderr — on the whole
    ladder and in any jackknife group — instead of raising."""
    import pymbar

    solve = pymbar.MBAR.compute_perturbed_free_energies

    refuse_below = [math.inf]  # refuse solutions from fewer samples than this

    def refuse(self, u_ln, compute_uncertainty=True, **kwargs):
        if compute_uncertainty and u_ln.shape[1] < refuse_below[0]:
            raise ParameterError("Should have sum_n W_nk = 1")
        return solve(self, u_ln, compute_uncertainty=compute_uncertainty, **kwargs)

    samples = telegraph_ladder(400, 8, seed=0)
    value = ladder_state_free_energy(samples, "A", "B").value
    every_step = ladder_state_free_energy(samples, "A", "B", stride=1)
    assert math.isfinite(every_step.stderr)
    monkeypatch.setattr(pymbar.MBAR, "compute_perturbed_free_energies", refuse)
    refused = ladder_state_free_energy(samples, "A", "B")
    assert refused.value == pytest.approx(value) and refused.stderr == math.inf
    refuse_below[0] = 400 * 2 * 8  # the whole ladder converges, a jackknife group does not
    in_a_group = ladder_state_free_energy(samples, "A", "B", stride=1)
    assert in_a_group.value == pytest.approx(every_step.value) and in_a_group.stderr == math.inf
