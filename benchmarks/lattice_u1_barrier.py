"""Where a U(1) flow's latent action departs from its prior: the barrier FT-HMC must cross.

Field-transformation HMC runs HMC on the pulled-back action U(z) = u(f(z)) − log|det ∂f/∂z|.
For a perfect flow from the Wilson prior at β₀, U(z) is the prior's action β₀-Wilson up to a
constant, log w(z) = −U(z) − log p_Z(z) is constant, and FT-HMC changes the topological
charge as fast as plain HMC at β₀. Q changes when a plaquette passes through π, which the
flow's own draws rarely do; this script draws z from the Wilson action at the smaller
``--reference-beta`` (where such configurations are common), bins them by the largest
|wrapped plaquette| of z, and prints in each bin

    excess = ⟨log w⟩_prior − ⟨log w⟩_bin    (⟨·⟩_prior: over the flow's own latent draws),

the latent action's rise over the prior's there. A flow exact at the barriers has zero
excess in every bin; an excess of e nats near π raises FT-HMC's barrier by e over β₀'s and
slows its changes of Q by about exp(e). Also printed: the share of draws whose flow image
has another Q than z.

    OMP_NUM_THREADS=1 python benchmarks/lattice_u1_barrier.py runs/b6_p4_k2_h8_1000 \\
        runs/b6_p4_lv3_1000 --beta 6 --reference-beta 2

``--plaquette-map β₀ …`` adds the analytic plaquette-marginal map from each β₀
(:mod:`boltzgen.flows.plaquette_map`) as further rows.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch
from lattice_ft_hmc_scan import load_model, plaquette_map_model
from torch import Tensor

import boltzgen as bg
from boltzgen.flows.wilson_prior import gauge_prior
from boltzgen.observables.lattice import plaquette_angles, topological_charge, wrap
from boltzgen.samplers.importance import BoltzmannGenerator

EDGES = (0.0, 1.5, 2.0, 2.5, 2.8, 3.0, 3.2)
"""Bins of the largest |wrapped plaquette| of z (at most π)."""


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flows", type=Path, nargs="*", help="folders of lattice_u1_flow.py")
    parser.add_argument(
        "--plaquette-map",
        type=float,
        nargs="*",
        default=[],
        metavar="BETA0",
        help="also the analytic plaquette-marginal map from each β₀",
    )
    parser.add_argument("--L", type=int, default=8)
    parser.add_argument("--beta", type=float, required=True, help="the target's β")
    parser.add_argument("--reference-beta", type=float, default=2.0)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write barrier.json here")
    return parser.parse_args()


def max_plaquette(theta: Tensor) -> Tensor:
    """The largest |wrapped plaquette angle| of each configuration ``[B]``."""
    return wrap(plaquette_angles(theta)).abs().flatten(1).amax(1)


def log_weights(model: BoltzmannGenerator, energy: bg.Energy, z: Tensor) -> tuple[Tensor, Tensor]:
    """log w = −u(f(z)) − log q(f(z)) of latent ``z`` and the images x = f(z) (float64)."""
    with torch.no_grad():
        x, logdet = model.flow(z)
        log_q = (model.prior.log_prob(z) - logdet).double()
        return -energy.energy(x.double()) - log_q, x.double()


def latent_excess(
    model: BoltzmannGenerator,
    energy: bg.Energy,
    z: Tensor,
    z_prior: Tensor,
    edges: tuple[float, ...] = EDGES,
) -> dict:
    """Excess latent action per bin of the largest |plaquette| of ``z: [B, 2, L, L]``,
    against the mean over the prior's draws ``z_prior``.

    Returns ``{"bins": [{"low", "high", "n", "excess", "sd"}], "q_changed": share}`` with
    ``excess`` = ⟨log w⟩ over ``z_prior`` minus the bin's (``None`` for bins under 6 draws).
    """
    log_w, x = log_weights(model, energy, z)
    bulk = log_weights(model, energy, z_prior)[0].mean()
    zd = z.double()
    largest = max_plaquette(zd)
    changed = topological_charge(x).round() != topological_charge(zd).round()
    bins = []
    for low, high in itertools.pairwise(edges):
        inside = (largest >= low) & (largest < high)
        n = int(inside.sum())
        excess = float(bulk - log_w[inside].mean()) if n > 5 else None
        sd = float(log_w[inside].std()) if n > 5 else None
        bins.append({"low": low, "high": high, "n": n, "excess": excess, "sd": sd})
    return {"bins": bins, "q_changed": float(changed.double().mean())}


def main() -> None:
    args = parse()
    torch.set_num_threads(1)
    system = bg.load_system("u1_2d", L=args.L, beta=args.beta)
    reference = gauge_prior(args.L, args.reference_beta, dtype=torch.float32)
    z = reference.sample(args.samples, torch.Generator().manual_seed(args.seed))
    z = z.reshape(-1, 2, args.L, args.L)
    rows = {}
    models = {str(folder): lambda f=folder: load_model(f, args.L, system) for folder in args.flows}
    for beta0 in args.plaquette_map:
        label = f"plaquette map from β₀ = {beta0:g}"
        models[label] = lambda b=beta0: plaquette_map_model(args.L, b, system)
    for folder, build in models.items():
        model = build()
        z_prior = model.prior.sample(args.samples, torch.Generator().manual_seed(args.seed + 1))
        row = latent_excess(model, system.energy, z, z_prior.reshape(z.shape))
        rows[folder] = row
        print(f"{folder}  (flow image changes Q on {row['q_changed']:.1%} of the draws)")
        for b in row["bins"]:
            if b["excess"] is not None:
                print(
                    f"  max|P_z| in [{b['low']}, {b['high']}): {b['n']:5d} draws,"
                    f"  excess {b['excess']:6.2f} ± sd {b['sd']:.2f}"
                )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "barrier.json").write_text(json.dumps(vars(args) | {"rows": rows}, default=str))


if __name__ == "__main__":
    main()
