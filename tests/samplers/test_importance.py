"""Boltzmann generator importance sampling: weights, cost and bookkeeping."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.toy import CorrelatedGaussian
from boltzgen.flows import AffineFlow, GaussianPrior, make_spline_flow
from boltzgen.metrics import ess_fraction, log_z
from boltzgen.metrics.weights import batch_ess
from boltzgen.records import Cost
from boltzgen.samplers.importance import BoltzmannGenerator

F64 = torch.float64


def _gaussian(dim: int) -> CorrelatedGaussian:
    g = torch.Generator().manual_seed(dim)
    a = torch.randn(dim, dim, generator=g, dtype=F64)
    cov = a @ a.T / dim + 0.5 * torch.eye(dim, dtype=F64)
    return CorrelatedGaussian(torch.randn(dim, generator=g, dtype=F64), cov)


class _HalfPlaneWall(Energy):
    """u = ½|x|² for x₀ < 1 and +inf beyond: a target with failed configurations."""

    def __init__(self) -> None:
        super().__init__((2,), temperature=1.0)

    def _energy(self, x: Tensor) -> Tensor:
        u = 0.5 * (x * x).sum(dim=1)
        return torch.where(x[:, 0] < 1.0, u, torch.full_like(u, math.inf))


@pytest.mark.parametrize("dim", [2, 5, 32])
def test_exact_affine_flow_gives_uniform_weights(dim: int) -> None:
    energy = _gaussian(dim)
    flow = AffineFlow.from_gaussian(energy.mean, energy.cov)
    bg = BoltzmannGenerator(GaussianPrior(dim), flow, energy)
    samples = bg.sample(3000, torch.Generator().manual_seed(0), batch_size=1000)
    assert samples.x.shape == (3000, dim)
    assert float(samples.log_weights.std()) < 1e-10
    assert samples.info["ess_fraction"] == pytest.approx(1.0, abs=1e-12)
    assert ess_fraction(samples.log_weights) == pytest.approx(1.0, abs=1e-12)
    # q = p exactly, so every weight is exp(−u)/p = Z.
    assert log_z(samples.log_weights)[0] == pytest.approx(energy.log_z, abs=1e-9)
    torch.testing.assert_close(samples.energies, energy.energy(samples.x))


def test_log_weights_follow_bgflow_convention() -> None:
    energy = _gaussian(3)
    bg = BoltzmannGenerator(GaussianPrior(3), make_spline_flow(3, hidden=8), energy)
    with torch.no_grad():
        for p in bg.flow.parameters():
            p.add_(
                0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
            )
    g = torch.Generator().manual_seed(2)
    samples = bg.sample(200, g)
    z = bg.prior.sample(200, torch.Generator().manual_seed(2))
    x, logdet = bg.flow(z)
    expected = bg.prior.energy(z) + logdet - energy.energy(x)  # u_Z(z) + logdet − u(x)
    torch.testing.assert_close(samples.log_weights, expected.detach())
    log_q = bg.log_prob(samples.x)
    torch.testing.assert_close(samples.log_weights, -samples.energies - log_q.detach())
    assert float(samples.log_weights.std()) > 1e-3


def test_sampling_cost_and_training_cost() -> None:
    energy = _gaussian(2)
    bg = BoltzmannGenerator(GaussianPrior(2), make_spline_flow(2, hidden=8), energy)
    bg.training_cost = Cost(energy_evals=500, wall_s=2.0)
    samples = bg.sample(250, torch.Generator().manual_seed(0), batch_size=100)
    assert samples.cost.energy_evals == 250 and samples.cost.force_evals == 0
    assert samples.cost.train_energy_evals == 500 and samples.cost.train_wall_s == 2.0
    assert samples.cost.wall_s > 0
    override = bg.sample(10, torch.Generator().manual_seed(0), training_cost=Cost(energy_evals=7))
    assert override.cost.train_energy_evals == 7


def test_sampling_is_reproducible_from_the_generator() -> None:
    bg = BoltzmannGenerator(GaussianPrior(2), make_spline_flow(2, hidden=8), _gaussian(2))
    a = bg.sample(100, torch.Generator().manual_seed(5))
    b = bg.sample(100, torch.Generator().manual_seed(5))
    assert torch.equal(a.x, b.x) and torch.equal(a.log_weights, b.log_weights)


def test_infinite_energies_get_zero_weight_and_are_counted() -> None:
    energy = _HalfPlaneWall()
    bg = BoltzmannGenerator(GaussianPrior(2), make_spline_flow(2, hidden=8), energy)
    samples = bg.sample(2000, torch.Generator().manual_seed(0))
    failed = samples.x[:, 0] >= 1.0
    assert 0 < int(failed.sum()) == samples.info["n_nonfinite"]
    assert bool((samples.log_weights[failed] == -math.inf).all())
    assert bool(torch.isfinite(samples.log_weights[~failed]).all())
    assert 0 < samples.info["ess_fraction"] < 1


def test_batch_ess_never_raises() -> None:
    assert batch_ess(torch.full((4,), -math.inf)) == 0.0
    assert math.isnan(batch_ess(torch.tensor([0.0, math.nan])))
    assert batch_ess(torch.zeros(5, dtype=F64)) == pytest.approx(5.0)


def test_sample_rejects_bad_sizes() -> None:
    bg = BoltzmannGenerator(GaussianPrior(2), make_spline_flow(2, hidden=8), _gaussian(2))
    with pytest.raises(ValueError, match="positive"):
        bg.sample(0, torch.Generator())


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_at_temperature_weighs_the_same_flow_for_the_boltzmann_distribution_at_t(
    temperature: float,
) -> None:
    """A flow exact for the Gaussian at T (covariance TΣ) gives uniform weights once the
    generator is weighed at T, each equal to Z_T = Z₁ · T^(d/2), and the draws of the two
    generators differ only by the reduced energy's factor: log w_T = log w₁ + u(1 − 1/T)."""
    dim = 3
    energy = _gaussian(dim)
    flow = AffineFlow.from_gaussian(energy.mean, temperature * energy.cov)
    bg = BoltzmannGenerator(GaussianPrior(dim), flow, energy)
    bg.training_cost = Cost(energy_evals=123)
    hot = bg.at_temperature(temperature)
    assert hot.flow is bg.flow and hot.prior is bg.prior
    assert hot.training_cost.energy_evals == 123
    at_t = hot.sample(2000, torch.Generator().manual_seed(0))
    assert float(at_t.log_weights.std()) < 1e-10
    expected = energy.log_z + 0.5 * dim * math.log(temperature)
    assert log_z(at_t.log_weights)[0] == pytest.approx(expected, abs=1e-9)
    at_one = bg.sample(2000, torch.Generator().manual_seed(0))
    assert float(at_one.log_weights.std()) > 0.1
    u = energy.energy(at_one.x)
    torch.testing.assert_close(at_t.log_weights, at_one.log_weights + u * (1 - 1 / temperature))
    assert at_t.cost.energy_evals == 2000 and at_t.cost.train_energy_evals == 123
