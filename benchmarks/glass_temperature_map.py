"""Hot-to-cold flow vs population annealing on a small 2-D ternary Kob–Andersen liquid.

    OMP_NUM_THREADS=1 python benchmarks/glass_temperature_map.py --n 36 --t-hot 2.0 --t-cold 1.0

Prints the Kish ESS fraction of the mapped hot samples before (identity) and after training,
the flow's ln Z(T_cold) − ln Z(T_hot) and population annealing's, with their costs.
"""

from __future__ import annotations

import argparse

import torch

from boltzgen.energies.particles import kob_andersen_ternary
from boltzgen.flows.particles import periodic_particle_flow
from boltzgen.metrics import ess_fraction
from boltzgen.samplers.parallel_tempering import geometric_ladder
from boltzgen.samplers.population_annealing import PopulationAnnealing, swap_mc_move
from boltzgen.samplers.swap_mc import SwapMCConfig, SwapMonteCarlo
from boltzgen.samplers.temperature_map import TemperatureMap
from boltzgen.training.temperature_map import train_temperature_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=36)
    parser.add_argument("--t-hot", type=float, default=2.0)
    parser.add_argument("--t-cold", type=float, default=1.0)
    parser.add_argument("--chains", type=int, default=32)
    parser.add_argument("--sweeps", type=int, default=20)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    energy = kob_andersen_ternary(n_particles=args.n, temperature=args.t_cold)
    config = SwapMCConfig(step_size=0.2, swap_probability=0.2)
    hot_energy = energy.at_temperature(args.t_hot)
    x0 = energy.minimum.expand(args.chains, -1, -1).clone()
    hot = SwapMonteCarlo(hot_energy, config).sample(
        x0, args.sweeps, generator, n_warmup=args.warmup
    )
    z = hot.x - energy.box * torch.floor(hot.x / energy.box)
    flow = periodic_particle_flow(energy.box, energy.species, 4, hidden=32).double()
    sampler = TemperatureMap(flow, energy)
    before = sampler.sample(z, hot.energies)
    history = train_temperature_map(flow, energy, z, generator, args.steps, 32, 1e-3)
    after = sampler.sample(z, hot.energies)
    ladder = geometric_ladder(args.t_cold, args.t_hot, 12)[::-1]
    pa = PopulationAnnealing(energy, ladder, swap_mc_move(config, 2), n_groups=10)
    pa_samples = pa.sample(z[-200:], generator)  # the last 200 hot samples (chains × sweeps ≥ 200)
    hot_evals, train_evals = hot.cost.energy_evals, history.cost.energy_evals
    print(f"hot samples: {z.shape[0]} ({hot_evals} evaluations); training: {train_evals}")
    print(f"ESS fraction, identity map: {ess_fraction(before.log_weights):.4f}")
    print(f"ESS fraction, trained flow: {ess_fraction(after.log_weights):.4f}")
    print(
        f"flow  ln Z ratio: {after.info['log_z_ratio']:.3f} "
        f"(identity map {before.info['log_z_ratio']:.3f})"
    )
    print(
        f"PA    ln Z ratio: {pa_samples.info['log_z_ratio']:.3f} ± "
        f"{pa_samples.info['log_z_ratio_stderr']:.3f} ({pa_samples.cost.energy_evals} evaluations)"
    )
    print(
        f"loss: {history.losses[0]:.2f} → {history.losses[-1]:.2f}; "
        f"mean u_cold/N of the map: {float(after.energies.mean()) * args.t_cold / args.n:.3f}"
    )


if __name__ == "__main__":
    main()
