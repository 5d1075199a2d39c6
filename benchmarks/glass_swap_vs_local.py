"""Swap vs local Monte Carlo on a particle card: τ_int of u, ESS per evaluation, moves per second.

    OMP_NUM_THREADS=1 python benchmarks/glass_swap_vs_local.py --n 100 --temperature 0.2 \
        --chains 8 --sweeps 200 --warmup 30

Prints, per method, the displacement/swap acceptance, the integrated autocorrelation time of
the energy (in sweeps), the ESS of the energy, the energy evaluations charged, ESS per
evaluation and per wall second. Chains start from the system's dispersed starts. Then the
speed of one sweep in elementary moves per second (all chains together) for a per-move
reference (each move scatters a whole proposal and recomputes both particles' energies
through ``particle_energies``, the earlier implementation), the batched rows without a pair
table, and with the pair table.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor

import boltzgen as bg
from boltzgen.energies.particles import ParticleEnergy
from boltzgen.metrics.autocorrelation import integrated_time
from boltzgen.samplers.swap_mc import SwapMCConfig, SwapMonteCarlo


def reference_move(energy: ParticleEnergy, x: Tensor, u: Tensor, g: torch.Generator, p: float):
    """One move of every chain the per-move way: whole proposals, both energies recomputed."""
    c, n = x.shape[:2]
    swap = float(torch.rand((), generator=g)) < p
    pick = torch.randint(n, (c, 2 if swap else 1), generator=g)
    rows = x.gather(1, pick[..., None].expand(-1, -1, x.shape[-1]))
    if swap:
        new = rows.flip(1)
    else:
        new = rows + 0.1 * (2 * torch.rand(rows.shape, generator=g, dtype=x.dtype) - 1)
    proposal = x.scatter(1, pick[..., None].expand_as(new), new)
    both = energy.particle_energies(torch.cat([x, proposal]), pick.repeat(2, 1))
    before, after = both.chunk(2)
    delta = (after - before).sum(-1)
    ok = torch.rand(c, generator=g, dtype=x.dtype).log() < -delta
    return torch.where(ok[:, None, None], proposal, x), torch.where(ok, u + delta, u)


def moves_per_second(energy: ParticleEnergy, x0: Tensor, mode: str, repeats: int = 3) -> float:
    """Elementary moves per wall second, all chains counted, of one sweep (best of repeats)."""
    g, best = torch.Generator().manual_seed(0), 0.0
    sampler = SwapMonteCarlo(energy, SwapMCConfig(0.1, 0.2, 0.2, pair_table=mode == "table"))
    for _ in range(repeats):
        start = time.perf_counter()
        if mode == "per-move":
            x, u = x0.clone(), energy.energy(x0)
            for _ in range(energy.n_particles):
                x, u = reference_move(energy, x, u, g, 0.2)
        else:
            sampler.sweep(sampler.init(x0), g)
        best = max(best, x0.shape[0] * energy.n_particles / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="polydisperse_3d")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--sweeps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--step", type=float, default=0.1)
    parser.add_argument("--no-speed", action="store_true", help="skip the moves-per-second table")
    args = parser.parse_args()
    system = bg.load_system(args.system, n_particles=args.n, temperature=args.temperature)
    x0 = system.dispersed_starts(args.chains, torch.Generator().manual_seed(1))
    print("method    acc_disp  acc_swap  tau_u[sweeps]  ESS   evals   ESS/eval  ESS/s")
    for name, p in (("local", 0.0), ("swap", 0.2)):
        config = SwapMCConfig(args.step, p, max_diameter_difference=0.2)
        sampler = SwapMonteCarlo(system.energy, config)
        samples = sampler.sample(x0, args.sweeps, torch.Generator().manual_seed(0), args.warmup)
        u = samples.energies.reshape(args.sweeps, args.chains)
        tau = integrated_time(u)
        ess = u.numel() / tau
        evals = samples.cost.energy_evals
        info = samples.info
        print(
            f"{name:8s}  {info['displacement_acceptance']:.3f}     {info['swap_acceptance']:.3f}"
            f"     {tau:8.1f}     {ess:6.1f}  {evals:6d}  {ess / evals:.2e}  "
            f"{ess / samples.cost.wall_s:.2e}"
        )
    if args.no_speed:
        return
    print("moves/s (one sweep, all chains)   per-move   rows     table")
    for chains in (8, 64):
        starts = system.dispersed_starts(chains, torch.Generator().manual_seed(2))
        rates = [moves_per_second(system.energy, starts, m) for m in ("per-move", "rows", "table")]
        print(f"C = {chains:3d}                          " + "  ".join(f"{r:8.0f}" for r in rates))


if __name__ == "__main__":
    main()
