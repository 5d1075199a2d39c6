"""Lattice observables: integer charge, exact conditional spin averages, estimators."""

import math

import pytest
import torch

from boltzgen.metrics import observable_estimate
from boltzgen.metrics.runs import t_factor
from boltzgen.observables.lattice import (
    binder_cumulant,
    plaquette,
    spin_abs_magnetization,
    spin_energy_density,
    topological_charge,
)
from boltzgen.records import Cost, WeightedSamples


def test_topological_charge_is_an_integer():
    theta = 5 * torch.randn(200, 2, 6, 6, generator=torch.Generator().manual_seed(0)).double()
    q = topological_charge(theta)
    torch.testing.assert_close(q, q.round(), atol=1e-6, rtol=0)
    assert q.abs().max() > 0


def test_binder_cumulant_of_exact_distributions():
    """U₄ = 0 for a Gaussian (its three-point Gauss–Hermite rule has the Gaussian's second
    and fourth moments), 2/3 for ±m₀, 1/2 for −1, 0, 1 equally likely; per row of a batch."""
    root3 = math.sqrt(3.0)
    gaussian = torch.tensor([root3, -root3, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    ordered = torch.tensor([0.7, -0.7, 0.7, -0.7, 0.7, 0.7], dtype=torch.float64)
    three = torch.tensor([-1.0, 0.0, 1.0, -1.0, 0.0, 1.0], dtype=torch.float64)
    u = binder_cumulant(torch.stack([gaussian, ordered, three]))
    torch.testing.assert_close(u, torch.tensor([0.0, 2 / 3, 0.5], dtype=torch.float64))


def test_plaquette_of_the_unit_configuration_is_one():
    torch.testing.assert_close(plaquette(torch.zeros(2, 2, 4, 4)), torch.ones(2))


def test_spin_averages_equal_enumeration_of_the_conditional_spins():
    """E[H/N | x] and E[|Σs|/N | x] against all 2^9 spin states of a 3×3 lattice."""
    x = torch.randn(4, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    codes = torch.arange(2**9)
    spins = (2.0 * ((codes[:, None] >> torch.arange(9)) & 1) - 1).double().reshape(-1, 3, 3)
    log_p = (spins[None] * x[:, None]).sum((-2, -1)) - torch.log(2 * torch.cosh(x)).sum((-2, -1))[
        :, None
    ]
    p = log_p.exp()
    bonds = (spins * (spins.roll(-1, -1) + spins.roll(-1, -2))).sum((-2, -1))
    m = spins.sum((-2, -1)).abs() / 9
    torch.testing.assert_close(spin_energy_density(x), -(p * bonds).sum(1) / 9)
    torch.testing.assert_close(spin_abs_magnetization(x), (p * m).sum(1))


def _chain(values: torch.Tensor, n_chains: int) -> WeightedSamples:
    n = len(values)
    return WeightedSamples(
        torch.zeros(n, 1), torch.zeros(n), torch.zeros(n), Cost(), {}, n_chains=n_chains
    )


def test_ar1_chain_error_uses_tau_int():
    """AR(1) with ρ = 0.8: τ_int = (1 + ρ)/(1 − ρ) = 9."""
    gen = torch.Generator().manual_seed(2)
    steps, chains, rho = 20_000, 8, 0.8
    x = torch.zeros(steps, chains, dtype=torch.float64)
    noise = torch.randn(steps, chains, generator=gen, dtype=torch.float64)
    for t in range(1, steps):
        x[t] = rho * x[t - 1] + math.sqrt(1 - rho**2) * noise[t]
    est = observable_estimate(_chain(x.reshape(-1), chains), x.reshape(-1))
    assert est.tau_int == pytest.approx(9.0, rel=0.15)
    assert est.stderr == pytest.approx(math.sqrt(9.0 / (steps * chains)), rel=0.15)
    var = observable_estimate(_chain(x.reshape(-1), chains), x.reshape(-1), "variance")
    assert abs(var.value - 1.0) < 4 * var.stderr


def test_weighted_variance_matches_the_target():
    """Draws from N(0, 1) weighted towards N(0, 2): Var = 2 within 4 standard errors."""
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(50_000, generator=gen, dtype=torch.float64)
    log_w = z**2 / 2 - z**2 / 4
    samples = WeightedSamples(z[:, None], log_w, torch.zeros_like(z), Cost(), {})
    est = observable_estimate(samples, z, "variance")
    assert est.tau_int is None
    assert abs(est.value - 2.0) < 4 * est.stderr


def test_chains_stuck_in_different_sectors_get_a_wide_error_bar():
    """Q frozen at ±1 in half the chains: the spread between chains is the error."""
    steps, chains = 400, 8
    q = torch.tensor([1.0, -1.0] * (chains // 2), dtype=torch.float64).repeat(steps, 1)
    est = observable_estimate(_chain(q.reshape(-1), chains), q.reshape(-1))
    assert est.value == 0.0
    assert est.tau_int > steps / 2
    assert est.stderr > 0.2


def test_runs_of_resampled_copies_take_their_error_from_the_spread_between_runs():
    """R runs, each one value copied m times (an SMC run resampled to one ancestor): the
    error is the t-widened spread of the run means, t·sd_r(v_r)/√R, not that of R·m draws."""
    runs, copies = 8, 50
    v = torch.randn(runs, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    f = v.repeat_interleave(copies)
    samples = WeightedSamples(f[:, None], torch.zeros_like(f), f, Cost(), {}, n_runs=runs)
    est = observable_estimate(samples, f)
    assert est.value == pytest.approx(float(v.mean()), abs=1e-12)
    expected = t_factor(runs) * float(v.std()) / math.sqrt(runs)
    assert est.stderr == pytest.approx(expected, rel=1e-12)
