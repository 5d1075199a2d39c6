"""Potential constructors: an energy's potential is (u, −F), tempering scales both,
interpolation is linear in λ (λ = 0 never evaluates the end point), and the pull-back
through an affine flow has the closed form u(Lz + μ) − log|det L|, ∇ = Lᵀ∇u."""

from __future__ import annotations

import torch
from torch import Tensor

from boltzgen.energies.toy import CorrelatedGaussian, DoubleWell2D
from boltzgen.flows import AffineFlow
from boltzgen.kernels.potential import from_energy, interpolated, pulled_back, tempered

F64 = torch.float64


def _x(n: int = 6, seed: int = 0) -> Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_from_energy_gives_energy_and_gradient_and_charges_one_force_evaluation() -> None:
    energy = DoubleWell2D()
    u, grad = from_energy(energy)(_x())
    assert (energy.counter.force, energy.counter.energy) == (6, 0)
    torch.testing.assert_close(u, energy.energy(_x()))
    torch.testing.assert_close(grad, -energy.force(_x()))


def test_tempered_matches_the_energy_reduced_at_another_temperature() -> None:
    energy = DoubleWell2D()
    hot = energy.at_temperature(4.0)
    u, grad = tempered(from_energy(energy), 0.25)(_x())
    torch.testing.assert_close(u, hot.energy(_x()))
    torch.testing.assert_close(grad, -hot.force(_x()))
    scales = torch.tensor([1.0, 0.5, 0.25, 1.0, 0.5, 0.25], dtype=F64)
    u_rows, grad_rows = tempered(from_energy(energy), scales)(_x())
    torch.testing.assert_close(u_rows, scales * energy.energy(_x()))
    torch.testing.assert_close(grad_rows, -scales[:, None] * energy.force(_x()))


def test_interpolated_is_linear_in_lambda_and_skips_the_end_at_zero() -> None:
    start = from_energy(CorrelatedGaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]))
    target = DoubleWell2D()
    end = from_energy(target)
    u_0, g_0 = start(_x())
    u_1, g_1 = end(_x())
    u, grad = interpolated(start, end, 0.3)(_x())
    torch.testing.assert_close(u, 0.7 * u_0 + 0.3 * u_1)
    torch.testing.assert_close(grad, 0.7 * g_0 + 0.3 * g_1)
    before = target.counter.snapshot()
    u, grad = interpolated(start, end, 0.0)(_x())
    assert target.counter.since(before).force == 0
    torch.testing.assert_close(u, u_0)


def test_pull_back_through_an_affine_flow_has_the_closed_form() -> None:
    energy = DoubleWell2D()
    shift = torch.tensor([0.3, -0.2], dtype=F64)
    matrix = torch.tensor([[1.2, 0.0], [0.4, 0.8]], dtype=F64)
    z = _x()
    u, grad = pulled_back(AffineFlow(shift, matrix), energy)(z)
    x = z @ matrix.T + shift
    logdet = torch.log(matrix.diagonal()).sum()
    torch.testing.assert_close(u, energy.energy(x) - logdet)
    torch.testing.assert_close(grad, -energy.force(x) @ matrix)
