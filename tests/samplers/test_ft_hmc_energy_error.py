"""Field-transformation HMC on U(1): the latent leapfrog is second order only for a smooth flow.

HMC on the pulled-back action U(z) = u(f(z)) − log|det ∂f/∂z| (Foreman et al., arXiv
2112.01586) needs a force −∇U that is continuous along trajectories: then the leapfrog
energy error over a fixed time T falls as ε², i.e. by 4 when ε is halved. A flow with
LeakyReLU conditioners or circular RQ splines has a force that jumps on surfaces in z,
and each crossing adds an O(ε) error.
"""

from __future__ import annotations

import math

import pytest
import torch

from boltzgen.energies.lattice import U1Wilson
from boltzgen.flows.gauge import make_gauge_flow
from boltzgen.kernels.hmc import energy_error
from boltzgen.kernels.leapfrog import PhasePoint, leapfrog
from boltzgen.kernels.potential import pulled_back

F64 = torch.float64


def _flow(transform: str, activation: str):
    """A non-trivial (randomised, untrained) 4-layer gauge flow on L = 4."""
    flow = make_gauge_flow(4, 4, 4, seed=0, transform=transform, activation=activation)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return flow.requires_grad_(False)


def _energy_error_ratio(transform: str, activation: str) -> float:
    """rms ΔH at ε = T/16 over rms ΔH at ε = T/32 (T = 1/4), 16 chains at β = 2."""
    potential = pulled_back(_flow(transform, activation), U1Wilson(4, 2.0))
    g = torch.Generator().manual_seed(2)
    z = 2 * math.pi * torch.rand(16, 32, generator=g, dtype=F64)
    p = torch.randn(16, 32, generator=g, dtype=F64)
    u, grad = potential(z)
    rms = []
    for n in (16, 32):
        start = PhasePoint(z, p, u, grad)
        dh = energy_error(start, leapfrog(potential, start, 0.25 / n, n))
        rms.append(float(dh.square().mean().sqrt()))
    return rms[0] / rms[1]


def test_smooth_gauge_flow_gives_a_second_order_latent_leapfrog() -> None:
    assert 3.5 < _energy_error_ratio("ncp", "silu") < 4.5


@pytest.mark.parametrize(("transform", "activation"), [("ncp", "leaky_relu"), ("spline", "silu")])
def test_kinked_gauge_flows_lose_the_second_order(transform: str, activation: str) -> None:
    assert _energy_error_ratio(transform, activation) < 3.0


def test_latent_force_of_the_smooth_gauge_flow_is_minus_the_gradient() -> None:
    flow = _flow("ncp", "silu")
    energy = U1Wilson(4, 2.0)
    g = torch.Generator().manual_seed(3)
    z = 2 * math.pi * torch.rand(4, 32, generator=g, dtype=F64)
    v = torch.randn(4, 32, generator=g, dtype=F64)
    _, grad = pulled_back(flow, energy)(z)

    def action(w: torch.Tensor) -> torch.Tensor:
        x, logdet = flow(w)
        return energy.energy(x) - logdet

    h = 1e-5
    fd = (action(z + h * v) - action(z - h * v)) / (2 * h)
    torch.testing.assert_close((grad * v).sum(1), fd, rtol=1e-7, atol=1e-7)
