"""U(1) gauge theory at L = 8, β = 2: a gauge-equivariant flow trained by reverse KL.

The tutorial's model (arXiv 2101.08176; Kanwar et al., arXiv 2003.06413): 16
plaquette-conditioned coupling layers, two hidden 3×3 circular convolutions of 8
channels, uniform (Haar) prior; the circle map of each active plaquette is a mixture of
non-compact projections (``--transform ncp``) or a circular rational-quadratic spline
(``--transform spline``), followed by a rotation. Prints the Kish ESS fraction of
``--samples`` weighted draws, ln Z from them against the exact character-expansion
value, the plaquette and ⟨Q²⟩ against theirs, and the acceptance of flow independence
MCMC. Goal: ESS ≥ 0.4 (the tutorial reports about 0.4). ``--prior-beta β₀`` draws the
latent links from the Wilson action at β₀ instead; ``--loss log_variance`` trains by
Var[log w] over latent draws of the Wilson action at ``--reference-beta`` (the prior's by
default), which fits the flow also where its own draws are rare (docs/lattice.md).
``--plaquette-map`` (with ``--prior-beta``) puts the analytic plaquette-marginal map from β₀
to β before the learned couplings, which then only correct it. Writes ``model.pt`` (the
flow's parameters) and ``flow.json`` (its architecture) for the field-transformation HMC
scan (``benchmarks/lattice_ft_hmc_scan.py``); ``--init`` warm-starts from such a folder.

Training writes ``OUT/checkpoint/checkpoint.pt`` every 200 steps, so a long run is not
lost: the same command resumes it, and ``--init`` also takes such a checkpoint file, so that
``--init OUT/checkpoint/checkpoint.pt --steps 0 --out OTHER`` evaluates a run stopped
before its end (its report gives the checkpoint's step and training cost). The flow of
``--init`` may have been trained on another L: ``--L 16 --init runs/u1_flow --steps 0``
evaluates an L = 8 flow on the 16 × 16 lattice, and ``--steps N`` fine-tunes it there.

    nice -n 10 python benchmarks/lattice_u1_flow.py --steps 4500 --out runs/u1_flow
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import boltzgen as bg
from boltzgen.flows.gauge import make_gauge_flow
from boltzgen.flows.lattice import load_at_any_volume
from boltzgen.flows.plaquette_map import after_plaquette_map
from boltzgen.flows.wilson_prior import gauge_prior
from boltzgen.metrics import ess_fraction, log_partition_function, observable_estimate
from boltzgen.observables.lattice import plaquette, q2
from boltzgen.samplers.flow_mcmc import FlowIndependenceMetropolis
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.training.checkpoint import load_checkpoint
from boltzgen.training.generator import TrainConfig, train


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, default=8)
    parser.add_argument("--beta", type=float, default=2.0)
    parser.add_argument("--transform", choices=["ncp", "spline"], default="spline")
    parser.add_argument("--components", type=int, default=8, help="NCP mixtures / spline bins")
    parser.add_argument(
        "--activation",
        choices=["leaky_relu", "silu"],
        default="leaky_relu",
        help="conditioner activation (silu: a smooth flow, for field-transformation HMC)",
    )
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--kernel", type=int, default=3, help="odd conditioner kernel width")
    parser.add_argument(
        "--prior-beta",
        type=float,
        default=None,
        help="latent Wilson action at this β₀ (drawn exactly) instead of the uniform prior",
    )
    parser.add_argument(
        "--loss",
        choices=["reverse_kl", "log_variance"],
        default="reverse_kl",
        help="log_variance: Var[log w] over latent draws of the Wilson action at "
        "--reference-beta, so that the flow is fitted where its own draws are rare",
    )
    parser.add_argument(
        "--reference-beta",
        type=float,
        default=None,
        help="log_variance's latent draws: Wilson action at this β (default: the prior)",
    )
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument(
        "--pool", type=int, default=1, help="sets of --samples draws (seeds 1…K) for the ESS"
    )
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--chain-steps", type=int, default=160)
    parser.add_argument(
        "--init", type=Path, default=None, help="folder with model.pt, or a checkpoint.pt"
    )
    parser.add_argument(
        "--plaquette-map",
        action="store_true",
        help="put the analytic plaquette-marginal map from --prior-beta first",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/u1_flow"))
    return parser.parse_args()


def build(args: argparse.Namespace) -> tuple[BoltzmannGenerator, dict, bg.System]:
    """The system at (L, β), the flow's architecture and the untrained (or warm) model."""
    system = bg.load_system("u1_2d", L=args.L, beta=args.beta)
    arch = {
        "length": args.L,
        "n_layers": args.layers,
        "hidden": args.hidden,
        "n_components": args.components,
        "transform": args.transform,
        "activation": args.activation,
    }
    if args.kernel != 3:  # folders of the tutorial's 3 × 3 kernels keep their flow.json
        arch["kernel_size"] = args.kernel
    flow = make_gauge_flow(**arch, dtype=torch.float32)
    if args.plaquette_map:
        if args.prior_beta is None:
            raise SystemExit("--plaquette-map needs --prior-beta")
        flow = after_plaquette_map(flow, args.L, args.prior_beta, args.beta)
        arch["plaquette_map"] = {"prior_beta": args.prior_beta, "beta": args.beta}
    prior = gauge_prior(args.L, args.prior_beta, dtype=torch.float32)
    model = BoltzmannGenerator(prior, flow, system.energy)
    return model, arch, system


def load_flow(model: BoltzmannGenerator, path: Path) -> dict:
    """Load the flow's parameters from ``path`` into ``model``; say where they came from.

    ``path`` is a folder this benchmark wrote (``model.pt``, after all its steps) or a
    training checkpoint (``checkpoint.pt``, written every 200 steps), whose step and
    cumulative training cost are returned so that an evaluation reports what it cost.
    The saved flow may come from another L (:func:`load_at_any_volume`): a flow trained
    at L = 8 starts or replaces training at L = 16.
    """
    if path.is_dir():
        load_at_any_volume(model.flow, torch.load(path / "model.pt"))
        return {"init": str(path)}
    state = load_checkpoint(path)
    flow = {k.removeprefix("flow."): v for k, v in state["model"].items() if k.startswith("flow.")}
    load_at_any_volume(model.flow, flow)
    return {"init": str(path), "init_step": int(state["step"]), "init_cost": state["cost"]}


def evaluate(model: BoltzmannGenerator, system: bg.System, args: argparse.Namespace) -> dict:
    """KL(q‖p) = ln Z − E_q[log w], ESS, ln Z and observables of weighted draws; flow-MCMC
    acceptance."""
    generator = torch.Generator().manual_seed(1)
    weighted = model.sample(args.samples, generator, batch_size=2000)
    weighted.x = weighted.x.to(torch.float64)
    chains = FlowIndependenceMetropolis(model, system.energy).sample(
        args.chains, args.chain_steps, generator, 20
    )
    exact = system.reference_observables()
    log_z = log_partition_function(weighted)
    x = chains.x.to(torch.float64)
    return {
        "kl": system.reference_log_z() - float(weighted.log_weights.double().mean()),
        "ess_fraction": weighted.info["ess_fraction"],
        **pooled_ess(model, weighted, args),
        "acceptance": chains.info["acceptance"],
        "log_z": [log_z.value, log_z.stderr, system.reference_log_z()],
        "plaquette_weighted": [
            observable_estimate(weighted, plaquette(weighted.x)).value,
            exact["plaquette"],
        ],
        "q2_weighted": [observable_estimate(weighted, q2(weighted.x)).value, exact["q2"]],
        "q2_flow_mcmc": [*_estimate(chains, q2(x)), exact["q2"]],
        "plaquette_flow_mcmc": [*_estimate(chains, plaquette(x)), exact["plaquette"]],
    }


def pooled_ess(
    model: BoltzmannGenerator, first: bg.WeightedSamples, args: argparse.Namespace
) -> dict:
    """Kish ESS fraction of each of ``--pool`` sets of draws (seeds 1…K) and of all pooled.

    One set's ESS scatters by a few hundredths at 10⁴ draws; the pooled figure is the one
    to compare with a goal.
    """
    log_w, per_set = [first.log_weights.double()], [first.info["ess_fraction"]]
    for seed in range(2, args.pool + 1):
        draws = model.sample(args.samples, torch.Generator().manual_seed(seed), batch_size=2000)
        log_w.append(draws.log_weights.double())
        per_set.append(draws.info["ess_fraction"])
    return {"ess_fraction_per_seed": per_set, "ess_fraction_pooled": ess_fraction(torch.cat(log_w))}


def _estimate(chains: bg.WeightedSamples, values: torch.Tensor) -> list[float]:
    est = observable_estimate(chains, values)
    return [est.value, est.stderr, est.tau_int]


def main() -> None:
    args = parse()
    torch.set_num_threads(1)
    model, arch, system = build(args)
    origin = {} if args.init is None else load_flow(model, args.init)
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        loss=args.loss,
        lr_schedule="cosine",
        checkpoint_every=200,
    )
    reference = None
    if args.reference_beta is not None:
        if args.loss != "log_variance":
            raise SystemExit("--reference-beta needs --loss log_variance")
        reference = gauge_prior(args.L, args.reference_beta, dtype=torch.float32)
    start = time.time()
    result = train(
        model, system.energy, config, checkpoint_dir=args.out / "checkpoint", reference=reference
    )
    train_s = time.time() - start
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.flow.state_dict(), args.out / "model.pt")
    (args.out / "flow.json").write_text(json.dumps(arch))
    if args.prior_beta is not None:
        (args.out / "prior.json").write_text(json.dumps({"beta": args.prior_beta}))
    tail = result.losses[-50:]
    report = {
        "L": args.L,
        "beta": args.beta,
        "flow": arch,
        "prior_beta": args.prior_beta,
        "loss": args.loss,
        "reference_beta": args.reference_beta,
        "train_steps": len(result.losses),
        "train_wall_s": train_s,
        "train_energy_evals": result.cost.energy_evals,
        **origin,
        "final_loss": sum(tail) / len(tail) if tail else None,
        **evaluate(model, system, args),
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
