"""Topological freezing in 2D U(1): τ_int(Q) of HMC, field-transformation HMC and flow MCMC vs β.

For each β the script builds ``bg.load_system("u1_2d", L=..., beta=β)`` and runs, from
the same starting configurations x₀ = f(z₀), z₀ uniform:

* plain HMC on the links (Duane et al. 1987), step size tuned to acceptance 0.8 during
  warm-up, ``--n-leapfrog`` leapfrog steps per trajectory;
* field-transformation HMC (Foreman et al., "HMC with normalizing flows", arXiv
  2112.01586): the same HMC on the pulled-back action U(z) = u(f(z)) − log|det ∂f/∂z| of a
  gauge-equivariant flow (Kanwar et al., arXiv 2003.06413) trained by
  ``benchmarks/lattice_u1_flow.py`` (smooth, ``--transform ncp --activation silu``, or the
  leapfrog error is first order in the step: ``benchmarks/lattice_ft_hmc_energy_error.py``)
  — with the same chains and trajectories and, unless
  ``--ft-n-leapfrog`` sets a longer trajectory, the same leapfrog steps, hence the same
  number of target force evaluations (with ``--ft-n-leapfrog`` the comparison at equal
  cost is ``evals/indep`` below);
* a ``--hmc-long`` times longer plain-HMC run (cheap: no flow), whose τ_int(Q) is not
  cut off by the run length where HMC is slow;
* flow independence Metropolis (Albergo, Kanwar, Shanahan, arXiv 1904.12072) with as many
  proposals per chain as HMC has force evaluations per chain (equal energy evaluations).

The flow is trained at one β (``flow.json``/``model.pt`` in ``--flow``); at other β it is
either reused as it is (``--retrain-steps 0``) or warm-started and trained for
``--retrain-steps`` reverse-KL steps at that β (cost reported). ``--plaquette-map β₀``
replaces the trained flow by the analytic plaquette-marginal map from the Wilson action
at β₀ to each β (:mod:`boltzgen.flows.plaquette_map`; nothing trained, nothing charged).

τ_int(Q) uses the exact mean ⟨Q⟩ = 0 (parity), so chains frozen in different sectors
count as correlated, not as constant; it is measured in chain steps (trajectories for
HMC, proposals for flow MCMC) and also in force/energy evaluations per chain per
independent Q, ``evals/indep``, the figure that compares methods at equal cost. A τ_int
whose Sokal window reached the run length is a lower bound (marked ``≥``). ⟨Q²⟩ and the
plaquette are compared with the exact finite-volume values (character expansion).
Writes ``scan.json`` and ``tau_q.png`` (τ_int(Q) vs β). ``--methods`` runs a subset, in the
order given; ``scan.json`` is rewritten as each method finishes, so a long FT-HMC run placed
first is kept even if a later one is stopped.

    nice -n 10 python benchmarks/lattice_ft_hmc_scan.py --flow runs/u1_flow --betas 2 3 4 5 6
    python benchmarks/lattice_ft_hmc_scan.py --plaquette-map 4 --betas 6 --methods ft_hmc
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import boltzgen as bg
from boltzgen.flows.gauge import make_gauge_flow
from boltzgen.flows.lattice import load_at_any_volume
from boltzgen.flows.plaquette_map import after_plaquette_map, plaquette_marginal_flow
from boltzgen.flows.wilson_prior import WilsonPrior, gauge_prior
from boltzgen.metrics import integrated_time
from boltzgen.observables.lattice import plaquette, topological_charge
from boltzgen.records import WeightedSamples
from boltzgen.samplers.flow_mcmc import FlowHMC, FlowIndependenceMetropolis
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.mcmc import HMC
from boltzgen.training.generator import TrainConfig, train

METHODS = ("hmc", "hmc_long", "ft_hmc", "flow_mcmc")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", type=Path, default=Path("runs/u1_flow"))
    parser.add_argument(
        "--plaquette-map",
        type=float,
        default=None,
        metavar="BETA0",
        help="use the analytic plaquette-marginal map from β₀ instead of --flow",
    )
    parser.add_argument("--L", type=int, default=8)
    parser.add_argument("--betas", type=float, nargs="+", default=[2.0, 3.0, 4.0, 5.0, 6.0])
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--n-leapfrog", type=int, default=6)
    parser.add_argument(
        "--ft-n-leapfrog", type=int, default=None, help="FT-HMC's (default: --n-leapfrog)"
    )
    parser.add_argument("--hmc-long", type=int, default=20, help="steps factor of a long HMC run")
    parser.add_argument("--retrain-steps", type=int, default=0)
    parser.add_argument("--retrain-batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/ft_hmc_scan"))
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS), help="which to run"
    )
    parser.add_argument("--progress", action="store_true", help="progress bars on stderr")
    return parser.parse_args()


def load_model(folder: Path, length: int, system: bg.System) -> BoltzmannGenerator:
    """The trained flow of ``folder`` (written by ``lattice_u1_flow.py``) on lattice
    ``length`` (trained there or on any other L divisible by 4), with its prior (Haar, or
    the Wilson action of ``prior.json``), as a model for ``system``."""
    arch = json.loads((folder / "flow.json").read_text())
    arch["length"] = length
    mapped = arch.pop("plaquette_map", None)
    flow = make_gauge_flow(**arch, dtype=torch.float32)
    if mapped is not None:
        flow = after_plaquette_map(flow, length, mapped["prior_beta"], mapped["beta"])
    load_at_any_volume(flow, torch.load(folder / "model.pt"))
    prior_file = folder / "prior.json"
    prior_beta = json.loads(prior_file.read_text())["beta"] if prior_file.exists() else None
    prior = gauge_prior(length, prior_beta, dtype=torch.float32)
    return BoltzmannGenerator(prior, flow, system.energy)


def plaquette_map_model(length: int, prior_beta: float, system: bg.System) -> BoltzmannGenerator:
    """The Wilson prior at β₀ and the analytic map of its plaquettes to the system's β."""
    beta = float(system.energy.beta)
    flow = plaquette_marginal_flow(length, prior_beta, beta)
    return BoltzmannGenerator(WilsonPrior(length, prior_beta), flow, system.energy)


def retrain(model: BoltzmannGenerator, system: bg.System, args, beta: float) -> dict:
    """Warm-started reverse-KL training at β (nothing if ``--retrain-steps 0``)."""
    if args.retrain_steps == 0:
        return {"steps": 0, "energy_evals": 0, "wall_s": 0.0}
    config = TrainConfig(
        steps=args.retrain_steps,
        batch_size=args.retrain_batch,
        lr=5e-4,
        lr_schedule="cosine",
        checkpoint_every=args.retrain_steps,
        seed=args.seed,
    )
    start = time.time()
    folder = args.out / f"beta{beta:g}" / "checkpoint"
    result = train(model, system.energy, config, checkpoint_dir=folder)
    tail = result.losses[-20:]
    return {
        "steps": result.steps,
        "energy_evals": result.cost.energy_evals,
        "wall_s": time.time() - start,
        "final_kl": sum(tail) / len(tail) + system.energy.log_z,
    }


def tau_q(samples: WeightedSamples, steps: int) -> tuple[float, bool]:
    """τ_int(Q) with ⟨Q⟩ = 0, and whether it is only a lower bound (window ≥ run)."""
    q = samples.chains(topological_charge(samples.x.to(torch.float64)))
    tau = integrated_time(q, mean=0.0)
    return tau, 5.0 * tau >= steps


def _mean(values: list[float] | float | None) -> float | None:
    """The mean tuned step size of the chains (``None`` for samplers without one)."""
    if values is None:
        return None
    return float(torch.as_tensor(values, dtype=torch.float64).mean())


def summarise(samples: WeightedSamples, exact: dict, evals_per_step: int, steps: int) -> dict:
    x = samples.x.to(torch.float64)
    q = topological_charge(x)
    tau, bound = tau_q(samples, steps)
    q2 = q.square()
    spread = samples.chains(q2 - q2.mean())
    tau_q2 = integrated_time(spread, mean=0.0)
    q2_err = math.sqrt(float(spread.square().mean()) * tau_q2 / q.numel())
    return {
        "acceptance": samples.info["acceptance"],
        "step_size": _mean(samples.info.get("step_size")),
        "tau_q": tau,
        "tau_q_lower_bound": bound,
        "evals_per_independent_q": tau * evals_per_step,
        "ess_q": q.numel() / tau,
        "q2": [float(q2.mean()), q2_err, exact["q2"]],
        "plaquette": [float(plaquette(x).mean()), exact["plaquette"]],
        "energy_evals": samples.cost.energy_evals + samples.cost.force_evals,
        "wall_s": samples.cost.wall_s,
    }


def run_beta(args: argparse.Namespace, beta: float, save) -> dict:
    """The ``--methods`` at β from the same starts; ``save(row)`` after each method, so a
    long run leaves its finished methods on disk."""
    system = bg.load_system("u1_2d", L=args.L, beta=beta)
    if args.plaquette_map is None:
        model = load_model(args.flow, args.L, system)
    else:
        model = plaquette_map_model(args.L, args.plaquette_map, system)
    training = retrain(model, system, args, beta)
    model.requires_grad_(False)
    exact = system.reference_observables()
    g = torch.Generator().manual_seed(args.seed)
    z0 = model.prior.sample(args.chains, g)
    with torch.no_grad():
        x0, _ = model.flow(z0)
    row = {"beta": beta, "retraining": training}
    for method in args.methods:
        samples, evals_per_step, n = RUNNERS[method](args, model, system, x0, g)
        row[method] = summarise(samples, exact, evals_per_step, n)
        save(row)
    return row


def _hmc(args, model, system, x0, g) -> tuple[WeightedSamples, int, int]:
    lf = args.n_leapfrog
    hmc = HMC(system.energy, 0.2, lf, 0.8)
    return (
        hmc.sample(x0.double(), args.steps, g, args.warmup, progress=args.progress),
        lf,
        args.steps,
    )


def _hmc_long(args, model, system, x0, g) -> tuple[WeightedSamples, int, int]:
    lf, n = args.n_leapfrog, args.steps * args.hmc_long
    hmc = HMC(system.energy, 0.2, lf, 0.8)
    return hmc.sample(x0.double(), n, g, args.warmup, progress=args.progress), lf, n


def _ft_hmc(args, model, system, x0, g) -> tuple[WeightedSamples, int, int]:
    lf = args.ft_n_leapfrog or args.n_leapfrog
    ft_hmc = FlowHMC(model, system.energy, 0.2, lf, 0.8)
    samples = ft_hmc.sample(args.chains, args.steps, g, args.warmup, x0=x0, progress=args.progress)
    return samples, lf, args.steps


def _flow_mcmc(args, model, system, x0, g) -> tuple[WeightedSamples, int, int]:
    n, lf = args.steps * args.n_leapfrog, args.n_leapfrog
    sampler = FlowIndependenceMetropolis(model, system.energy)
    samples = sampler.sample(args.chains, n, g, args.warmup * lf, x0=x0, progress=args.progress)
    return samples, 1, n


RUNNERS = {"hmc": _hmc, "hmc_long": _hmc_long, "ft_hmc": _ft_hmc, "flow_mcmc": _flow_mcmc}


def plot(rows: list[dict], length: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    betas = [r["beta"] for r in rows]
    for method, marker in zip(METHODS, "o^sd", strict=True):
        if method not in rows[0]:
            continue
        cost = [r[method]["evals_per_independent_q"] for r in rows]
        line = ax.plot(betas, cost, marker=marker, label=method)[0]
        for b, c, r in zip(betas, cost, rows, strict=True):
            if r[method]["tau_q_lower_bound"]:
                ax.annotate("≥", (b, c), color=line.get_color(), ha="center", va="bottom")
    ax.set_yscale("log")
    ax.set_xlabel("β")
    ax.set_ylabel("evaluations per independent Q")
    ax.set_title(f"2D U(1), L = {length}: τ_int(Q) × evaluations per step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_row(row: dict) -> None:
    for method in (m for m in METHODS if m in row):
        r = row[method]
        bound = "≥" if r["tau_q_lower_bound"] else " "
        print(
            f"β={row['beta']:<4g} {method:<9} acc {r['acceptance']:.3f}"
            f"  τ_Q {bound}{r['tau_q']:8.1f}"
            f"  evals/indep {bound}{r['evals_per_independent_q']:9.1f}  ESS_Q {r['ess_q']:7.1f}"
            f"  Q² {r['q2'][0]:.3f}±{r['q2'][1]:.3f} (exact {r['q2'][2]:.3f})"
            f"  plaq {r['plaquette'][0]:.4f} ({r['plaquette'][1]:.4f})  {r['wall_s']:.0f}s",
            flush=True,
        )


def main() -> None:
    args = parse()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    def save(row: dict) -> None:
        done = [*rows, row]
        (args.out / "scan.json").write_text(
            json.dumps({"args": vars(args), "rows": done}, default=str, indent=2)
        )

    for beta in args.betas:
        rows.append(run_beta(args, beta, save))
        print_row(rows[-1])
        plot(rows, args.L, args.out / "tau_q.png")


if __name__ == "__main__":
    main()
