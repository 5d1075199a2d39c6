"""Residence times from first exits, and the two-state error of a free energy read off a
trajectory, against simulated telegraph chains with known rates."""

import math

import numpy as np
import pytest

from boltzgen.metrics.kinetics import (
    residence_time,
    two_state_length,
    two_state_stderr,
)

from .test_blocks import two_state_chain


def test_censored_exits_give_total_time_over_exits():
    r = residence_time(np.array([2.0, 5.0, 5.0, 1.0]), np.array([True, False, False, True]))
    assert (r.value, r.n_exits, r.n_runs, r.total) == (6.5, 2, 4, 13.0)
    assert r.stderr == pytest.approx(6.5 / math.sqrt(2))


def test_no_exit_has_no_finite_residence_time():
    r = residence_time(np.array([3.0, 3.0]), np.array([False, False]))
    assert math.isinf(r.value) and math.isinf(r.stderr) and r.total == 6.0


@pytest.mark.parametrize(
    "times, exited",
    [([], []), ([1.0, 2.0], [True]), ([-1.0], [True]), ([math.nan], [True])],
)
def test_bad_exit_times_are_refused(times, exited):
    with pytest.raises(ValueError):
        residence_time(np.array(times), np.array(exited, dtype=bool))


@pytest.mark.parametrize("cut", [math.inf, 4.0, 1.5])
def test_censored_mean_recovers_exponential_mean(cut):
    """Exponential exits of mean 3 cut at ``cut``: the estimate's z-scores over 400 repeats
    have mean ≈ 0 and spread ≈ 1 (the standard error is calibrated)."""
    rng = np.random.default_rng(7)
    z = []
    for _ in range(400):
        t = rng.exponential(3.0, size=150)
        r = residence_time(np.minimum(t, cut), t < cut)
        z.append((r.value - 3.0) / r.stderr)
    z = np.array(z)
    assert abs(z.mean()) < 0.25
    assert 0.85 < z.std() < 1.15


def test_residence_time_of_a_telegraph_chain_predicts_its_free_energy_error():
    """A rare state B (p = 0.05, mean residence 50 steps): first exits from B measured on
    short runs started in B give τ̂; with it, √(2τ̂/(pT)) matches the spread of
    −ln(p̂/(1 − p̂)) over 400 independent chains of T steps within its sampling error."""
    tau, p, steps = 50.0, 0.05, 40_000
    leave = 1.0 / tau
    enter = p * leave / (1.0 - p)
    rng = np.random.default_rng(3)
    holds = rng.geometric(leave, size=200).astype(float)
    cut = 120.0
    r = residence_time(np.minimum(holds, cut), holds < cut)
    assert abs(r.value - tau) < 4 * r.stderr
    in_b = two_state_chain(steps, 400, enter, leave, seed=11).numpy()
    share = in_b.mean(axis=0)
    delta_f = -np.log(share / (1.0 - share))
    spread = delta_f.std(ddof=1)
    predicted = two_state_stderr(tau, p, steps)
    assert abs(spread / predicted - 1.0) < 4 / math.sqrt(2 * 399) + 0.02
    assert two_state_stderr(r.value, p, steps) == pytest.approx(
        predicted, rel=4 * r.stderr / r.value
    )


def test_length_inverts_the_stderr():
    length = two_state_length(2.0, 0.02, 0.1, 2.31)
    assert 2.31 * two_state_stderr(2.0, 0.02, length) == pytest.approx(0.1)
    assert two_state_length(2.0, 0.02, 0.2, 2.31) == pytest.approx(length / 4)


@pytest.mark.parametrize("tau, p", [(0.0, 0.1), (1.0, 0.0), (1.0, 1.0), (math.nan, 0.5)])
def test_two_state_inputs_are_checked(tau, p):
    with pytest.raises(ValueError):
        two_state_stderr(tau, p, 10.0)
    with pytest.raises(ValueError):
        two_state_length(tau, p, 0.1, 2.0)
