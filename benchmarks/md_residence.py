"""MD's cost of a free energy, forecast from its residence time in the rare state.

    BOLTZGEN_DATA=data PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/md_residence.py \\
        --runs 24 --max-ps 3000 --out runs/md_residence --compare 1e7 3.7e8

Where plain MD never visits a state within the budgets of the time-to-ΔF ladder, it has no
error to project. Its cost can still be forecast from the kinetics
(:mod:`boltzgen.metrics.kinetics`): OpenMM Langevin runs (the benchmark's MD settings) start
from reference frames inside the rare state (``--state``; frames of the reference set's
training part, so equilibrium within the state), each until it reaches the core of the
other state (``--core``, a state entry of the card's kinds; recrossings of the state's edge
do not count) or ``--max-ps``. Their censored mean gives the residence time τ, the
reference ΔF the state's probability p, and a trajectory of T steps then has
σ(ΔF) = √(2τ/(pT)); ``n`` seeds (5) all lie within t kT with 90 % probability from
T = 2τz²/(p t²) force evaluations. Also printed: the chance that an MD run of b steps
started in the other state never enters this one, exp(−b p/((1 − p)τ)), to set against the
ladder's "never sampled" rows.

Each finished run is kept in ``OUT/exits.json`` (rerunning the command continues; run k has
its own seed), the figures in ``OUT/residence.json``. A forecast, not a measurement: it
assumes two-state kinetics (fast relaxation within each state) and counts the trajectory's
steps as force evaluations (one per MD step, as the ladder does).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

import boltzgen as bg
from boltzgen.metrics.kinetics import residence_time, two_state_length, two_state_stderr
from boltzgen.observables.states import StateContext, build_state
from boltzgen.records.files import write_json
from boltzgen.runner.time_to_df import TOLERANCES, seeds_quantile
from boltzgen.samplers.md import MDConfig, MolecularDynamics

MIN_ENTRIES = 10  # expected entries below which σ(ΔF) = √(2τ/(pT)) is not quoted


def _starts(system, state: str, runs: int, seed: int) -> torch.Tensor:
    """``runs`` frames of the reference's training part inside ``state``, drawn without
    replacement."""
    stored = system.stored_reference("training")
    if stored.data is None:
        raise SystemExit(f"{system.name}: {stored.note}")
    x = stored.data.x.to(torch.float64)
    inside = x[system.states[state](x)]
    if len(inside) < runs:
        raise SystemExit(f"only {len(inside)} reference frames in {state}, asked for {runs} runs")
    pick = torch.randperm(len(inside), generator=torch.Generator().manual_seed(seed))[:runs]
    return inside[pick]


def _state_probability(system, state: str) -> tuple[float, float, str]:
    """p of ``state`` against the other state of its free-energy pair, from the reference ΔF
    (value and stderr), and the pair's name."""
    for a, b in system.free_energy_pairs:
        if state in (a, b):
            name = f"{b}_vs_{a}"
            ref = system.reference_estimates()[name]
            if ref.value is None:
                raise SystemExit(f"{system.name}: no reference for {name} ({ref.note})")
            delta = ref.value if state == b else -ref.value
            return 1.0 / (1.0 + math.exp(delta)), float(ref.stderr or 0.0), name
    raise SystemExit(f"{state} is in no free-energy pair of {system.name}")


def _run_all(args: argparse.Namespace, system, done: dict[str, list]) -> dict[str, list]:
    core_entry = yaml.safe_load(args.core)
    core = build_state(
        core_entry, StateContext("--core", "core", system.energy.event_shape, system.topology)
    )
    md = MolecularDynamics(
        system.openmm_system,
        system.temperature,
        MDConfig(
            timestep_fs=args.timestep_fs,
            friction_per_ps=args.friction,
            platform=args.platform,
            threads=1 if args.platform == "CPU" else None,
        ),
    )
    starts = _starts(system, args.state, args.runs, args.seed)
    max_steps = round(args.max_ps * 1000 / args.timestep_fs)
    check = max(1, round(args.check_fs / args.timestep_fs))
    path = args.out / "exits.json"
    for k in tqdm(range(args.runs), desc="MD exits", initial=0):
        if str(k) in done:
            continue
        generator = torch.Generator().manual_seed(args.seed * 100_003 + k)
        steps, left = md.first_exit(starts[k], core, max_steps, check, generator)
        done[str(k)] = [steps, left]
        write_json(path, {"settings": _settings(args), "runs": done})
    return done


def _settings(args: argparse.Namespace) -> dict:
    keys = ("system", "state", "core", "timestep_fs", "friction", "check_fs", "seed")
    return {k: getattr(args, k) for k in keys}


def _load(args: argparse.Namespace) -> dict[str, list]:
    path = args.out / "exits.json"
    if not path.exists():
        return {}
    stored = json.loads(path.read_text())
    if stored["settings"] != _settings(args):
        raise SystemExit(f"{path} was made with other settings: {stored['settings']}")
    return stored["runs"]


def _report(args: argparse.Namespace, system, done: dict[str, list]) -> dict:
    """The residence time of the finished runs and what it forecasts (``residence.json``)."""
    steps = np.array([v[0] for v in done.values()], dtype=np.float64)
    left = np.array([v[1] for v in done.values()], dtype=bool)
    r = residence_time(steps, left)
    p, p_err, pair = _state_probability(system, args.state)
    z = seeds_quantile(args.seeds, 0.9)
    out = {
        "pair": pair,
        "state": args.state,
        "runs": r.n_runs,
        "exits": r.n_exits,
        "residence_steps": r.value,
        "residence_stderr": r.stderr,
        "residence_ps": r.value * args.timestep_fs / 1000,
        "state_probability": p,
        "seeds": args.seeds,
        "z": z,
    }
    if r.n_exits == 0:
        return out
    rel = r.stderr / r.value
    out["budgets"] = {str(t): [two_state_length(r.value, p, t, z), rel] for t in TOLERANCES}
    out["ladder"] = {f"{b:.0e}": _ladder_entry(b, r.value, p) for b in args.ladder}
    out["reference_stderr"] = p_err
    return out


def _ladder_entry(steps: float, residence: float, p: float) -> dict:
    """An MD run of ``steps`` started in the other state: the entries it expects, the chance
    of none, and σ(ΔF) where the linear formula applies (≥ ``MIN_ENTRIES`` entries)."""
    entries = steps * p / ((1 - p) * residence)
    stderr = two_state_stderr(residence, p, steps) if entries >= MIN_ENTRIES else None
    return {"expected_entries": entries, "p_never_enters": math.exp(-entries), "stderr": stderr}


def _print(out: dict, compare: Sequence[float]) -> None:
    print(
        f"{out['state']} ({out['pair']}): {out['runs']} runs, {out['exits']} exits; "
        f"residence τ = {out['residence_steps']:.4g} ± {out['residence_stderr']:.2g} steps "
        f"({out['residence_ps']:.4g} ps); p = {out['state_probability']:.4g}"
    )
    if "budgets" not in out:
        print("no run left the state: raise --max-ps or --runs")
        return
    for b, row in out["ladder"].items():
        error = (
            f"σ(ΔF) ≈ {row['stderr']:.3g} kT"
            if row["stderr"] is not None
            else f"fewer than {MIN_ENTRIES} entries: no σ"
        )
        print(
            f"  MD of {b} steps: {row['expected_entries']:.3g} entries expected, "
            f"P(none) ≈ {row['p_never_enters']:.3g}; {error}"
        )
    for t, (budget, rel) in out["budgets"].items():
        ratios = ", ".join(f"{budget / c:.3g}× {c:.3g}" for c in compare)
        print(
            f"  all {out['seeds']} seeds within {t} kT (90 %): {budget:.3g} ± {budget * rel:.2g}"
            f" evaluations" + (f" ({ratios})" if ratios else "")
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", default="alanine_dipeptide_implicit")
    parser.add_argument("--state", default="phi_pos", help="the rare state the runs start in")
    parser.add_argument(
        "--core", default="{phi: 0, max: -0.4}", help="YAML state entry: reaching it ends a run"
    )
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--max-ps", type=float, default=3000.0)
    parser.add_argument("--check-fs", type=float, default=100.0)
    parser.add_argument("--timestep-fs", type=float, default=1.0)
    parser.add_argument("--friction", type=float, default=1.0, help="Langevin collision rate, 1/ps")
    parser.add_argument(
        "--platform",
        default="Reference",
        help="OpenMM platform (the same dynamics on any; on one core Reference runs the 22-atom "
        "dipeptide ≈ 19× as many steps per second as CPU)",
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds that must all be within")
    parser.add_argument("--ladder", type=float, nargs="*", default=[1e5, 1e6, 1e7, 1e8])
    parser.add_argument(
        "--compare",
        type=float,
        nargs="*",
        default=[],
        help="budgets to divide MD's forecast by (e.g. a generator's)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-only", action="store_true", help="no new runs")
    parser.add_argument("--out", type=Path, default=Path("runs/md_residence"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    system = bg.load_system(args.system)
    done = _load(args)
    if not args.report_only:
        done = _run_all(args, system, done)
    if not done:
        raise SystemExit("no finished run")
    out = _report(args, system, done)
    write_json(args.out / "residence.json", out)
    _print(out, args.compare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
