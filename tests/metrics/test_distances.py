"""Energy 2-Wasserstein distance between weighted empirical distributions."""

import math

import pytest
import torch

from boltzgen.metrics import energy_w2


def randn(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("n", [1, 7, 1000])
def test_identical_sets_are_at_distance_zero(n):
    u = randn(n, seed=n)
    assert energy_w2(u, u[torch.randperm(n, generator=torch.Generator().manual_seed(0))]) == 0.0


@pytest.mark.parametrize("delta", [-2.5, 0.1, 3.0])
def test_shifted_set_is_at_distance_delta(delta):
    u = randn(300, seed=1)
    assert energy_w2(u, u + delta) == pytest.approx(abs(delta), rel=1e-12)


@pytest.mark.parametrize("n", [5, 200])
def test_equal_sizes_match_sorted_pairing(n):
    a, b = randn(n, seed=2), 2.0 * randn(n, seed=3) + 1.0
    expected = math.sqrt(float((a.sort().values - b.sort().values).square().mean()))
    assert energy_w2(a, b) == pytest.approx(expected, rel=1e-12)
    assert energy_w2(b, a) == pytest.approx(expected, rel=1e-12)


def test_different_sizes_by_hand():
    """Q_ref = 1 on (1/2, 1], Q_samples = 1 on (2/3, 1]: they differ by 1 on a width 1/6."""
    reference = torch.tensor([0.0, 1.0], dtype=torch.float64)
    samples = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert energy_w2(reference, samples) == pytest.approx(math.sqrt(1.0 / 6.0), rel=1e-12)


@pytest.mark.parametrize(("mu", "sigma"), [(0.5, 1.0), (0.0, 2.0), (1.0, 0.5)])
def test_gaussian_samples_approach_analytic_w2(mu, sigma):
    """W2(N(0, 1), N(μ, σ²)) = sqrt(μ² + (σ − 1)²)."""
    reference, samples = randn(20_000, seed=4), mu + sigma * randn(15_000, seed=5)
    assert energy_w2(reference, samples) == pytest.approx(math.hypot(mu, sigma - 1), abs=0.05)


@pytest.mark.parametrize("side", ["samples", "reference", "both"])
def test_integer_weights_equal_duplicated_values(side):
    gen = torch.Generator().manual_seed(6)
    a, b = randn(40, seed=7), randn(30, seed=8) + 0.3
    a_counts = torch.randint(1, 4, (40,), generator=gen)
    b_counts = torch.randint(1, 4, (30,), generator=gen)
    a_lw = a_counts.double().log() if side in ("reference", "both") else None
    b_lw = b_counts.double().log() if side in ("samples", "both") else None
    a_dup = a.repeat_interleave(a_counts) if a_lw is not None else a
    b_dup = b.repeat_interleave(b_counts) if b_lw is not None else b
    weighted = energy_w2(a, b, sample_log_weights=b_lw, reference_log_weights=a_lw)
    assert weighted == pytest.approx(energy_w2(a_dup, b_dup), rel=1e-10)


def test_weights_two_to_one_equal_first_value_repeated():
    reference = torch.tensor([0.0, 0.5, 4.0], dtype=torch.float64)
    samples = torch.tensor([1.0, 3.0], dtype=torch.float64)
    lw = torch.tensor([2.0, 1.0], dtype=torch.float64).log()
    repeated = torch.tensor([1.0, 1.0, 3.0], dtype=torch.float64)
    assert energy_w2(reference, samples, lw) == pytest.approx(energy_w2(reference, repeated))
    assert energy_w2(reference, samples, lw) != pytest.approx(energy_w2(reference, samples))


def test_zero_weight_infinite_energies_are_dropped_silently(recwarn):
    reference = randn(50, seed=9)
    samples = torch.tensor([0.5, math.inf, -0.2], dtype=torch.float64)
    lw = torch.tensor([0.0, -math.inf, 0.0], dtype=torch.float64)
    assert energy_w2(reference, samples, lw) == energy_w2(reference, samples[[0, 2]])
    assert len(recwarn) == 0


@pytest.mark.parametrize("n", [1000, 100_000])
def test_a_zero_weight_outlier_does_not_move_the_distance(n):
    """A draw whose weight underflows to zero carries no mass, however large its energy:
    the rounding of the cumulative weights must not hand it the last quantile level."""
    reference, samples = randn(500, seed=1), randn(n, seed=2)
    lw = 0.1 * randn(n, seed=3)
    with_outlier = torch.cat([samples, torch.tensor([7.8e10], dtype=torch.float64)])
    lw_outlier = torch.cat([lw, torch.tensor([-7.8e10], dtype=torch.float64)])
    expected = energy_w2(reference, samples, lw)
    assert energy_w2(reference, with_outlier, lw_outlier) == pytest.approx(expected, rel=1e-12)


def test_weighted_infinite_energies_are_dropped_with_a_warning():
    reference = randn(50, seed=10)
    samples = torch.tensor([0.5, math.inf, -0.2, math.inf], dtype=torch.float64)
    with pytest.warns(UserWarning, match="dropped 2 of 4 sample energies"):
        value = energy_w2(reference, samples)
    assert value == energy_w2(reference, samples[[0, 2]])


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([math.inf, math.inf], "every energy is \\+inf"),
        ([0.0, math.nan], "NaN or -inf"),
        ([0.0, -math.inf], "NaN or -inf"),
    ],
)
def test_unusable_energies_raise(samples, message, recwarn):
    with pytest.raises(ValueError, match=message):
        energy_w2(torch.zeros(3, dtype=torch.float64), torch.tensor(samples, dtype=torch.float64))


def test_mismatched_log_weights_raise():
    with pytest.raises(ValueError, match=r"got shapes \[3\] and \[2\]"):
        energy_w2(torch.zeros(3), torch.zeros(3), sample_log_weights=torch.zeros(2))
    with pytest.raises(ValueError, match="must be vectors"):
        energy_w2(torch.zeros(3, 2), torch.zeros(3))
