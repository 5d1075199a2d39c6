"""Score a Boltzmann generator's samples of alanine dipeptide against a PT reference.

Prints the Kish ESS, ΔF(φ ∈ (0, 2) vs φ < 0) with its standard error next to the
reference's MBAR value, the worst bond stretch (length over the minimised structure's),
the share of D samples, and the target evaluations spent, training included::

    python benchmarks/aldp_generator_report.py runs/aldp_fab/alanine_dipeptide_implicit/fab/seed0 \\
        --reference data/alanine_dipeptide_implicit/pt/manifest.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import boltzgen as bg
from boltzgen.flows.internal import ChiralCentres
from boltzgen.runner.methods.flows import minimise


def bond_stretch(system: bg.System, x: torch.Tensor) -> float:
    """max over samples and bonds of |r| / |r_min| (r_min: the minimised structure)."""
    bonds = torch.tensor([[a.index, b.index] for a, b in system.topology.bonds])
    x0 = minimise(system.energy, system.initial_positions)[None]
    r0 = (x0[:, bonds[:, 0]] - x0[:, bonds[:, 1]]).norm(dim=-1)
    finite = torch.isfinite(x.flatten(1)).all(dim=1)
    r = (x[finite][:, bonds[:, 0]] - x[finite][:, bonds[:, 1]]).norm(dim=-1)
    return float((r / r0).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task_dir", type=Path)
    parser.add_argument("--reference", type=Path, default=None, help="a PT manifest.json")
    args = parser.parse_args()
    system = bg.load_system("alanine_dipeptide_implicit")
    samples = bg.WeightedSamples.load(args.task_dir / "samples.npz")
    result = json.loads((args.task_dir / "result.json").read_text())
    fe = bg.metrics.free_energy_difference(
        samples, system.states["phi_neg"], system.states["phi_pos"]
    )
    d_share = float((~ChiralCentres.from_topology(system.topology).is_l(samples.x)).double().mean())
    print(
        f"samples {len(samples.x)}  ESS fraction {bg.metrics.ess_fraction(samples.log_weights):.4f}"
    )
    print(f"ΔF(phi_pos vs phi_neg) = {fe.value:.3f} ± {fe.stderr:.3f} kT")
    if args.reference is not None:
        ref = json.loads(args.reference.read_text())["free_energies"]["phi_pos_vs_phi_neg"]
        print(f"reference (PT, MBAR)   = {ref['value']:.3f} ± {ref['stderr']:.3f} kT")
    print(f"worst bond stretch {bond_stretch(system, samples.x):.3f}×  D share {d_share:.4f}")
    c = result["cost"]
    train = c["train_energy_evals"] + c.get("train_force_evals", 0)
    total = c["energy_evals"] + c["force_evals"] + train
    wall = c["wall_s"] + c["train_wall_s"]
    print(f"target evaluations {total} (training {train}), wall {wall:.0f} s")


if __name__ == "__main__":
    main()
