"""Leapfrog energy error of field-transformation HMC vs step size, for a trained U(1) flow.

On a twice continuously differentiable action the leapfrog energy error over a fixed
trajectory length T is ΔH = O(ε²): halving ε divides it by 4. On the pulled-back action
U(z) = u(f(z)) − log|det ∂f/∂z| of a flow (Foreman et al., arXiv 2112.01586) that holds
only if the flow is smooth; a flow with piecewise-linear conditioners (LeakyReLU) or
C¹ splines has a force that jumps on surfaces in latent space, each crossing adds O(ε),
and ΔH falls more slowly. For a flow trained by ``benchmarks/lattice_u1_flow.py``
(``--flow``, loaded in float64), the script draws ``--chains`` uniform latents and normal
momenta and prints, for ε = T/n with n doubling, the rms ΔH over the chains, its ratio to
the previous one (4 for a smooth action).

    python benchmarks/lattice_ft_hmc_energy_error.py --flow runs/u1_flow --beta 4
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

import boltzgen as bg
from boltzgen.flows.gauge import make_gauge_flow
from boltzgen.kernels.hmc import energy_error
from boltzgen.kernels.leapfrog import PhasePoint, leapfrog
from boltzgen.kernels.potential import pulled_back


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", type=Path, default=Path("runs/u1_flow"))
    parser.add_argument("--L", type=int, default=8)
    parser.add_argument("--beta", type=float, default=4.0)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--length", type=float, default=0.04, help="trajectory length T")
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def load_flow(folder: Path, length: int) -> torch.nn.Module:
    """The flow of ``folder`` (``flow.json``, ``model.pt``) in float64, without gradients."""
    arch = json.loads((folder / "flow.json").read_text())
    arch["length"] = length
    flow = make_gauge_flow(**arch, dtype=torch.float64)
    state = torch.load(folder / "model.pt")
    flow.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in state.items()})
    return flow.requires_grad_(False)


def main() -> None:
    args = parse()
    torch.set_num_threads(1)
    system = bg.load_system("u1_2d", L=args.L, beta=args.beta)
    potential = pulled_back(load_flow(args.flow, args.L), system.energy)
    g = torch.Generator().manual_seed(args.seed)
    dim = 2 * args.L**2
    z = 2 * math.pi * torch.rand(args.chains, dim, generator=g, dtype=torch.float64)
    p = torch.randn(args.chains, dim, generator=g, dtype=torch.float64)
    u, grad = potential(z)
    previous = None
    for n in args.steps:
        start = PhasePoint(z, p, u, grad)
        dh = energy_error(start, leapfrog(potential, start, args.length / n, n))
        rms = float(dh.square().mean().sqrt())
        ratio = "" if previous is None else f"  ratio {previous / rms:5.2f}"
        print(f"eps {args.length / n:.5f}  rms dH {rms:.3e}{ratio}", flush=True)
        previous = rms


if __name__ == "__main__":
    main()
