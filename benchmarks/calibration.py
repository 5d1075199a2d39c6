"""Coverage benchmark: do the error bars that ``result.json`` reports mean what they say?

For every method on systems with exact answers, ``--seeds`` independent runs are scored
exactly as the runner scores them (:func:`boltzgen.runner.evaluate.evaluate`), and for each
estimate (ΔF of every pair, log Z where defined) the z-score

    z = (estimate − exact) / stderr

is tabulated over the runs that report a stderr (``converged: true``). A calibrated error
bar has |z| > 2 in about 5 % of runs (2–10 % accepted at 50 seeds) and |z| > 3 in at most
2 %; runs flagged ``converged: false`` carry no stderr and are counted apart.

The flows are trained once per system (seed 0, small settings): the runs differ only in
their sampling randomness, which is what a reported stderr describes.

    .venv/bin/python benchmarks/calibration.py                       # all, ~1 h on 1 core
    .venv/bin/python benchmarks/calibration.py --systems many_well_32d --markdown t.md
    .venv/bin/python benchmarks/calibration.py --seeds 20 --systems double_well_2d \\
        --methods smc hmc
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from boltzgen import metrics
from boltzgen.flows import GaussianPrior
from boltzgen.flows.ode import ContinuousFlow
from boltzgen.records import WeightedSamples
from boltzgen.runner.evaluate import evaluate
from boltzgen.runner.methods import MethodContext, hmc
from boltzgen.runner.methods.boltzmann_generator import BoltzmannGeneratorParams, train_generator
from boltzgen.runner.methods.flow_perturbation import FlowPerturbationParams, trained_field
from boltzgen.runner.methods.flows import FlowParams
from boltzgen.runner.methods.hmc import HMCParams
from boltzgen.runner.methods.snf import SNFParams, build_snf
from boltzgen.runner.methods.training import TrainParams
from boltzgen.samplers.flow_mcmc import FlowHMC, FlowIndependenceMetropolis
from boltzgen.samplers.flow_perturbation import FlowPerturbation
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.parallel_tempering import ParallelTempering, geometric_ladder
from boltzgen.samplers.smc import SMCSampler
from boltzgen.samplers.snf import StochasticNormalizingFlow
from boltzgen.systems import System, load_system
from boltzgen.training import train_perturbation_scale, train_snf

SYSTEMS = ("double_well_2d", "many_well_32d", "correlated_gaussian_4d")
METHODS = (
    "bg",
    "smc",
    "snf",
    "flow_perturbation",
    "flow_mcmc",
    "flow_mcmc_512",
    "flow_hmc",
    "hmc",
    "pt",
)
UNTRAINED = {"hmc", "pt"}
"""Methods that need no trained flow (``--methods`` of these alone trains none)."""
N_DRAWS = 10_000
MIN_REPORTED = 10
"""Fewer runs with a stderr than this say nothing about coverage: the method is flagged."""


@dataclass
class Models:
    """What the flow-based methods of one system share: trained once (``None`` where only
    the methods that train nothing run)."""

    system: System
    bg: BoltzmannGenerator | None
    snf: StochasticNormalizingFlow | None
    fp: FlowPerturbation | None


def prepare(system: System) -> Models:
    """Train the generator, the SNF and the flow-perturbation CNF briefly (seed 0)."""
    g = torch.Generator().manual_seed(0)
    params = BoltzmannGeneratorParams(
        flow=FlowParams(n_layers=4, hidden=32),
        train=TrainParams(loss="mixed", steps=600, batch_size=256, n_data=5000),
    )
    bg = train_generator(system, params, g, None, False).model
    snf = build_snf(system, SNFParams(n_blocks=2, block_steps=3, hidden=32), 1)
    train_snf(snf, 200, 256, 1e-3, torch.Generator().manual_seed(2))
    fp_params = FlowPerturbationParams(hidden=32, train_steps=300, n_data=5000, ode_steps=4)
    field, _, _ = trained_field(system, fp_params, 3, torch.Generator().manual_seed(3), None)
    fp = FlowPerturbation(
        GaussianPrior(system.energy.dim), ContinuousFlow(field, n_steps=4), system.energy, 1e-3
    )
    train_perturbation_scale(fp, 50, 256, 1e-2, torch.Generator().manual_seed(4))
    return Models(system, bg, snf, fp)


def _pt(models: Models, g: torch.Generator) -> WeightedSamples:
    system = models.system
    ladder = geometric_ladder(system.temperature, 6.0 * system.temperature, 8)
    pt = ParallelTempering(system.energy, ladder, "hmc", 0.1, 5)
    x0 = system.dispersed_starts(8, g)
    return pt.sample(x0, 800, g, 200, 1, False, dict(system.states))


def _hmc(models: Models, g: torch.Generator) -> WeightedSamples:
    params = HMCParams(n_chains=16, n_warmup=150, n_steps=600, n_leapfrog=5, step_size=0.1)
    return hmc.run(models.system, params, g, MethodContext())


SAMPLERS: dict[str, Callable[[Models, torch.Generator], WeightedSamples]] = {
    "bg": lambda m, g: m.bg.sample(N_DRAWS, g),
    "smc": lambda m, g: SMCSampler(m.bg, m.system.energy, n_steps=5, n_runs=8).sample(4000, g),
    "snf": lambda m, g: m.snf.sample(N_DRAWS, g),
    "flow_perturbation": lambda m, g: m.fp.sample(N_DRAWS, g),
    "flow_mcmc": lambda m, g: FlowIndependenceMetropolis(m.bg, m.system.energy).sample(
        64, 150, g, 30
    ),
    # many short chains, as the head-to-head runs them: the regime where a rare state is
    # missed by single chains by chance and visits are checked on groups of chains
    "flow_mcmc_512": lambda m, g: FlowIndependenceMetropolis(m.bg, m.system.energy).sample(
        512, 400, g, 30, thin=5
    ),
    "flow_hmc": lambda m, g: FlowHMC(m.bg, m.system.energy, 0.2, 2, 0.8).sample(64, 30, g, 20),
    "hmc": _hmc,
    "pt": _pt,
}


@dataclass(frozen=True)
class Outcome:
    """One run's estimate: its z-score (NaN when it carries no stderr) and its verdict."""

    estimate: str
    z: float
    converged: bool


def outcomes(system: System, samples: WeightedSamples, g: torch.Generator) -> list[Outcome]:
    """z-scores of every estimate with an exact reference in the runner's result."""
    result = evaluate(system, samples, None, g)
    entries = dict(result["free_energies"])
    if "log_z" in result:
        entries["log_z"] = result["log_z"]
    out = []
    for name, entry in entries.items():
        stderr, converged = entry["stderr"], bool(entry["converged"])
        if entry.get("errors_calibrated") is False:  # measure the error bars it would report
            stderr = _raw_stderr(system, samples, name, g) if converged else None
        z = (entry["value"] - entry["reference"]) / stderr if converged and stderr else math.nan
        out.append(Outcome(name, z, converged))
        if name in result["free_energies"] and "ladder_states" in samples.info:
            out.append(_ladder_outcome(system, samples, name, entry["reference"]))
    return out


def _ladder_outcome(
    system: System, samples: WeightedSamples, name: str, reference: float
) -> Outcome:
    """The z-score of a ladder method's MBAR estimate over every temperature (the estimator
    of the PT reference sets), reported as ``<name>, MBAR``."""
    from boltzgen.metrics.mbar import ladder_state_free_energy

    value, stderr = ladder_state_free_energy(samples, *_pair(system, name))
    finite = math.isfinite(value) and math.isfinite(stderr) and stderr > 0
    return Outcome(f"{name}, MBAR", (value - reference) / stderr if finite else math.nan, finite)


def _raw_stderr(system: System, samples: WeightedSamples, name: str, g: torch.Generator) -> float:
    """The stderr an uncalibrated sampler's estimate would carry (evaluate withholds it)."""
    if name == "log_z":
        return metrics.log_partition_function(samples).stderr
    a, b = _pair(system, name)
    return metrics.free_energy_difference(
        samples, system.states[a], system.states[b], generator=g
    ).stderr


def _pair(system: System, name: str) -> tuple[str, str]:
    """The state pair (A, B) of the free energy named ``B_vs_A``."""
    return next((a, b) for a, b in system.free_energy_pairs if f"{b}_vs_{a}" == name)


@dataclass(frozen=True)
class Row:
    """Coverage of one (system, method, estimate) over the seeds."""

    system: str
    method: str
    estimate: str
    n: int
    flagged: float
    over2: float
    over3: float

    @property
    def verdict(self) -> str:
        reported = round(self.n * (1 - self.flagged))
        if reported < MIN_REPORTED:
            return "flagged (mostly not converged)"
        if self.over3 > 0.02 or self.over2 > 0.10:
            return "NOT calibrated"
        if self.over2 < 0.02:
            return "calibrated (conservative)"
        return "calibrated"


def summarise(system: str, method: str, runs: list[list[Outcome]]) -> list[Row]:
    rows = []
    for name in dict.fromkeys(o.estimate for run in runs for o in run):
        found = [o for run in runs for o in run if o.estimate == name]
        z = torch.tensor([o.z for o in found if o.converged], dtype=torch.float64)
        z = z[torch.isfinite(z)]
        flagged = 1.0 - len(z) / len(found)
        over = [float((z.abs() > k).double().mean()) if len(z) else math.nan for k in (2, 3)]
        rows.append(Row(system, method, name, len(found), flagged, *over))
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| system | method | estimate | runs | not converged | |z|>2 | |z|>3 | verdict |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        pct = lambda v: "–" if math.isnan(v) else f"{100 * v:.0f} %"  # noqa: E731
        lines.append(
            f"| {r.system} | {r.method} | {r.estimate} | {r.n} | {pct(r.flagged)} | "
            f"{pct(r.over2)} | {pct(r.over3)} | {r.verdict} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: list[Row] = []
    for name in args.systems:
        start, system = time.perf_counter(), load_system(name)
        if set(args.methods) <= UNTRAINED:
            models = Models(system, None, None, None)
        else:
            models = prepare(system)
            print(f"# {name}: models trained in {time.perf_counter() - start:.0f} s", flush=True)
        for method in args.methods:
            start, runs = time.perf_counter(), []
            for seed in range(args.seeds):
                g = torch.Generator().manual_seed(1000 + seed)
                runs.append(outcomes(models.system, SAMPLERS[method](models, g), g))
            rows += summarise(name, method, runs)
            print(table(rows[-len(runs[0]) :]).split("\n", 2)[-1], flush=True)
            print(f"#   {method}: {time.perf_counter() - start:.0f} s", flush=True)
    text = table(rows)
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
