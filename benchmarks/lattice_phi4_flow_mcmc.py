"""Flow MCMC on φ⁴ at the tutorial's point (L = 8, m² = −4, λ = 8): acceptance and ESS.

``--L``, ``--m2`` and ``--lam`` move the point (towards the critical line:
``benchmarks/lattice_phi4_critical_line.py``). Trains the tutorial's flow (16
checkerboard affine couplings, two hidden 3×3 circular convolutions of 8 channels,
N(0, 1) prior; arXiv 2101.08176) by reverse KL through the library's training loop,
then prints the Kish ESS fraction of ``--samples`` importance-weighted draws and the
acceptance of independence Metropolis chains (arXiv 1904.12072), with χ₂ and ⟨|M|⟩
from the chains and χ₂ from the weighted draws (``chi2_weighted``). Goal: acceptance
≥ 0.5 and ESS ≥ 0.4 (the tutorial reports about 0.46 and 0.4). Writes ``model.pt`` (the
flow's parameters) beside the report; ``--init FOLDER`` starts from such a model, trained
at any L and any point
(:func:`boltzgen.flows.lattice.load_at_any_volume`), and ``--steps 0`` only evaluates it.
``--symmetrize`` draws from the trained flow averaged over φ ↦ −φ
(:class:`boltzgen.samplers.symmetrized.SymmetrizedGenerator`), which covers both sectors
of M where reverse KL has collapsed onto one of them near the critical line;
``--loss reverse_kl_symmetric`` trains that average itself
(:func:`boltzgen.samplers.objectives.symmetric_reverse_kl`); ``--loss mixed`` adds forward KL
on HMC configurations (their forces reported as ``data_force_evals``).

    nice -n 10 python benchmarks/lattice_phi4_flow_mcmc.py --steps 4000 --out runs/phi4_flow
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import boltzgen as bg
from boltzgen.flows import GaussianPrior
from boltzgen.flows.lattice import load_at_any_volume, make_lattice_flow
from boltzgen.metrics import observable_estimate
from boltzgen.observables.lattice import field_abs_magnetization, scaled_magnetization
from boltzgen.samplers.flow_mcmc import FlowIndependenceMetropolis
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.mcmc import HMC
from boltzgen.samplers.symmetrized import SymmetrizedGenerator
from boltzgen.training.generator import TrainConfig, train


def hmc_data(system: bg.System, chains: int, steps: int) -> tuple[torch.Tensor, int]:
    """Training configurations for forward KL: HMC (10 leapfrog steps, 500 warm-up
    trajectories) from N(0, 1) fields, with their images under φ ↦ −φ (an exact symmetry,
    so the data cover both sectors), and the forces the chains cost."""
    generator = torch.Generator().manual_seed(7)
    x0 = torch.randn(chains, *system.energy.event_shape, generator=generator, dtype=torch.float64)
    samples = HMC(system.energy, 0.1, 10, 0.8).sample(x0, steps, generator, 500)
    x = samples.x.to(torch.float32)
    return torch.cat([x, -x]), samples.cost.force_evals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, default=8)
    parser.add_argument("--m2", type=float, default=-4.0)
    parser.add_argument("--lam", type=float, default=8.0)
    parser.add_argument("--init", type=Path, default=None, help="folder with a model.pt")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--symmetrize", action="store_true", help="average the flow over φ ↦ −φ")
    parser.add_argument(
        "--loss",
        choices=("reverse_kl", "reverse_kl_symmetric", "mixed"),
        default="reverse_kl",
        help="reverse_kl_symmetric trains the flow averaged over φ ↦ −φ; mixed adds forward "
        "KL on HMC configurations (--data-chains × --data-steps, and their negatives)",
    )
    parser.add_argument("--data-chains", type=int, default=64)
    parser.add_argument("--data-steps", type=int, default=1000)
    parser.add_argument("--forward-weight", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--chain-steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("runs/phi4_flow"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    system = bg.load_system("phi4_2d", L=args.L, m2=args.m2, lam=args.lam)
    flow = make_lattice_flow(args.L, dtype=torch.float32)
    if args.init is not None:
        load_at_any_volume(flow, torch.load(args.init / "model.pt"))
    prior = GaussianPrior(args.L**2, dtype=torch.float32)
    model = BoltzmannGenerator(prior, flow, system.energy)
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        loss=args.loss,
        forward_weight=args.forward_weight,
        lr_schedule="cosine",
        checkpoint_every=200,
    )
    start = time.time()
    data, data_forces = None, 0
    if args.loss == "mixed":
        data, data_forces = hmc_data(system, args.data_chains, args.data_steps)
    result = train(model, system.energy, config, data, checkpoint_dir=args.out / "checkpoint")
    train_s = time.time() - start
    generator = torch.Generator().manual_seed(1)
    sampler = SymmetrizedGenerator(model) if args.symmetrize else model
    weighted = sampler.sample(args.samples, generator)
    chains = FlowIndependenceMetropolis(sampler, system.energy).sample(
        args.chains, args.chain_steps, generator, n_warmup=20
    )
    x = chains.x.to(torch.float64)
    chi2 = observable_estimate(chains, scaled_magnetization(x), "variance")
    m = observable_estimate(chains, field_abs_magnetization(x))
    drawn = weighted.x.to(torch.float64)
    chi2_weighted = observable_estimate(weighted, scaled_magnetization(drawn), "variance")
    tail = result.losses[-50:]
    report = {
        "L": args.L,
        "m2": args.m2,
        "lam": args.lam,
        "init": None if args.init is None else str(args.init),
        "symmetrized": args.symmetrize,
        "loss": args.loss,
        "train_steps": len(result.losses),
        "train_wall_s": train_s,
        "train_energy_evals": result.cost.energy_evals,
        "data_force_evals": data_forces,
        "final_loss": sum(tail) / len(tail) if tail else None,
        "ess_fraction": weighted.info["ess_fraction"],
        "acceptance": chains.info["acceptance"],
        "chi2": [chi2.value, chi2.stderr, chi2.tau_int],
        "chi2_weighted": [chi2_weighted.value, chi2_weighted.stderr],
        "abs_magnetization": [m.value, m.stderr, m.tau_int],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(flow.state_dict(), args.out / "model.pt")
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
