"""Where φ⁴ turns critical: the Binder cumulant of HMC chains against λ at fixed m², for
several L.

The tutorial's action (arXiv 2101.08176) S = Σ_x [−2 Σ_μ φ(x)φ(x+μ) + (4 + m²) φ² + λ φ⁴]
is in its symmetric phase at the default point (m² = −4, λ = 8); lowering λ at fixed m²
deepens the double well of each site and crosses the critical line into the broken
phase (Ising universality class). For each (L, λ) the script runs HMC
(``bg.load_system("phi4_2d", L=L, m2=m2, lam=λ)``, ``--chains`` chains of ``--steps``
trajectories after ``--warmup``, step size tuned to acceptance 0.8) and prints χ₂ =
V⟨M²⟩ (⟨M⟩ = 0 by symmetry), ⟨|M|⟩, the Binder cumulant U₄ = 1 − ⟨M⁴⟩/(3⟨M²⟩²)
(:func:`boltzgen.observables.lattice.binder_cumulant`) with a jackknife error over the
independent chains, and τ_int of M² (critical slowing down). The curves U₄(λ) of
different L cross at the critical coupling (at U₄ ≈ 0.61, the 2D Ising value); a
ladder of λ from the tutorial's point to that crossing is the way "towards the critical
line". Writes ``scan.json`` and ``binder.png``.

    OMP_NUM_THREADS=1 python benchmarks/lattice_phi4_critical_line.py --lams 8 6 5 4.5 4 \\
        --Ls 8 16 --out runs/phi4_critical_line
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import boltzgen as bg
from boltzgen.metrics import integrated_time
from boltzgen.observables.lattice import binder_cumulant
from boltzgen.samplers.mcmc import HMC


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m2", type=float, default=-4.0)
    parser.add_argument("--lams", type=float, nargs="+", default=[8.0, 6.0, 5.0, 4.5, 4.0])
    parser.add_argument("--Ls", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--chains", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--n-leapfrog", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/phi4_critical_line"))
    return parser.parse_args()


def jackknife(chain_m: torch.Tensor) -> tuple[float, float]:
    """U₄ of ``chain_m: [T, C]`` pooled over the chains, and its leave-one-chain-out error."""
    c = chain_m.shape[1]
    value = float(binder_cumulant(chain_m.reshape(-1)))
    m2, m4 = chain_m.square().sum(0), chain_m.pow(4).sum(0)
    n = chain_m.shape[0] * (c - 1)
    drop = 1.0 - ((m4.sum() - m4) / n) / (3.0 * ((m2.sum() - m2) / n).square())
    return value, float(((c - 1) / c * (drop - drop.mean()).square().sum()).sqrt())


def point(length: int, lam: float, args: argparse.Namespace) -> dict:
    """HMC at (L, λ): the observables of one row."""
    system = bg.load_system("phi4_2d", L=length, m2=args.m2, lam=lam)
    generator = torch.Generator().manual_seed(args.seed)
    x0 = torch.randn(args.chains, length, length, generator=generator, dtype=torch.float64)
    start = time.time()
    samples = HMC(system.energy, 0.1, args.n_leapfrog, 0.8).sample(
        x0, args.steps, generator, args.warmup
    )
    m = samples.chains(samples.x.mean(dim=(-2, -1)))
    volume = length * length
    u4, u4_err = jackknife(m)
    m2 = m.square()
    tau = integrated_time(m2 - m2.mean(), mean=0.0)
    n = m.numel()
    return {
        "L": length,
        "lam": lam,
        "acceptance": samples.info["acceptance"],
        "chi2": [volume * float(m2.mean()), volume * float(m2.std() * (tau / n) ** 0.5)],
        "abs_magnetization": float(m.abs().mean()),
        "binder": [u4, u4_err],
        "tau_m2": tau,
        "force_evals": samples.cost.force_evals,
        "wall_s": time.time() - start,
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for length in sorted({r["L"] for r in rows}):
        mine = sorted((r for r in rows if r["L"] == length), key=lambda r: r["lam"])
        ax.errorbar(
            [r["lam"] for r in mine],
            [r["binder"][0] for r in mine],
            [r["binder"][1] for r in mine],
            marker="o",
            capsize=3,
            label=f"L = {length}",
        )
    ax.axhline(0.61, color="grey", lw=0.8, ls="--", label="2D Ising U₄*")
    ax.set_xlabel("λ")
    ax.set_ylabel("Binder cumulant U₄")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    args = parse()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    print("| L | λ | acceptance | χ₂ | ⟨|M|⟩ | U₄ | τ_int(M²) | forces | wall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for length in args.Ls:
        for lam in args.lams:
            r = point(length, lam, args)
            rows.append(r)
            print(
                f"| {length} | {lam:g} | {r['acceptance']:.2f} | {r['chi2'][0]:.3f} ± "
                f"{r['chi2'][1]:.3f} | {r['abs_magnetization']:.4f} | {r['binder'][0]:.3f} ± "
                f"{r['binder'][1]:.3f} | {r['tau_m2']:.1f} | {r['force_evals']:.2e} | "
                f"{r['wall_s']:.0f} s |",
                flush=True,
            )
            (args.out / "scan.json").write_text(
                json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=2)
            )
    plot(rows, args.out / "binder.png")


if __name__ == "__main__":
    main()
