"""Leapfrog against the closed-form harmonic trajectory: global error O(ε²), energy error
O(ε²) without drift, exact time reversibility, one potential evaluation per step."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.toy import DoubleWell2D
from boltzgen.kernels.hmc import kinetic_energy
from boltzgen.kernels.leapfrog import PhasePoint, leapfrog
from boltzgen.kernels.potential import Potential, from_energy

F64 = torch.float64
STIFFNESS = torch.tensor([1.0, 4.0, 0.25], dtype=F64)
MASSES = {"identity": None, "diagonal": torch.tensor([1.0, 0.5, 2.0], dtype=F64)}


class Harmonic(Energy):
    """u(x) = ½ Σ_i k_i x_i²: x_i(t) = x_i cos ω_i t + p_i/(m_i ω_i) sin ω_i t, ω_i² = k_i/m_i."""

    def __init__(self, stiffness: Tensor):
        super().__init__(tuple(stiffness.shape), temperature=1.0)
        self.stiffness = stiffness

    def _energy(self, x: Tensor) -> Tensor:
        return 0.5 * (self.stiffness * x * x).sum(dim=1)


def _point(potential: Potential, x: Tensor, p: Tensor) -> PhasePoint:
    u, grad = potential(x)
    return PhasePoint(x, p, u, grad)


def _start(n: int, dim: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=F64), torch.randn(n, dim, generator=g, dtype=F64)


def _harmonic_trajectory(step: float, n_steps: int, inverse_mass: Tensor | None) -> PhasePoint:
    potential = from_energy(Harmonic(STIFFNESS))
    x, p = _start(8, 3, seed=0)
    eps = torch.tensor(step, dtype=F64)
    return leapfrog(potential, _point(potential, x, p), eps, n_steps, inverse_mass)


@pytest.mark.parametrize("mass", MASSES)
def test_leapfrog_matches_closed_form_harmonic_solution_to_second_order(mass: str) -> None:
    inv_m = MASSES[mass]
    m = torch.ones(3, dtype=F64) if inv_m is None else 1.0 / inv_m
    omega = (STIFFNESS / m).sqrt()
    x0, p0 = _start(8, 3, seed=0)
    total_time = 5.0
    x_exact = x0 * torch.cos(omega * total_time) + p0 / (m * omega) * torch.sin(omega * total_time)
    p_exact = p0 * torch.cos(omega * total_time) - m * omega * x0 * torch.sin(omega * total_time)
    errors = []
    for step in (0.02, 0.01):
        end = _harmonic_trajectory(step, round(total_time / step), inv_m)
        errors.append(max((end.x - x_exact).abs().max(), (end.p - p_exact).abs().max()))
    assert errors[1] < 1e-3
    assert 3.6 < errors[0] / errors[1] < 4.4  # global error O(ε²)


@pytest.mark.parametrize("mass", MASSES)
def test_leapfrog_energy_error_is_second_order(mass: str) -> None:
    inv_m = MASSES[mass]
    potential = from_energy(Harmonic(STIFFNESS))
    max_errors = []
    for step in (0.04, 0.02):
        x, p = _start(8, 3, seed=1)
        point = _point(potential, x, p)
        h0 = point.energy + kinetic_energy(point.p, inv_m)
        worst = torch.zeros(8, dtype=F64)
        for _ in range(round(10.0 / step)):
            point = leapfrog(potential, point, torch.tensor(step, dtype=F64), 1, inv_m)
            h = point.energy + kinetic_energy(point.p, inv_m)
            worst = torch.maximum(worst, (h - h0).abs())
        max_errors.append(worst)
    assert float(max_errors[1].max()) < 1e-2
    ratio = max_errors[0] / max_errors[1]
    assert bool(((ratio > 3.6) & (ratio < 4.4)).all())  # |ΔH| = O(ε²), no drift


@pytest.mark.parametrize("mass", MASSES)
@pytest.mark.parametrize("system", ["harmonic", "double_well"])
def test_leapfrog_is_time_reversible(system: str, mass: str) -> None:
    inv_m = MASSES[mass]
    if system == "harmonic":
        potential = from_energy(Harmonic(STIFFNESS))
        x, p = _start(16, 3, seed=2)
    else:
        potential = from_energy(DoubleWell2D())
        x, p = _start(16, 2, seed=2)
        inv_m = None if inv_m is None else inv_m[:2]
    step = torch.linspace(0.01, 0.1, 16, dtype=F64)  # one step size per chain
    end = leapfrog(potential, _point(potential, x, p), step, 50, inv_m)
    back = leapfrog(potential, PhasePoint(end.x, -end.p, end.energy, end.grad), step, 50, inv_m)
    assert float((end.x - x).abs().max()) > 0.1
    torch.testing.assert_close(back.x, x, rtol=0.0, atol=1e-10)
    torch.testing.assert_close(-back.p, p, rtol=0.0, atol=1e-10)


def test_leapfrog_charges_one_force_evaluation_per_chain_and_step() -> None:
    energy = Harmonic(STIFFNESS)
    potential = from_energy(energy)
    x, p = _start(8, 3, seed=3)
    start = _point(potential, x, p)
    before = energy.counter.snapshot()
    leapfrog(potential, start, torch.tensor(0.1, dtype=F64), 7, None)
    spent = energy.counter.since(before)
    assert (spent.force, spent.energy) == (8 * 7, 0)


def test_a_number_and_a_zero_dimensional_step_size_give_the_same_trajectory() -> None:
    potential = from_energy(DoubleWell2D())
    x, p = _start(4, 2, seed=4)
    a = leapfrog(potential, _point(potential, x, p), 0.05, 10)
    b = leapfrog(potential, _point(potential, x, p), torch.tensor(0.05, dtype=F64), 10)
    assert torch.equal(a.x, b.x) and torch.equal(a.p, b.p)


@pytest.mark.parametrize("per_chain", [False, True])
def test_leapfrog_keeps_the_dtype_of_the_positions(per_chain: bool) -> None:
    """A float64 step size (e.g. adapted in float64) must not promote float32 positions."""
    potential = from_energy(Harmonic(STIFFNESS))
    x, p = _start(8, 3, seed=2)
    eps = torch.full((8,), 0.1, dtype=F64) if per_chain else torch.tensor(0.1, dtype=F64)
    exact = leapfrog(potential, _point(potential, x, p), eps, 10)
    x32, p32 = x.float(), p.float()
    end = leapfrog(potential, _point(potential, x32, p32), eps, 10)
    assert end.x.dtype == torch.float32 and end.p.dtype == torch.float32
    assert torch.allclose(end.x.double(), exact.x, atol=1e-5)
