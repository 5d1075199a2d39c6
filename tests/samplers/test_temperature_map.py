"""Hot-to-cold flow: its weights are the exact density ratio, and training raises the ESS."""

from __future__ import annotations

import math

import pytest
import torch

from boltzgen.energies.particles import kob_andersen_ternary
from boltzgen.flows.particles import periodic_particle_flow
from boltzgen.metrics import ess_fraction
from boltzgen.samplers.swap_mc import SwapMCConfig, SwapMonteCarlo
from boltzgen.samplers.temperature_map import TemperatureMap
from boltzgen.training.temperature_map import train_temperature_map

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


@pytest.mark.slow
def test_training_on_hot_samples_raises_the_ess_at_the_cold_temperature():
    energy, generator, z, u_hot, flow = _setup()
    sampler = TemperatureMap(flow, energy)
    before = sampler.sample(z, u_hot)
    history = train_temperature_map(flow, energy, z, generator, steps=150, batch_size=32, lr=2e-3)
    assert history.losses[-1] < history.losses[0]
    after = sampler.sample(z, u_hot)
    assert ess_fraction(after.log_weights) > ess_fraction(before.log_weights)


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
