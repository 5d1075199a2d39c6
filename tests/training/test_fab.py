"""FAB: AIS weights are unbiased (exact log Z on toys), the buffer re-weights exactly,
and FAB training raises the ESS of a flow on the double well."""

from __future__ import annotations

import math

import pytest
import torch

from boltzgen.energies.toy import CorrelatedGaussian, DoubleWell2D
from boltzgen.flows import GaussianPrior, make_spline_flow
from boltzgen.flows.linear import ElementwiseAffine
from boltzgen.metrics.weights import batch_ess
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.training.fab import ReplayBuffer, ais_evaluations, fab_loss, run_ais
from boltzgen.training.generator import TrainConfig, train

F64 = torch.float64


def _log_mean_exp(log_w: torch.Tensor) -> tuple[float, float]:
    """log of the mean weight and its delta-method standard error."""
    n = log_w.numel()
    shift = log_w.max()
    w = (log_w - shift).exp()
    mean = w.mean()
    stderr = w.std() / math.sqrt(n) / mean
    return float(mean.log() + shift), float(stderr)


def _gaussian_model(dim: int, std: float, energy) -> BoltzmannGenerator:
    prior = GaussianPrior(dim, std=torch.full((dim,), std, dtype=F64))
    return BoltzmannGenerator(prior, ElementwiseAffine(dim), energy)


def test_ais_towards_p_estimates_the_exact_log_z_of_the_double_well():
    """α = 1: E[w] = Z_p / Z_q = Z_p (q normalised); 4000 chains, within 4 standard errors."""
    energy = DoubleWell2D()
    model = _gaussian_model(2, 2.0, energy)
    steps = torch.full((15,), 0.3, dtype=F64)
    out = run_ais(model, energy, 4000, torch.Generator().manual_seed(0), steps, 3, alpha=1.0)
    estimate, stderr = _log_mean_exp(out.log_w)
    assert out.acceptance.shape == (15,) and bool((out.acceptance > 0.3).all())
    assert abs(estimate - energy.log_z) < 4 * stderr + 1e-9, (estimate, energy.log_z, stderr)


def test_ais_towards_p2_over_q_estimates_its_exact_normaliser():
    """α = 2, p̃ = exp(−x²/2) and q = N(0, s²) in 1-D: Z_g = ∫p̃²/q = s√(2π)·√(π / (1 − 1/(2s²)))."""
    energy = CorrelatedGaussian([0.0], [[1.0]])
    s = 1.5
    model = _gaussian_model(1, s, energy)
    steps = torch.full((7,), 0.5, dtype=F64)
    out = run_ais(model, energy, 20000, torch.Generator().manual_seed(1), steps, 4, alpha=2.0)
    estimate, stderr = _log_mean_exp(out.log_w)
    exact = math.log(s * math.sqrt(2 * math.pi) * math.sqrt(math.pi / (1 - 1 / (2 * s * s))))
    assert abs(estimate - exact) < 4 * stderr, (estimate, exact, stderr)


def test_ais_keeps_a_float32_flow_in_float32():
    """Float64 step sizes (and the energy's float64) must not promote a float32 flow's latents."""
    energy = DoubleWell2D()
    model = _gaussian_model(2, 2.0, energy).to(torch.float32)
    steps = torch.full((3,), 0.3, dtype=F64)
    out = run_ais(model, energy, 64, torch.Generator().manual_seed(0), steps, 3)
    assert out.z.dtype == torch.float32 and out.log_q.dtype == torch.float32
    assert bool(torch.isfinite(out.log_w).all()) and bool((out.acceptance > 0).all())


def test_ais_cost_is_counted():
    energy = DoubleWell2D()
    model = _gaussian_model(2, 2.0, energy)
    before = energy.counter.force + energy.counter.energy
    run_ais(model, energy, 50, torch.Generator().manual_seed(0), torch.full((5,), 0.2), 3)
    assert energy.counter.force + energy.counter.energy - before == ais_evaluations(50, 6, 3)


def test_fab_loss_gradient_is_the_weighted_score():
    energy = DoubleWell2D()
    model = _gaussian_model(2, 2.0, energy)
    x = torch.randn(10, 2, dtype=F64)
    log_w = torch.randn(10, dtype=F64)
    log_w[3] = -math.inf
    loss = fab_loss(model, x, log_w)
    loss.backward()
    got = model.flow.shift.grad.clone()
    model.zero_grad()
    w = torch.softmax(log_w, 0)
    keep = torch.isfinite(log_w)
    (-(w[keep] * model.log_prob(x[keep])).sum()).backward()
    torch.testing.assert_close(got, model.flow.shift.grad)


def test_buffer_reweights_to_the_new_flow_and_keeps_capacity():
    buffer = ReplayBuffer(capacity=5)
    x = torch.arange(8, dtype=F64)[:, None]
    buffer.add(x[:4], torch.zeros(4, dtype=F64), torch.zeros(4, dtype=F64))
    buffer.add(x[4:], torch.tensor([0.0, -math.inf, 0.0, 0.0], dtype=F64), torch.zeros(4))
    assert len(buffer) == 5 and buffer.x[:, 0].tolist() == [2.0, 3.0, 4.0, 6.0, 7.0]
    index = torch.tensor([0, 2])
    buffer.reweight(index, torch.tensor([1.0, -2.0], dtype=F64))
    assert buffer.log_w.tolist() == [-1.0, 0.0, 2.0, 0.0, 0.0]
    assert buffer.log_q[index].tolist() == [1.0, -2.0]


@pytest.mark.slow
@pytest.mark.parametrize("buffer_size", [0, 4096])
def test_fab_training_raises_the_ess_on_the_double_well(buffer_size):
    """A spline flow trained by FAB (α = 2) beats its initial ESS on the bimodal target."""
    energy = DoubleWell2D()
    model = BoltzmannGenerator(
        GaussianPrior(2, std=torch.full((2,), 2.0, dtype=F64)),
        make_spline_flow(2, 4, 32, 8, 6.0, F64, 2, 0),
        energy,
    )
    g = torch.Generator().manual_seed(3)

    def ess() -> float:
        with torch.no_grad():
            x, log_q = model.sample_with_log_prob(4000, g)
            return batch_ess(-energy.energy(x) - log_q) / 4000

    before = ess()
    config = TrainConfig(
        steps=150,
        batch_size=256,
        lr=3e-3,
        loss="fab",
        ais_distributions=4,
        ais_leapfrog=3,
        ais_step_size=0.3,
        buffer_size=buffer_size,
        buffer_updates=4,
        seed=0,
    )
    result = train(model, energy, config, progress=False)
    after = ess()
    assert before < 0.2 and after > 0.6, (before, after)
    assert result.cost.force_evals > 0


@pytest.mark.parametrize("buffer_size", [0, 256])
def test_fab_resumes_exactly(tmp_path, buffer_size):
    """3 steps, stop, 3 more from the checkpoint = 6 steps straight (buffer and ε included)."""

    def fresh() -> BoltzmannGenerator:
        return BoltzmannGenerator(
            GaussianPrior(2), make_spline_flow(2, 2, 8, 4, 5.0, F64, 1, 0), DoubleWell2D()
        )

    def config(steps: int) -> TrainConfig:
        return TrainConfig(
            steps=steps, batch_size=32, loss="fab", ais_distributions=3, ais_leapfrog=2,
            buffer_size=buffer_size, buffer_updates=2, checkpoint_every=1, lr_schedule="constant",
        )  # fmt: skip

    straight = fresh()
    train(straight, straight.energy, config(6), progress=False)
    resumed = fresh()
    train(resumed, resumed.energy, config(3), checkpoint_dir=tmp_path, progress=False)
    again = fresh()
    result = train(again, again.energy, config(6), checkpoint_dir=tmp_path, progress=False)
    assert result.resumed_from == 3
    for a, b in zip(straight.parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_fab_mixed_adds_forward_kl_on_data():
    """w = 1 is pure forward KL on the data: the loss is the batch NLL (AIS still runs)."""
    energy = DoubleWell2D()
    model = _gaussian_model(2, 2.0, energy)
    data = energy.sample_exact(500, torch.Generator().manual_seed(0))
    config = TrainConfig(
        steps=1, batch_size=64, loss="fab_mixed", forward_weight=1.0, ais_distributions=2,
        ais_leapfrog=1, lr=1e-9, seed=0,
    )  # fmt: skip
    result = train(model, energy, config, data=data, progress=False)
    g = torch.Generator().manual_seed(0)
    run_ais(model, energy, 64, g, torch.full((1,), config.ais_step_size, dtype=F64), 1)
    batch = data[torch.randint(500, (64,), generator=g)]
    nll = float(-model.log_prob(batch).mean().detach())
    assert result.losses[0] == pytest.approx(nll, rel=1e-6)
