"""The HMC kernel: the exact Metropolis test on ΔH, in the documented order of draws, and
the rejection of proposals with non-finite energy or momenta."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from boltzgen.energies.toy import DoubleWell2D
from boltzgen.kernels import hmc
from boltzgen.kernels.leapfrog import PhasePoint
from boltzgen.kernels.potential import from_energy

F64 = torch.float64
STIFFNESS = 2.5


def _harmonic(x: Tensor) -> tuple[Tensor, Tensor]:
    """u = ½k|x|², ∇u = kx."""
    return 0.5 * STIFFNESS * (x * x).sum(dim=1), STIFFNESS * x


def test_one_step_energy_error_and_acceptance_match_the_hand_computed_leapfrog() -> None:
    """One leapfrog step of u = ½kx² by hand; the test uses the same momenta and uniforms
    (momenta first, then one uniform per chain, from the same generator)."""
    eps, n = 0.7, 64
    x0 = torch.linspace(-2.0, 2.0, n, dtype=F64)[:, None]
    state = hmc.init(x0, _harmonic)
    new, info = hmc.step(torch.Generator().manual_seed(3), state, _harmonic, eps, 1)
    replay = torch.Generator().manual_seed(3)
    p0 = torch.randn(x0.shape, generator=replay, dtype=F64)
    uniform = torch.rand(n, generator=replay, dtype=F64)
    p_half = p0 - 0.5 * eps * STIFFNESS * x0
    x1 = x0 + eps * p_half
    p1 = p_half - 0.5 * eps * STIFFNESS * x1
    delta_h = (0.5 * STIFFNESS * (x1**2 - x0**2) + 0.5 * (p1**2 - p0**2))[:, 0]
    torch.testing.assert_close(info.energy_error, delta_h, rtol=0, atol=1e-12)
    prob = torch.clamp(torch.exp(-delta_h), max=1.0)
    torch.testing.assert_close(info.acceptance_prob, prob, rtol=0, atol=1e-12)
    assert torch.equal(info.accepted, uniform < prob)
    assert 0 < int(info.accepted.sum()) < n
    torch.testing.assert_close(new.x, torch.where(info.accepted[:, None], x1, x0))
    torch.testing.assert_close(new.grad, STIFFNESS * new.x)


def test_metropolis_rejects_non_finite_proposals() -> None:
    x = torch.zeros(4, 2, dtype=F64)
    start = PhasePoint(x, torch.zeros_like(x), torch.zeros(4, dtype=F64), torch.zeros_like(x))
    bad_u = torch.tensor([math.inf, 0.0, math.inf, 0.0], dtype=F64)
    bad_p = torch.tensor([[0.0, 0.0], [math.inf, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=F64)
    end = PhasePoint(x + 1.0, bad_p, bad_u, torch.zeros_like(x))
    new, info = hmc.metropolis(start, end, torch.Generator().manual_seed(0))
    assert info.accepted.tolist() == [False, False, False, True]
    assert info.acceptance_prob.tolist() == [0.0, 0.0, 0.0, 1.0]
    assert bool(torch.isinf(info.energy_error[:3]).all())
    torch.testing.assert_close(new.x[:3], x[:3])


def test_momenta_have_the_mass_matrix_as_covariance_and_kinetic_energy_is_quadratic() -> None:
    inv_m = torch.tensor([1.0, 0.25, 4.0], dtype=F64)
    like = torch.zeros(200_000, 3, dtype=F64)
    p = hmc.draw_momentum(like, torch.Generator().manual_seed(1), inv_m)
    se = math.sqrt(2.0 / like.shape[0])  # relative standard error of a Gaussian variance
    torch.testing.assert_close(p.var(dim=0) * inv_m, torch.ones(3, dtype=F64), rtol=0, atol=5 * se)
    expected = 0.5 * (p * p * inv_m).sum(dim=1)
    torch.testing.assert_close(hmc.kinetic_energy(p, inv_m), expected)


def test_init_evaluates_the_potential_once_per_chain() -> None:
    energy = DoubleWell2D()
    state = hmc.init(torch.zeros(5, 2, dtype=F64), from_energy(energy))
    assert energy.counter.force == 5
    torch.testing.assert_close(state.grad, -energy.force(state.x))
