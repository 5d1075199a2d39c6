"""Overdamped Langevin: the proposal is N(x − ε∇u(x), 2εI), its transition log-density is
that Gaussian's (up to the common constant), and one step reports both directions."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from boltzgen.energies.toy import DoubleWell2D
from boltzgen.kernels import langevin
from boltzgen.kernels.potential import from_energy

F64 = torch.float64


def _gaussian_log_density(y: Tensor, mean: Tensor, variance: float) -> Tensor:
    return torch.distributions.Normal(mean, math.sqrt(variance)).log_prob(y).sum(dim=1)


@pytest.mark.parametrize("step_size", [0.01, 0.3])
def test_log_kernel_is_the_gaussian_transition_density(step_size: float) -> None:
    potential = from_energy(DoubleWell2D())
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randn(50, 2, generator=g, dtype=F64) for _ in range(2))
    _, grad_x = potential(x)
    expected = _gaussian_log_density(y, x - step_size * grad_x, 2 * step_size)
    constant = -0.5 * 2 * math.log(4 * math.pi * step_size)  # −(d/2) log(4πε), d = 2
    got = langevin.log_kernel(y, x, grad_x, step_size) + constant
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    eps = torch.tensor(step_size, dtype=F64)
    got_tensor = langevin.log_kernel(y, x, grad_x, eps) + constant
    torch.testing.assert_close(got_tensor, expected, rtol=0, atol=1e-12)


def test_the_density_of_a_drawn_proposal_equals_minus_half_its_squared_noise() -> None:
    potential = from_energy(DoubleWell2D())
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    _, grad = potential(x)
    y, noise = langevin.proposal(x, grad, 0.2, torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        langevin.log_kernel_of_noise(noise),
        langevin.log_kernel(y, x, grad, 0.2),
        rtol=0,
        atol=1e-12,
    )


def test_proposals_have_the_euler_maruyama_mean_and_covariance() -> None:
    step_size, n = 0.1, 200_000
    x = torch.tensor([[0.7, -1.2]], dtype=F64).expand(n, 2)
    grad = torch.tensor([[2.0, -0.5]], dtype=F64).expand(n, 2)
    y, _ = langevin.proposal(x, grad, step_size, torch.Generator().manual_seed(3))
    mean = x[0] - step_size * grad[0]
    variance = 2 * step_size
    se_mean = math.sqrt(variance / n)
    se_var = variance * math.sqrt(2.0 / n)
    assert bool(((y.mean(dim=0) - mean).abs() < 5 * se_mean).all())
    assert bool(((y.var(dim=0) - variance).abs() < 5 * se_var).all())
    covariance = ((y[:, 0] - mean[0]) * (y[:, 1] - mean[1])).mean()
    assert abs(float(covariance)) < 5 * se_var


def test_step_moves_every_walker_and_reports_both_transition_densities() -> None:
    energy = DoubleWell2D()
    potential = from_energy(energy)
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    state = langevin.init(x, potential)
    new, info = langevin.step(torch.Generator().manual_seed(5), state, potential, 0.05)
    assert energy.counter.force == 40  # init and one step
    assert bool((new.x != x).all())
    torch.testing.assert_close(new.grad, -energy.force(new.x))
    torch.testing.assert_close(info.log_forward, langevin.log_kernel(new.x, x, state.grad, 0.05))
    torch.testing.assert_close(info.log_backward, langevin.log_kernel(x, new.x, new.grad, 0.05))
