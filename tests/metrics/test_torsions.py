"""T-W2 (exact optimal transport on the torus) and the Ramachandran KL divergence."""

import math

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from boltzgen.metrics import (
    ramachandran_histogram,
    ramachandran_kl,
    torus_cost_matrix,
    torus_w2,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def wrap(theta: torch.Tensor) -> torch.Tensor:
    """Angles into (−π, π]."""
    return math.pi - torch.remainder(math.pi - theta, 2 * math.pi)


def basin(n: int, center: tuple[float, float], scale: float, seed: int) -> torch.Tensor:
    """``[n, 2]`` (φ, ψ) ~ N(center, scale²), wrapped into (−π, π]."""
    noise = torch.randn(n, 2, generator=gen(seed), dtype=torch.float64)
    return wrap(torch.tensor(center, dtype=torch.float64) + scale * noise)


def uniform_angles(n: int, d: int, seed: int) -> torch.Tensor:
    return (torch.rand(n, d, generator=gen(seed), dtype=torch.float64) * 2 - 1) * math.pi


@pytest.mark.parametrize(("n", "weighted"), [(1, False), (200, False), (200, True)])
def test_set_with_itself_is_at_distance_zero(n, weighted):
    theta = uniform_angles(n, 2, seed=n)
    shuffled = theta[torch.randperm(n, generator=gen(1))]
    lw = torch.zeros(n, dtype=torch.float64) if weighted else None
    assert torus_w2(theta, shuffled, sample_log_weights=lw) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize(
    ("center", "delta"),
    [((-1.5, 2.5), 0.3), ((-1.5, 2.5), -0.7), ((3.0, -1.0), 0.3), ((-3.0, 0.5), -0.4)],
)
def test_concentrated_set_shifted_in_phi_is_at_distance_delta(center, delta):
    """Pairwise gaps < π: the torus cost is Euclidean, for which a translation is optimal.

    Centres near ±π shift across the boundary (wrapped into (−π, π]); ψ ~ N(2.5, 0.2)
    straddles it too.
    """
    theta = basin(300, center, 0.2, seed=2)
    shifted = theta.clone()
    shifted[:, 0] = wrap(theta[:, 0] + delta)
    assert torus_w2(theta, shifted) == pytest.approx(abs(delta), abs=1e-10)


def test_by_hand_across_the_boundary_and_unequal_sizes():
    assert torus_w2(torch.tensor([[3.0]]), torch.tensor([[-3.0]])) == pytest.approx(
        2 * math.pi - 6.0, abs=1e-12
    )
    reference = torch.tensor([[0.0, math.pi]], dtype=torch.float64)
    samples = torch.tensor([[0.1, -math.pi], [-0.3, math.pi - 0.2]], dtype=torch.float64)
    expected = math.sqrt((0.1**2 + 0.3**2 + 0.2**2) / 2)
    assert torus_w2(reference, samples) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_equal_unweighted_sets_match_linear_assignment(seed):
    """Uniform weights of one size: the optimal coupling is a permutation."""
    a, b = uniform_angles(150, 2, seed=seed), basin(150, (-1.5, 2.5), 0.5, seed=seed + 10)
    cost = torus_cost_matrix(a, b)
    rows, cols = linear_sum_assignment(cost)
    expected = math.sqrt(cost[rows, cols].mean())
    assert expected > 0.5
    assert torus_w2(a, b) == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("side", ["samples", "reference", "both"])
def test_integer_weights_equal_duplicated_points(side):
    a, b = uniform_angles(60, 2, seed=5), basin(50, (1.0, -2.0), 0.8, seed=6)
    a_counts = torch.randint(1, 4, (60,), generator=gen(7))
    b_counts = torch.randint(1, 4, (50,), generator=gen(8))
    a_lw = a_counts.double().log() if side in ("reference", "both") else None
    b_lw = b_counts.double().log() if side in ("samples", "both") else None
    a_dup = a.repeat_interleave(a_counts, dim=0) if a_lw is not None else a
    b_dup = b.repeat_interleave(b_counts, dim=0) if b_lw is not None else b
    weighted = torus_w2(a, b, sample_log_weights=b_lw, reference_log_weights=a_lw)
    assert weighted == pytest.approx(torus_w2(a_dup, b_dup), abs=1e-10)


def test_zero_weight_samples_are_ignored():
    a, b = basin(40, (-1.5, 2.5), 0.3, seed=9), basin(40, (1.0, -1.0), 0.3, seed=10)
    lw = torch.cat([torch.zeros(40), torch.full((40,), -math.inf)]).double()
    assert torus_w2(a, torch.cat([a, b]), sample_log_weights=lw) == pytest.approx(0.0, abs=1e-10)


def test_subsampling_is_reproducible_and_inactive_below_max_points():
    a, b = uniform_angles(300, 2, seed=11), basin(250, (-1.5, 2.5), 0.4, seed=12)
    full = torus_w2(a, b)
    assert torus_w2(a, b, max_points=300, generator=gen(0)) == full
    sub = torus_w2(a, b, max_points=100, generator=gen(13))
    assert sub == torus_w2(a, b, max_points=100, generator=gen(13))
    assert sub != full and sub == pytest.approx(full, rel=0.3)


def test_histogram_wraps_pi_onto_minus_pi():
    phi_psi = torch.tensor([[math.pi, -math.pi], [-math.pi, 0.0]], dtype=torch.float64)
    h = ramachandran_histogram(phi_psi, bins=4)
    assert h[0, 0] == 0.5 and h[0, 2] == 0.5 and h.sum() == 1.0


def test_kl_of_identical_sets_is_zero_and_of_different_sets_positive():
    a = basin(2000, (-1.5, 2.5), 0.4, seed=14)
    assert ramachandran_kl(a, a[torch.randperm(2000, generator=gen(15))]) == 0.0
    b = basin(2000, (-1.2, 2.5), 0.4, seed=16)
    assert ramachandran_kl(a, b) > 0.05


@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_kl_of_two_known_histograms(eps):
    """Reference 1:1 in two cells, samples 3:1: by hand, with the ε regulariser.

    The 34 empty cells get ε/(1 + Kε) in both histograms and contribute 0.
    """
    cell_1, cell_2 = [-3.0, -3.0], [1.0, 2.0]
    reference = torch.tensor([cell_1, cell_2])
    samples = torch.tensor([cell_1, cell_1, cell_1, cell_2])
    k = 6 * 6
    p = [(0.5 + eps) / (1 + k * eps)] * 2
    q = [(0.75 + eps) / (1 + k * eps), (0.25 + eps) / (1 + k * eps)]
    expected = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    assert ramachandran_kl(reference, samples, bins=6, eps=eps) == pytest.approx(
        expected, rel=1e-12
    )


def test_kl_without_regulariser_is_infinite_on_an_empty_cell():
    reference, samples = torch.tensor([[0.0, 0.0], [2.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    assert ramachandran_kl(reference, samples, eps=0.0) == math.inf
    assert 0 < ramachandran_kl(reference, samples) < 0.5 * math.log(0.5 / 1e-10) + 1


def test_kl_weights_equal_duplicates():
    a, b = basin(500, (-1.5, 2.5), 0.5, seed=17), basin(300, (-1.0, 2.0), 0.6, seed=18)
    counts = torch.randint(1, 5, (300,), generator=gen(19))
    weighted = ramachandran_kl(a, b, sample_log_weights=counts.double().log())
    assert weighted == pytest.approx(ramachandran_kl(a, b.repeat_interleave(counts, dim=0)))
