"""Hot-to-cold flow: its weights are the exact density ratio, and training raises the ESS."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from boltzgen.energies.particles import kob_andersen_ternary
from boltzgen.flows.particles import periodic_particle_flow, probe_particle_flow
from boltzgen.metrics import ess_fraction
from boltzgen.samplers.swap_mc import SwapMCConfig, SwapMonteCarlo
from boltzgen.samplers.temperature_map import HotChains, TemperatureMap
from boltzgen.training.temperature_map import stein_term, train_temperature_map

T_HOT, T_COLD = 2.0, 1.0


def _hot_samples(energy, generator):
    hot = energy.at_temperature(T_HOT)
    x0 = energy.minimum.expand(32, -1, -1).clone()
    config = SwapMCConfig(step_size=0.2, swap_probability=0.2)
    run = SwapMonteCarlo(hot, config).sample(x0, 10, generator, n_warmup=20)
    box = energy.box
    return run.x - box * torch.floor(run.x / box), run.energies


def _setup():
    torch.manual_seed(0)
    energy = kob_andersen_ternary(n_particles=36, temperature=T_COLD)
    generator = torch.Generator().manual_seed(0)
    z, u_hot = _hot_samples(energy, generator)
    flow = periodic_particle_flow(energy.box, energy.species, n_layers=4, hidden=16).double()
    return energy, generator, z, u_hot, flow


def test_identity_flow_weights_are_the_boltzmann_ratio_of_the_two_temperatures():
    energy, _, z, u_hot, flow = _setup()
    samples = TemperatureMap(flow, energy).sample(z, u_hot)
    expected = -(energy.energy(z) - u_hot)  # identity map: log w = −u_cold(z) + u_hot(z)
    torch.testing.assert_close(samples.log_weights, expected)
    log_mean = float(torch.logsumexp(expected, 0)) - math.log(expected.numel())
    assert math.isclose(samples.info["log_z_ratio"], log_mean, rel_tol=1e-12)
    assert samples.cost.energy_evals == z.shape[0]


T_NEAR = 1.25
"""Hot temperature of the ESS test: the identity map's ESS at T_COLD is ≈ 24 %, measurable."""


def _log_weights(sampler: TemperatureMap, z: Tensor, u_hot: Tensor) -> Tensor:
    """log w of the mapped ``z`` in blocks of 320 (the probe conditioner is O(N²K) in memory)."""
    blocks = zip(z.split(320), u_hot.split(320), strict=True)
    return torch.cat([sampler.sample(a, b).log_weights for a, b in blocks])


def _ess_of_resampled_chains(log_w: Tensor, n_chains: int, draws: Tensor) -> Tensor:
    """Kish ESS fractions ``[R]`` of ``log_w`` (step-major, ``n_chains`` chains) resampled by
    whole chains, chain indices ``draws: [R, C]`` (a block bootstrap over correlated chains)."""
    by_chain = log_w.reshape(-1, n_chains)
    return torch.tensor([ess_fraction(by_chain[:, row].reshape(-1)) for row in draws])


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="issue 14: 150 steps of the temperature map do not raise the ESS by 3 standard "
    "errors yet (docs/particles.md); strict, so a method that passes turns this red",
)
def test_training_on_hot_samples_raises_the_ess_at_the_cold_temperature():
    """Trained on a stream of fresh hot configurations, the map lowers the KL estimate
    E[−log w] and raises the Kish ESS of 1280 hot samples it never saw by more than three
    standard errors.

    The temperature step 1.25 → 1 keeps the ESS measurable: the identity map's log-weights
    spread by ≈ 1.4 (ESS ≈ 24 %). From T = 2 they spread by ≈ 4.4, the true ESS is ≈ e⁻¹⁹, and
    the Kish ESS of a few hundred samples only says which one has the largest weight (a map
    that narrows the spread to 4.3 raises it in about half of the draws). The standard error
    of the rise comes from resampling whole chains (a chain's samples are correlated), the
    same resamples before and after training.
    """
    energy = kob_andersen_ternary(n_particles=36, temperature=T_COLD)
    generator = torch.Generator().manual_seed(0)
    hot = SwapMonteCarlo(energy.at_temperature(T_NEAR), SwapMCConfig(0.2, 0.2))
    chains = 32
    run = hot.sample(energy.random_starts(chains, generator), 40, generator, n_warmup=100)
    z = run.x - energy.box * torch.floor(run.x / energy.box)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        flow = probe_particle_flow(energy.box, energy.species, n_layers=4, hidden=16).double()
    sampler = TemperatureMap(flow, energy)
    before = _log_weights(sampler, z, run.energies)
    stream = HotChains(hot, run.x[-chains:].clone())  # continues past the held-out samples
    train_temperature_map(flow, energy, stream, generator, steps=150, lr=1e-2, t_hot=T_NEAR)
    after = _log_weights(sampler, z, run.energies)
    assert float(-after.mean()) < float(-before.mean())
    draws = torch.randint(chains, (1000, chains), generator=torch.Generator().manual_seed(1))
    rise = _ess_of_resampled_chains(after, chains, draws)
    rise = rise - _ess_of_resampled_chains(before, chains, draws)
    assert ess_fraction(after) - ess_fraction(before) > 3 * float(rise.std())


def test_the_reverse_kl_gradient_matches_a_central_difference_along_it():
    """d/dη L(θ − η g) at η = 0 is −‖g‖², g = ∇L of E[u_cold(f(z)) − log det] (autograd)."""
    torch.manual_seed(0)
    energy = kob_andersen_ternary(n_particles=36, temperature=T_COLD)
    generator = torch.Generator().manual_seed(1)
    z = energy.random_starts(4, generator)
    flow = periodic_particle_flow(energy.box, energy.species, n_layers=2, hidden=8).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(1e-2 * torch.randn(p.shape, generator=generator, dtype=p.dtype))

    def loss() -> torch.Tensor:
        x, logdet = flow(z)
        return (energy.energy(x) - logdet).mean()

    flow.zero_grad()
    loss().backward()
    grads = [p.grad.clone() for p in flow.parameters()]
    eta = 1e-6
    values = []
    with torch.no_grad():
        for sign in (1.0, -1.0):
            for p, g in zip(flow.parameters(), grads, strict=True):
                p.sub_(sign * eta * g)
            values.append(float(loss()))
            for p, g in zip(flow.parameters(), grads, strict=True):
                p.add_(sign * eta * g)
    slope = (values[0] - values[1]) / (2 * eta)
    squared = sum(float((g**2).sum()) for g in grads)
    assert squared > 0
    assert math.isclose(slope, -squared, rel_tol=1e-4)


def test_the_stein_term_of_the_identity_map_is_minus_ratio_times_the_dimension():
    energy = kob_andersen_ternary(n_particles=36, temperature=T_COLD)
    generator = torch.Generator().manual_seed(2)
    z = energy.random_starts(3, generator).requires_grad_(True)
    flow = probe_particle_flow(energy.box, energy.species, n_layers=2, hidden=8).double()
    x, _ = flow(z)
    term = stein_term(energy, z, x, T_HOT / T_COLD, generator)
    torch.testing.assert_close(term.detach(), torch.full((3,), -2.0 * 72, dtype=torch.float64))


@pytest.mark.slow
def test_the_stein_term_is_unbiased_for_the_force_term_minus_the_jacobian_trace():
    """Averaged over Rademacher draws, c = ∇u·w − r·εᵀJε → ∇u·w − r·tr J (within 6 se)."""
    torch.manual_seed(0)
    energy = kob_andersen_ternary(n_particles=36, temperature=T_COLD)
    generator = torch.Generator().manual_seed(3)
    z0 = energy.random_starts(1, generator)
    flow = probe_particle_flow(energy.box, energy.species, n_layers=2, hidden=8).double()
    with torch.no_grad():
        for layer in flow.layers:
            layer.conditioner.head.weight.normal_(0, 0.3, generator=generator)
    v = z0.expand(72, -1, -1).clone().requires_grad_(True)  # row k: ∂x_k/∂z by one backward
    basis = torch.eye(72, dtype=torch.float64).reshape(72, 36, 2)
    (rows,) = torch.autograd.grad(flow(v)[0], v, grad_outputs=basis)
    trace = float((rows * basis).sum())
    w = flow(z0)[0].detach() - z0
    w = w - energy.box * torch.round(w / energy.box)
    exact = float(-(energy.force(z0) * w).sum()) - 2.0 * trace
    z = z0.expand(256, -1, -1).clone().requires_grad_(True)
    term = stein_term(energy, z, flow(z)[0], 2.0, generator).detach()
    se = float(term.std()) / 16
    assert se > 0
    assert abs(float(term.mean()) - exact) < 6 * se
