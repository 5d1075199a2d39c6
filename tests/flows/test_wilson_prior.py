"""The exactly sampled Wilson prior of U(1) gauge flows: its draws and its density against
the character expansion."""

import math

import numpy as np
import pytest
import torch

from boltzgen.energies.lattice.u1 import gauge_transform
from boltzgen.energies.lattice.u1_exact import u1_exact
from boltzgen.flows.gauge import TWO_PI, UniformAnglePrior, plaquettes
from boltzgen.flows.wilson_prior import (
    WilsonPrior,
    gauge_prior,
    links_from_plaquettes,
    wilson_log_z,
)
from boltzgen.observables.lattice import q2 as topological_q2


@pytest.mark.parametrize("length, beta", [(2, 0.5), (4, 2.0), (8, 4.0)])
def test_log_z_is_the_character_expansion(length, beta):
    assert wilson_log_z(length, beta) == pytest.approx(u1_exact(length, beta).log_z, rel=1e-12)


def test_links_have_the_plaquettes_they_are_built_from():
    rng = np.random.default_rng(0)
    p = rng.uniform(-math.pi, math.pi, size=(3, 4, 4))
    p[:, -1, -1] -= p.sum((1, 2))
    theta = links_from_plaquettes(p, rng.uniform(0, 6, 3), rng.uniform(0, 6, 3), 4)
    assert np.allclose(plaquettes(torch.from_numpy(theta)).numpy(), p, atol=1e-12)


@pytest.mark.parametrize("length, beta", [(8, 2.0), (8, 4.0), (6, 1.0)])
def test_draws_have_the_exact_plaquette_and_topological_susceptibility(length, beta):
    """4000 independent draws: ⟨cos θ_P⟩ and ⟨Q²⟩ within 4 standard errors of the finite
    torus' exact values, Q an integer."""
    prior = WilsonPrior(length, beta)
    z = prior.sample(4000, torch.Generator().manual_seed(1))
    theta = z.reshape(-1, 2, length, length)
    cos_p = torch.cos(plaquettes(theta)).mean((-2, -1))
    q2 = topological_q2(theta)
    exact = u1_exact(length, beta)
    for values, target in ((cos_p, exact.plaquette), (q2, exact.q2)):
        se = values.std().item() / math.sqrt(len(values))
        assert abs(values.mean().item() - target) < 4 * se, (values.mean().item(), target, se)
    q = torch.remainder(plaquettes(theta) + math.pi, TWO_PI) - math.pi
    charge = q.sum((-2, -1)) / TWO_PI
    assert torch.allclose(charge, charge.round(), atol=1e-6)


def test_density_is_normalised_and_gauge_invariant():
    """E_uniform[p(θ)(2π)^{2V}] = 1 within 4 standard errors at L = 2, β₀ = 1; a random gauge
    transformation leaves log p unchanged."""
    prior = WilsonPrior(2, 1.0)
    g = torch.Generator().manual_seed(2)
    z = TWO_PI * torch.rand(200_000, prior.dim, generator=g, dtype=torch.float64)
    ratio = torch.exp(prior.log_prob(z) + prior.dim * math.log(TWO_PI))
    se = ratio.std().item() / math.sqrt(len(ratio))
    assert abs(ratio.mean().item() - 1.0) < 4 * se
    theta = z[:8].reshape(-1, 2, 2, 2)
    alpha = TWO_PI * torch.rand(8, 2, 2, generator=g, dtype=torch.float64)
    moved = gauge_transform(theta, alpha).reshape(8, -1)
    assert torch.allclose(prior.log_prob(moved), prior.log_prob(z[:8]), atol=1e-10)


def test_draws_follow_the_generator_and_bad_settings_are_refused():
    prior = WilsonPrior(4, 2.0)
    a = prior.sample(5, torch.Generator().manual_seed(3))
    assert torch.equal(a, prior.sample(5, torch.Generator().manual_seed(3)))
    assert a.shape == (5, 32) and (a >= 0).all() and (a < TWO_PI).all()
    with pytest.raises(ValueError):
        WilsonPrior(1, 2.0)
    with pytest.raises(ValueError):
        WilsonPrior(4, 0.0)


def test_gauge_prior_is_haar_without_a_coupling():
    assert isinstance(gauge_prior(4, None), UniformAnglePrior) and gauge_prior(4, None).dim == 32
    prior = gauge_prior(4, 1.5, dtype=torch.float32)
    assert isinstance(prior, WilsonPrior) and prior.beta == 1.5
    assert prior.sample(3, torch.Generator().manual_seed(0)).dtype == torch.float32
