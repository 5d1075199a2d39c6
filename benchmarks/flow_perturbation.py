"""Exact log-det, Hutchinson and flow perturbation on the same continuous flow.

Trains a continuous normalizing flow briefly by flow matching on exact samples of the
many-well target (16 copies: 32 dimensions, 2¹⁶ modes, exact log Z), then draws
importance-weighted samples from it with the weight's log-det computed five ways:

* ``exact``: tr ∂v/∂x with D backward passes per field evaluation;
* ``hutchinson``: one Rademacher probe per path (FFJORD), one backward pass per evaluation;
* ``fp``: flow perturbation (Peng & Gao, arXiv 2407.10666), path weights, one step;
* ``fp++``: the same with a perturbation after each of ``--segments`` time pieces
  (arXiv 2601.21177);
* ``fp-radial``: the single-configuration ± estimator −(D/2) log(|δz|²/|δx|²).

The latent scales of the ``fp`` rows are fitted first (no energy evaluations; their time
is printed apart). Two tables are printed:

1. ``--repeats`` independent runs of ``--n`` samples: the bias of log Ẑ against the exact
   log Z (mean over runs ± its standard error), the spread of log Ẑ over runs, the Kish
   ESS, seconds per run, backward passes and field evaluations per sample, with ratios
   against ``exact``;
2. the same runs paired with ``exact`` (every method draws its latents z first from the
   run's seed, so the z agree): the spread of d = log w − log w_exact per sample, and
   Δ = log Ẑ − log Ẑ_exact per run, mean ± standard error. Hutchinson's Δ is biased up
   (E[exp ℓ̂] > exp ℓ by Jensen's inequality); flow perturbation's is unbiased for Z, but a
   large sd d means heavy-tailed weights, so finite-n log Ẑ falls low.

    .venv/bin/python benchmarks/flow_perturbation.py                  # 32-D, ~2 min on 1 core
    .venv/bin/python benchmarks/flow_perturbation.py --copies 4 --n 4000
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from boltzgen.energies.toy import ManyWell
from boltzgen.flows import GaussianPrior
from boltzgen.flows.ode import ContinuousFlow, ODECounter, VectorField, flow_matching_loss
from boltzgen.metrics import ess_fraction, log_z
from boltzgen.samplers.flow_perturbation import FlowPerturbation, PerturbationScale
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.training import train_perturbation_scale

Draw = Callable[[int, torch.Generator], tuple[Tensor, Tensor]]  # (log_w, u) of n draws


@dataclass
class Method:
    name: str
    draw: Draw
    setup_s: float = 0.0


def train_field(energy: ManyWell, args: argparse.Namespace) -> tuple[VectorField, float]:
    """Flow matching on exact samples with Adam and a cosine schedule."""
    start = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    data = energy.sample_exact(50_000, g)
    field = VectorField(energy.dim, hidden=args.hidden, n_layers=2, seed=args.seed)
    opt = torch.optim.Adam(field.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, args.train_steps))
    for _ in range(args.train_steps):
        x = data[torch.randint(len(data), (512,), generator=g)]
        z = torch.randn(512, energy.dim, generator=g, dtype=torch.float64)
        loss = flow_matching_loss(field, z, x, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    return field, time.perf_counter() - start


def generator_method(name: str, prior: GaussianPrior, flow: ContinuousFlow, energy) -> Method:
    model = BoltzmannGenerator(prior, flow, energy)

    def draw(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        s = model.sample(n, g, batch_size=n)
        return s.log_weights, s.energies

    return Method(name, draw)


def perturbation_method(
    name: str, fp: FlowPerturbation, args: argparse.Namespace, fit: bool
) -> Method:
    start = time.perf_counter()
    if fit:
        g = torch.Generator().manual_seed(args.seed + 7)
        train_perturbation_scale(fp, args.scale_steps, 256, 1e-2, g, args.objective)

    def draw(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        s = fp.sample(n, g, batch_size=n)
        return s.log_weights, s.energies

    return Method(name, draw, time.perf_counter() - start)


def build_methods(cnf: ContinuousFlow, energy: ManyWell, args: argparse.Namespace) -> list[Method]:
    prior, d, k = GaussianPrior(energy.dim), energy.dim, args.segments
    diagonal = args.scale == "diagonal"
    one = FlowPerturbation(
        prior, cnf, energy, args.sigma, PerturbationScale(d, 1, diagonal=diagonal)
    )
    many = FlowPerturbation(
        prior, cnf.segments(k), energy, args.sigma, PerturbationScale(d, k, diagonal=diagonal)
    )
    return [
        generator_method("exact", prior, cnf, energy),
        generator_method("hutchinson", prior, cnf.with_options(hutchinson=True), energy),
        perturbation_method("fp", one, args, True),
        perturbation_method("fp++", many, args, True),
        perturbation_method(
            "fp-radial",
            FlowPerturbation(prior, cnf, energy, args.sigma, estimator="radial"),
            args,
            False,
        ),
    ]


@dataclass
class Runs:
    log_z: list[float]
    ess: list[float]
    log_w: list[Tensor]
    seconds: float
    work: ODECounter


def run(method: Method, cnf: ContinuousFlow, args: argparse.Namespace) -> Runs:
    values, ess, weights = [], [], []
    before, start = cnf.counter.snapshot(), time.perf_counter()
    for r in range(args.repeats):
        log_w, _ = method.draw(args.n, torch.Generator().manual_seed(1000 + r))
        values.append(log_z(log_w)[0])
        ess.append(ess_fraction(log_w))
        weights.append(log_w)
    seconds = (time.perf_counter() - start) / args.repeats
    return Runs(values, ess, weights, seconds, cnf.counter.since(before))


def mean_se(values: list[float]) -> tuple[float, float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    sd = float(t.std()) if len(values) > 1 else math.nan
    return float(t.mean()), sd / math.sqrt(len(values)), sd


def print_runs(results: dict[str, Runs], setup: dict[str, float], truth: float, args) -> None:
    print(f"\n1. {args.repeats} runs × {args.n} samples; log Z = {truth:.3f}; ratios vs exact")
    head = (
        f"{'method':<11} {'bias logZ':>16} {'sd logZ':>8} {'ESS %':>7} {'s/run':>7} "
        f"{'×exact':>7} {'bwd/sample':>10} {'×exact':>7} {'fevals':>7} {'setup s':>8}"
    )
    print(head)
    print("-" * len(head))
    ref = results["exact"]
    per_run = args.repeats
    for name, r in results.items():
        mean, se, sd = mean_se(r.log_z)
        bwd, ref_bwd = r.work.backward_passes / per_run, ref.work.backward_passes / per_run
        print(
            f"{name:<11} {mean - truth:>+8.3f} ± {se:<5.3f} {sd:>8.3f} "
            f"{100 * sum(r.ess) / len(r.ess):>7.3f} {r.seconds:>7.2f} "
            f"{r.seconds / ref.seconds:>7.3f} {bwd:>10.0f} "
            f"{(bwd / ref_bwd if ref_bwd else math.nan):>7.3f} "
            f"{r.work.field_evals / per_run:>7.0f} {setup[name]:>8.1f}"
        )


def print_paired(results: dict[str, Runs]) -> None:
    """Differences to ``exact`` on the same latents (every run draws z first from its seed)."""
    print("\n2. paired with exact on the same latents z: d = log w − log w_exact per sample,")
    print("   Δ = log Ẑ − log Ẑ_exact per run (an unbiased log-det leaves only noise in Δ)")
    head = f"{'method':<11} {'sd d':>8} {'Δ log Ẑ':>18}"
    print(head)
    print("-" * len(head))
    ref = results["exact"]
    for name, r in results.items():
        d = torch.cat([a - b for a, b in zip(r.log_w, ref.log_w, strict=True)])
        mean, se, _ = mean_se([a - b for a, b in zip(r.log_z, ref.log_z, strict=True)])
        print(f"{name:<11} {float(d.std()):>8.3f} {mean:>+9.3f} ± {se:<6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=16, help="many-well copies (D = 2·copies)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--ode-steps", type=int, default=10, help="RK4 steps over [0, 1]")
    parser.add_argument("--n", type=int, default=1000, help="samples per run")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--sigma", type=float, default=1e-3)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--scale-steps", type=int, default=50)
    parser.add_argument("--scale", choices=["isotropic", "diagonal"], default="diagonal")
    parser.add_argument("--objective", choices=["norm", "kl"], default="norm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    energy = ManyWell(args.copies)
    field, train_s = train_field(energy, args)
    cnf = ContinuousFlow(field, n_steps=args.ode_steps)
    print(
        f"many-well D={energy.dim}: flow matching {args.train_steps} steps in {train_s:.1f} s; "
        f"RK4 with {args.ode_steps} steps; σ = {args.sigma}; fp++ with {args.segments} pieces"
    )
    methods = build_methods(cnf, energy, args)
    results = {m.name: run(m, cnf, args) for m in methods}
    print_runs(results, {m.name: m.setup_s for m in methods}, energy.log_z, args)
    print_paired(results)


if __name__ == "__main__":
    main()
