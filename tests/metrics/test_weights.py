"""Importance-weight metrics: normalised weights, Kish ESS, ESS fraction, log Z."""

import math

import pytest
import torch

from boltzgen.metrics import ess_fraction, kish_ess, log_z, normalized_weights

INF = math.inf


def logs(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).log()


@pytest.mark.parametrize(
    ("weights", "ess"),
    [
        ([1.0, 1.0, 1.0, 1.0], 4.0),
        ([1.0, 0.0, 0.0, 0.0], 1.0),
        ([1.0, 2.0, 3.0], 36.0 / 14.0),
        ([5.0, 0.0, 5.0], 2.0),
        ([3.0], 1.0),
    ],
)
def test_kish_ess_and_fraction_by_hand(weights, ess):
    lw = logs(weights)
    assert kish_ess(lw) == pytest.approx(ess, rel=1e-12)
    assert ess_fraction(lw) == pytest.approx(ess / len(weights), rel=1e-12)


@pytest.mark.parametrize("shift", [-1e4, -3.0, 0.0, 700.0, 1e5])
def test_weights_invariant_to_a_constant(shift):
    lw = torch.randn(50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lw[3] = -INF
    assert torch.allclose(normalized_weights(lw + shift), normalized_weights(lw), atol=1e-15)
    assert kish_ess(lw + shift) == pytest.approx(kish_ess(lw), rel=1e-12)
    value, se = log_z(lw + shift)
    assert value == pytest.approx(log_z(lw)[0] + shift, rel=1e-12, abs=1e-10)
    assert se == pytest.approx(log_z(lw)[1], rel=1e-10)


def test_normalized_weights_sum_to_one_and_zero_for_minus_inf():
    w = normalized_weights(torch.tensor([2.0, -INF, 2.0, 2.0 + math.log(2.0)], dtype=torch.float64))
    assert w.dtype == torch.float64
    assert w.tolist() == pytest.approx([0.25, 0.0, 0.25, 0.5], abs=1e-15)


@pytest.mark.parametrize(
    ("log_weights", "message"),
    [
        ([-INF, -INF], "all 2 log-weights are -inf"),
        ([0.0, math.nan], "NaN or \\+inf"),
        ([0.0, INF], "NaN or \\+inf"),
    ],
)
def test_degenerate_log_weights_raise(log_weights, message):
    with pytest.raises(ValueError, match=message):
        normalized_weights(torch.tensor(log_weights, dtype=torch.float64))


def test_log_z_by_hand():
    value, se = log_z(logs([1.0, 2.0, 3.0]))
    assert value == pytest.approx(math.log(2.0), rel=1e-12)
    assert se == pytest.approx(math.sqrt(1.0 / 3.0) / 2.0, rel=1e-12)


def test_log_z_with_zero_weights():
    assert log_z(torch.full((3,), -INF)) == (-INF, INF)
    assert log_z(logs([4.0]))[1] == INF
    value, _ = log_z(logs([2.0, 0.0]))
    assert value == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("sigma", [0.7, 0.9, 1.2])
def test_log_z_recovers_gaussian_normaliser(sigma):
    """x ~ N(0, 1), u(x) = x² / 2σ²: Z = sqrt(2π) σ."""
    x = torch.randn(20_000, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    log_q = -0.5 * x**2 - 0.5 * math.log(2 * math.pi)
    value, se = log_z(-(x**2) / (2 * sigma**2) - log_q)
    assert 0 < se < 0.05
    assert abs(value - math.log(math.sqrt(2 * math.pi) * sigma)) < 4 * se
