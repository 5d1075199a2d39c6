"""Free-energy differences and log Z from WeightedSamples, with their standard errors."""

import math

import pytest
import torch

from boltzgen.metrics import (
    Estimate,
    free_energy_difference,
    log_partition_function,
    log_z,
    state_probabilities,
)
from boltzgen.records import WeightedSamples


def weighted(x: torch.Tensor, log_weights: torch.Tensor | None = None, n_chains=None):
    """WeightedSamples of configurations ``x: [n, 1]`` (energies unused here)."""
    lw = torch.zeros(x.shape[0], dtype=torch.float64) if log_weights is None else log_weights
    return WeightedSamples(x, lw, torch.zeros_like(lw), n_chains=n_chains)


def two_state_chains(steps: int, chains: int, p_ab: float, p_ba: float, seed: int):
    """``[steps, chains]`` booleans (True = in B) of a two-state Markov chain.

    Jumps A→B with probability p_ab and B→A with p_ba; started from the stationary
    distribution P_B = p_ab / (p_ab + p_ba).
    """
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(steps, chains, generator=gen, dtype=torch.float64)
    in_b = torch.rand(chains, generator=gen, dtype=torch.float64) < p_ab / (p_ab + p_ba)
    states = torch.empty(steps, chains, dtype=torch.bool)
    for t in range(steps):
        in_b = torch.where(in_b, u[t] >= p_ba, u[t] < p_ab)
        states[t] = in_b
    return states


def phi_state(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0] > 0


def test_hand_computed_weighted_case():
    x = torch.tensor([[-1.0], [-2.0], [1.0], [2.0]], dtype=torch.float64)
    samples = weighted(x, torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).log())
    estimate = free_energy_difference(samples, lambda y: ~phi_state(y), phi_state)
    assert isinstance(estimate, Estimate)
    assert estimate.value == pytest.approx(-math.log(7.0 / 3.0), rel=1e-12)
    probabilities = state_probabilities(samples, lambda y: ~phi_state(y), phi_state)
    assert probabilities.tolist() == pytest.approx([0.3, 0.7], rel=1e-12)


def test_overlapping_states_and_masks_equal_callables():
    x = torch.tensor([[-1.0], [1.0], [2.0], [-3.0]], dtype=torch.float64)
    samples = weighted(x)
    everything = torch.ones(4, dtype=torch.bool)
    value, stderr = free_energy_difference(samples, everything, phi_state)
    assert value == pytest.approx(math.log(2.0), rel=1e-12)
    assert free_energy_difference(samples, everything, phi_state(x)) == Estimate(value, stderr)


@pytest.mark.parametrize("n_chains", [None, 2])
@pytest.mark.parametrize(
    ("in_a", "in_b", "expected"),
    [
        ([True, True, False, False], [False] * 4, math.inf),
        ([False] * 4, [True, False, True, False], -math.inf),
        ([False] * 4, [False] * 4, math.nan),
    ],
)
def test_empty_state_gives_infinite_error(n_chains, in_a, in_b, expected):
    samples = weighted(torch.zeros(4, 1, dtype=torch.float64), n_chains=n_chains)
    value, stderr = free_energy_difference(samples, torch.tensor(in_a), torch.tensor(in_b))
    assert value == expected or (math.isnan(expected) and math.isnan(value))
    assert stderr == math.inf


@pytest.mark.parametrize(
    ("mask", "error"),
    [(torch.ones(3, dtype=torch.bool), ValueError), (torch.ones(4), TypeError)],
)
def test_bad_state_masks_raise(mask, error):
    samples = weighted(torch.zeros(4, 1, dtype=torch.float64))
    with pytest.raises(error, match="mask"):
        free_energy_difference(samples, mask, torch.ones(4, dtype=torch.bool))


@pytest.mark.parametrize("p_b", [0.3, 0.05])
def test_bootstrap_stderr_matches_binomial(p_b):
    """Unweighted iid draws: se(ΔF) = 1 / sqrt(n p̂ (1 − p̂)) by the delta method."""
    n = 4_000
    gen = torch.Generator().manual_seed(11)
    in_b = torch.rand(n, generator=gen, dtype=torch.float64) < p_b
    samples = weighted(in_b.to(torch.float64)[:, None] - 0.5)
    value, stderr = free_energy_difference(
        samples, ~in_b, in_b, n_bootstrap=400, generator=torch.Generator().manual_seed(0)
    )
    p_hat = float(in_b.double().mean())
    assert value == pytest.approx(-math.log(p_hat / (1 - p_hat)), rel=1e-12)
    assert stderr == pytest.approx(1 / math.sqrt(n * p_hat * (1 - p_hat)), rel=0.15)


@pytest.mark.parametrize(("n_in_b", "finite"), [(1, False), (20, True)])
def test_bootstrap_stderr_is_infinite_for_a_nearly_empty_state(n_in_b, finite):
    """One sample in B leaves B empty in ~e⁻¹ of the replicates: no usable error bar."""
    in_b = torch.arange(1_000) < n_in_b
    samples = weighted(torch.zeros(1_000, 1, dtype=torch.float64))
    value, stderr = free_energy_difference(samples, ~in_b, in_b)
    assert value == pytest.approx(-math.log(n_in_b / (1_000 - n_in_b)), rel=1e-12)
    assert math.isfinite(stderr) == finite


def test_bootstrap_is_reproducible_from_the_generator():
    x = torch.randn(500, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    samples = weighted(x)

    def stderr(seed):
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        return free_energy_difference(samples, ~phi_state(x), phi_state, generator=gen).stderr

    assert stderr(5) == stderr(5)
    assert stderr(5) != stderr(6)
    assert stderr(None) == stderr(0)


def test_weighted_draws_recover_shifted_gaussian():
    """x ~ N(0, 1) reweighted to N(μ, 1): log w = μx − μ²/2 and P_B = Φ(μ) for B = {x > 0}."""
    mu, n, replicates = 0.5, 1_000, 30
    exact = -math.log(0.5 * math.erfc(-mu / math.sqrt(2)) / (0.5 * math.erfc(mu / math.sqrt(2))))
    gen = torch.Generator().manual_seed(21)
    values, errors = [], []
    for _ in range(replicates):
        x = torch.randn(n, 1, generator=gen, dtype=torch.float64)
        samples = weighted(x, mu * x[:, 0] - mu**2 / 2)
        estimate = free_energy_difference(
            samples, lambda y: ~phi_state(y), phi_state, generator=gen
        )
        values.append(estimate.value)
        errors.append(estimate.stderr)
    values_t = torch.tensor(values)
    mean_error = sum(errors) / replicates
    assert abs(float(values_t.mean()) - exact) < 4 * mean_error / math.sqrt(replicates)
    assert 0.6 < float(values_t.std()) / mean_error < 1.6


@pytest.mark.parametrize(("n_chains", "steps"), [(2, 8_000), (8, 2_000)])
def test_markov_chain_free_energy_and_stderr(n_chains, steps):
    """Two-state chain: P_B / P_A = p_ab / p_ba, so ΔF = −ln(p_ab / p_ba) = ln 2."""
    replicates = 24
    states = two_state_chains(steps, n_chains * replicates, 0.05, 0.1, seed=n_chains)
    estimates = []
    for r in range(replicates):
        in_b = states[:, r * n_chains : (r + 1) * n_chains].reshape(-1)
        samples = weighted(in_b.to(torch.float64)[:, None], n_chains=n_chains)
        estimates.append(free_energy_difference(samples, ~in_b, in_b))
    exact = math.log(2.0)
    assert abs(estimates[0].value - exact) < 4 * estimates[0].stderr
    values = torch.tensor([e.value for e in estimates])
    mean_error = sum(e.stderr for e in estimates) / replicates
    assert abs(float(values.mean()) - exact) < 4 * mean_error / math.sqrt(replicates)
    assert 0.5 < float(values.std()) / mean_error < 2.0


def test_unmixed_chains_use_between_chain_spread():
    """Chains stuck in A or B: within-chain τ sees nothing; the chain means do."""
    steps, chains = 100, 8
    in_b = torch.tensor([False, True] * (chains // 2)).repeat(steps)
    samples = weighted(in_b.to(torch.float64)[:, None], n_chains=chains)
    value, stderr = free_energy_difference(samples, ~in_b, in_b)
    # per-chain mean of 1_A/P_A − 1_B/P_B with P_A = P_B = 1/2
    chain_means = torch.tensor([2.0, -2.0] * (chains // 2), dtype=torch.float64)
    assert value == pytest.approx(0.0, abs=1e-12)
    assert stderr == pytest.approx(math.sqrt(float(chain_means.var()) / chains), rel=1e-10)


def test_log_partition_function_is_log_z_of_the_weights():
    lw = torch.randn(100, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    samples = weighted(torch.zeros(100, 1, dtype=torch.float64), lw)
    assert log_partition_function(samples) == Estimate(*log_z(lw))
