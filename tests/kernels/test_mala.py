"""MALA: the acceptance probability is the Metropolis–Hastings ratio of the target and
the Gaussian Langevin kernels, computed here independently from their densities."""

from __future__ import annotations

import math

import torch

from boltzgen.energies.toy import DoubleWell2D
from boltzgen.kernels import langevin, mala
from boltzgen.kernels.potential import from_energy

F64 = torch.float64


def test_acceptance_is_the_hastings_ratio_of_target_and_gaussian_kernels() -> None:
    """Noise first, then one uniform per walker, from the same generator."""
    energy = DoubleWell2D()
    potential = from_energy(energy)
    eps, n = 0.3, 256
    x = 1.5 * torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    state = langevin.init(x, potential)
    new, info = mala.step(torch.Generator().manual_seed(1), state, potential, eps)
    replay = torch.Generator().manual_seed(1)
    noise = torch.randn(n, 2, generator=replay, dtype=F64)
    uniform = torch.rand(n, generator=replay, dtype=F64)
    y = x + eps * energy.force(x) + math.sqrt(2 * eps) * noise
    scale = math.sqrt(2 * eps)
    forward = torch.distributions.Normal(x + eps * energy.force(x), scale).log_prob(y).sum(1)
    backward = torch.distributions.Normal(y + eps * energy.force(y), scale).log_prob(x).sum(1)
    log_alpha = energy.energy(x) - energy.energy(y) + backward - forward
    prob = log_alpha.clamp(max=0.0).exp()
    torch.testing.assert_close(info.acceptance_prob, prob, rtol=0, atol=1e-10)
    assert torch.equal(info.accepted, uniform.log() < log_alpha)
    assert 0 < int(info.accepted.sum()) < n
    torch.testing.assert_close(new.x, torch.where(info.accepted[:, None], y, x))
    torch.testing.assert_close(new.energy, energy.energy(new.x))


def test_proposals_of_infinite_energy_are_rejected() -> None:
    def wall(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = 0.5 * (x * x).sum(dim=1)
        return torch.where(x[:, 0] < 0.5, u, math.inf), torch.where(x[:, :1] < 0.5, x, 0.0)

    state = langevin.init(torch.zeros(4000, 2, dtype=F64), wall)
    new, info = mala.step(torch.Generator().manual_seed(2), state, wall, 0.5)
    assert bool((new.x[:, 0] < 0.5).all()) and bool(torch.isfinite(new.energy).all())
    beyond = ~info.accepted & (info.acceptance_prob == 0)
    assert int(beyond.sum()) > 100  # the wall was hit, and those moves were rejected
