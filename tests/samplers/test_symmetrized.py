"""A generator averaged over x ↦ −x: exact on a symmetric two-mode target when the base
flow is exactly one of its modes; the density is invariant and normalised."""

import math

import pytest
import torch

from boltzgen.energies.toy import GaussianMixture
from boltzgen.flows import GaussianPrior
from boltzgen.flows.linear import ElementwiseAffine
from boltzgen.samplers.flow_mcmc import FlowIndependenceMetropolis
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.objectives import reverse_kl, symmetric_reverse_kl
from boltzgen.samplers.symmetrized import SymmetrizedGenerator, negate, symmetrized_evaluations
from boltzgen.training import TrainConfig, train
from boltzgen.training.generator import training_evaluations

A = 3.0


def _one_mode(energy, shift=(A, A)) -> BoltzmannGenerator:
    """N((a, a), 1): exactly one of the two modes of the symmetric mixture."""
    flow = ElementwiseAffine(2)
    with torch.no_grad():
        flow.shift.copy_(torch.tensor(shift, dtype=torch.float64))
    return BoltzmannGenerator(GaussianPrior(2), flow, energy)


def _mixture() -> GaussianMixture:
    return GaussianMixture([[A, A], [-A, -A]], [[1.0, 1.0], [1.0, 1.0]])


def test_symmetrizing_one_exact_mode_gives_uniform_weights_and_the_exact_log_z():
    energy = _mixture()
    base = _one_mode(energy)
    g = torch.Generator().manual_seed(0)
    alone = base.sample(4000, g)
    both = SymmetrizedGenerator(base).sample(4000, g)
    # p / q = ½ + ½ N(−a)/N(a) ≈ ½ on the draws of one mode: half the mass is missed.
    assert float(torch.logsumexp(alone.log_weights, 0) - math.log(4000)) == pytest.approx(
        -math.log(2.0), abs=1e-3
    )
    torch.testing.assert_close(both.log_weights, torch.zeros(4000, dtype=torch.float64))
    assert both.info["ess_fraction"] == pytest.approx(1.0)
    assert both.cost.energy_evals == symmetrized_evaluations(4000)
    upper = both.x[:, 0] > 0
    assert 0.45 < float(upper.double().mean()) < 0.55


def test_symmetrized_density_is_invariant_and_normalised():
    energy = _mixture()
    base = _one_mode(energy, shift=(1.0, -0.5))
    with torch.no_grad():
        base.flow.log_scale.copy_(torch.tensor([0.3, -0.2], dtype=torch.float64))
    model = SymmetrizedGenerator(base)
    grid = torch.linspace(-9.0, 9.0, 361, dtype=torch.float64)
    x = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        log_q = model.log_prob(x)
        torch.testing.assert_close(model.log_prob(-x), log_q)
        expected = torch.log(0.5 * base.log_prob(x).exp() + 0.5 * base.log_prob(-x).exp())
        torch.testing.assert_close(log_q, expected)
        cell = float(grid[1] - grid[0]) ** 2
        assert float(log_q.exp().sum()) * cell == pytest.approx(1.0, abs=1e-6)
        draws, log_q_draws = model.sample_with_log_prob(50, torch.Generator().manual_seed(1))
        torch.testing.assert_close(log_q_draws, model.log_prob(draws))


def test_flow_mcmc_with_the_symmetrized_exact_mode_accepts_everything_and_visits_both():
    energy = _mixture()
    model = SymmetrizedGenerator(_one_mode(energy))
    chains = FlowIndependenceMetropolis(model, energy).sample(
        8, 200, torch.Generator().manual_seed(2), 10
    )
    assert chains.info["acceptance"] == pytest.approx(1.0)
    assert 0.4 < float((chains.x[:, 0] > 0).double().mean()) < 0.6


def test_a_symmetry_the_target_lacks_is_refused():
    lopsided = GaussianMixture([[A, A], [-A, -A]], [[1.0, 1.0], [1.0, 1.0]], [0.7, 0.3])
    model = SymmetrizedGenerator(_one_mode(lopsided))
    with pytest.raises(ValueError, match="changes the target's energy"):
        model.check_symmetry(100, torch.Generator().manual_seed(3))


def _symmetric_mixture() -> GaussianMixture:
    energy = _mixture()
    energy.symmetries = frozenset({"negate"})  # the modes are ±(a, a) with equal weights
    return energy


def _shift_gradient(energy, shift, n=65536):
    base = _one_mode(energy, shift)
    loss, log_w = symmetric_reverse_kl(
        base.prior, base.flow, energy, negate, n, torch.Generator().manual_seed(1)
    )
    loss.backward()
    return float(loss.detach()), log_w, base.flow.shift.grad


def test_symmetric_reverse_kl_is_minimal_and_flat_at_one_exact_mode():
    """At q = one mode, q_g = p: every term u + log q_g is −log Z = 0 and the expected
    gradient vanishes (here within the noise of 2¹⁶ draws, against a clear slope one unit
    away), while plain reverse KL there is log 2 above its minimum (the missed mode)."""
    energy = _symmetric_mixture()
    loss, log_w, grad = _shift_gradient(energy, (A, A))
    assert loss == pytest.approx(0.0, abs=1e-10)
    torch.testing.assert_close(log_w, torch.zeros_like(log_w))
    assert float(grad.abs().max()) < 0.02
    _, _, slope = _shift_gradient(energy, (A - 1.0, A - 1.0))
    assert float(slope.min()) < -0.3
    base = _one_mode(energy)
    plain, _ = reverse_kl(base.prior, base.flow, energy, 4096, torch.Generator().manual_seed(1))
    assert float(plain.detach()) == pytest.approx(math.log(2.0), abs=1e-3)


def test_symmetric_reverse_kl_matches_the_averaged_generator_density():
    energy = _symmetric_mixture()
    base = _one_mode(energy, shift=(1.0, -0.5))
    loss, log_w = symmetric_reverse_kl(
        base.prior, base.flow, energy, negate, 64, torch.Generator().manual_seed(2)
    )
    x, _ = base.sample_with_log_prob(64, torch.Generator().manual_seed(2))
    log_q_g = SymmetrizedGenerator(base).log_prob(x)
    u = energy.energy(x)
    torch.testing.assert_close(log_w, (-u - log_q_g).detach())
    assert float(loss.detach()) == pytest.approx(float((u + log_q_g).mean().detach()), rel=1e-12)


def test_training_the_symmetric_loss_reaches_the_exact_averaged_flow():
    energy = _symmetric_mixture()
    base = _one_mode(energy, shift=(0.5, 1.5))
    config = TrainConfig(steps=400, batch_size=256, lr=0.05, loss="reverse_kl_symmetric")
    result = train(base, energy, config, progress=False)
    assert result.cost.energy_evals == training_evaluations(config)
    drawn = SymmetrizedGenerator(base).sample(4000, torch.Generator().manual_seed(3))
    assert drawn.info["ess_fraction"] > 0.99


def test_the_symmetric_loss_needs_a_declared_symmetry():
    energy = _mixture()
    config = TrainConfig(steps=1, batch_size=8, loss="reverse_kl_symmetric")
    with pytest.raises(ValueError, match="no symmetry"):
        train(_one_mode(energy), energy, config, progress=False)
