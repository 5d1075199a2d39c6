"""The per-state BAR check between draws and held-out frames, on a 1-D two-mode target
with exact state weights."""

import math

import pytest
import torch

from boltzgen.metrics.held_out import held_out_check

WEIGHTS = (0.95, 0.05)  # exact Z_A (x < 0) and Z_B (x > 0) of the target
CENTRES = (-2.0, 2.0)
WIDTH = 0.5


def _normal_log_pdf(x: torch.Tensor, mean: float, sd: float) -> torch.Tensor:
    return -0.5 * ((x - mean) / sd) ** 2 - math.log(sd * math.sqrt(2 * math.pi))


def _mixture_log_pdf(x: torch.Tensor, widths: tuple[float, float]) -> torch.Tensor:
    modes = zip(WEIGHTS, CENTRES, widths, strict=True)
    parts = [math.log(w) + _normal_log_pdf(x, c, s) for w, c, s in modes]
    return torch.logsumexp(torch.stack(parts), 0)


def _mixture_draws(n: int, widths: tuple[float, float], g: torch.Generator) -> torch.Tensor:
    second = torch.rand(n, generator=g, dtype=torch.float64) < WEIGHTS[1]
    z = torch.randn(n, generator=g, dtype=torch.float64)
    return torch.where(second, CENTRES[1] + widths[1] * z, CENTRES[0] + widths[0] * z)


def _check(flow_widths: tuple[float, float], n: int, m: int, seed: int):
    """Draws from a flow with ``flow_widths``; frames exact draws of the target."""
    g = torch.Generator().manual_seed(seed)
    target = (WIDTH, WIDTH)
    x = _mixture_draws(n, flow_widths, g)
    y = _mixture_draws(m, target, g)
    lw_x = _mixture_log_pdf(x, target) - _mixture_log_pdf(x, flow_widths)
    lw_y = _mixture_log_pdf(y, target) - _mixture_log_pdf(y, flow_widths)
    return held_out_check(lw_x, lw_y, {"A": x < 0, "B": x > 0}, {"A": y < 0, "B": y > 0})


def test_a_flow_too_narrow_in_one_state_misses_mass_there_and_bar_recovers_it():
    # In B the flow is 0.15 wide against the target's 0.5: the weights' tail index is
    # k = 1 − 0.15²/0.5² ≈ 0.91, so the draws' estimate of Z_B comes out low.
    check = _check((WIDTH, 0.15), n=20_000, m=5_000, seed=0)
    b = check.states["B"]
    assert b.misses_mass
    assert b.gap > 4 * b.stderr
    assert abs(b.log_z_bar - math.log(WEIGHTS[1])) < 4 * b.stderr
    assert b.frames_beyond_draws > 0.01
    a = check.states["A"]
    assert not a.misses_mass
    assert abs(a.log_z_bar - math.log(WEIGHTS[0])) < 4 * a.stderr
    fe = check.free_energy("A", "B")
    exact = math.log(WEIGHTS[0] / WEIGHTS[1])
    assert abs(fe.value - exact) < 4 * fe.stderr
    draws_only = a.log_z_draws - b.log_z_draws
    assert draws_only - exact > 4 * fe.stderr  # what the draws alone would have said


def test_an_exact_flow_shows_no_gap():
    check = _check((WIDTH, WIDTH), n=5_000, m=2_000, seed=1)
    for name, weight in zip("AB", WEIGHTS, strict=True):
        s = check.states[name]
        assert not s.misses_mass
        assert abs(s.gap) < 1e-9 + 4 * s.stderr
        assert abs(s.log_z_bar - math.log(weight)) < 4 * s.stderr + 1e-9
        assert s.frames_beyond_draws == 0.0  # uniform weights: no frame above the draws


def test_the_jackknife_error_covers_the_exact_state_weight():
    """±2 standard errors cover the exact ln Z_B in ≥ 80 % of 60 independent repeats
    (95 % nominal), with a mismatched (wider) flow in B."""
    inside = 0
    for seed in range(60):
        b = _check((WIDTH, 0.8), n=2_000, m=1_000, seed=100 + seed).states["B"]
        inside += abs(b.log_z_bar - math.log(WEIGHTS[1])) < 2 * b.stderr
    assert inside >= 48  # 95 % nominal; ≥ 80 % of 60 allows for jackknife noise


def test_a_state_without_frames_has_no_bar_value():
    x = torch.linspace(-3, 3, 100, dtype=torch.float64)
    y = torch.full((50,), -1.0, dtype=torch.float64)
    check = held_out_check(
        torch.zeros(100), torch.zeros(50), {"A": x < 0, "B": x > 0}, {"A": y < 0, "B": y > 0}
    )
    assert check.states["B"].log_z_bar is None
    assert check.states["B"].n_frames == 0
    assert not check.states["B"].misses_mass
    assert check.free_energy("A", "B") is None


def test_frames_outside_the_flows_support_are_refused():
    with pytest.raises(ValueError, match="outside the flow's support"):
        held_out_check(
            torch.zeros(10),
            torch.tensor([0.0, math.inf]),
            {"A": torch.ones(10, dtype=torch.bool)},
            {"A": torch.ones(2, dtype=torch.bool)},
        )


def test_states_must_match():
    with pytest.raises(ValueError, match="same states"):
        held_out_check(
            torch.zeros(4),
            torch.zeros(4),
            {"A": torch.ones(4, dtype=torch.bool)},
            {"B": torch.ones(4, dtype=torch.bool)},
        )


def test_a_state_whose_draws_all_have_zero_weight_has_no_bar_value():
    x = torch.linspace(-3, 3, 100, dtype=torch.float64)
    y = torch.linspace(-3, 3, 50, dtype=torch.float64)
    lw = torch.where(x > 0, -math.inf, 0.0)
    check = held_out_check(lw, torch.zeros(50), {"A": x < 0, "B": x > 0}, {"A": y < 0, "B": y > 0})
    assert check.states["B"].log_z_bar is None
    assert check.states["B"].log_z_draws == -math.inf
    assert check.free_energy("A", "B") is None
