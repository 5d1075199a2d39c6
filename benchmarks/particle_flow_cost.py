"""What one training step of the probe particle flow costs, in turns with two baselines.

For each glass card (at the comparison's N), the script alternates ``--repeats`` turns of

1. the probe flow's forward and backward pass on a batch (``probe_particle_flow``, the
   factorised pair network: species columns picked per particle and broadcast);
2. the same flow with the pair network's input laid out for every (particle, bin, fixed
   particle) triple, [radial features, one-hot(s_i), one-hot(s_j)] — the definition, as the
   conditioner computed it before;
3. one energy evaluation of the batch,

and prints the median time of each and the ratios (laid out / factorised, and factorised /
energy: how many energy evaluations of the batch one training step's flow pass costs) as
``median [min–max]`` over the turns. Both flows share parameters, so they compute the same
numbers (checked before timing).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/particle_flow_cost.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/particle_flow_cost.py --batch 32 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

import boltzgen as bg
from boltzgen.flows.particles import ProbeConditioner, probe_particle_flow

SYSTEMS = {"kob_andersen_2d_ternary": 36, "polydisperse_3d": 70}


def _laid_out(self: ProbeConditioner, radial: Tensor, species: tuple[Tensor, Tensor]) -> Tensor:
    one_hot = [nn.functional.one_hot(s, self.n_species).to(radial) for s in species]
    shape = (*radial.shape[:-1], self.n_species)
    own = one_hot[0][None, :, None, None].expand(shape)
    other = one_hot[1][None, None, None, :].expand(shape)
    return self.pair[0](torch.cat([radial, own, other], -1))


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _step(flow: nn.Module, x: Tensor) -> Callable[[], None]:
    def run() -> None:
        y, logdet = flow(x)
        (y.sum() + logdet.sum()).backward()

    return run


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--bins", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    factorised_first = ProbeConditioner._first_layer
    print(
        "system | N | factorised s | laid out s | energy s | laid out ÷ factorised | "
        "factorised ÷ energy"
    )
    for name, n in SYSTEMS.items():
        torch.manual_seed(0)
        energy = bg.load_system(name, n_particles=n).energy
        flow = probe_particle_flow(
            energy.box, energy.species, args.layers, args.bins, args.hidden
        ).double()
        for parameter in flow.parameters():
            nn.init.normal_(parameter, std=0.1)
        x = torch.rand(args.batch, n, energy.box.numel(), dtype=torch.float64) * energy.box
        with torch.no_grad():
            fast = flow(x)[0]
            ProbeConditioner._first_layer = _laid_out
            slow = flow(x)[0]
            ProbeConditioner._first_layer = factorised_first
        torch.testing.assert_close(fast, slow)
        times: dict[str, list[float]] = {"factorised": [], "laid out": [], "energy": []}
        for _ in range(args.repeats):
            times["factorised"].append(_timed(_step(flow, x)))
            ProbeConditioner._first_layer = _laid_out
            times["laid out"].append(_timed(_step(flow, x)))
            ProbeConditioner._first_layer = factorised_first
            times["energy"].append(_timed(partial(energy.energy, x)))
        slow_ratio = [s / f for s, f in zip(times["laid out"], times["factorised"], strict=True)]
        energy_ratio = [f / e for f, e in zip(times["factorised"], times["energy"], strict=True)]
        print(
            f"{name} | {n} | {statistics.median(times['factorised']):.3f} | "
            f"{statistics.median(times['laid out']):.3f} | "
            f"{statistics.median(times['energy']):.4f} | {_spread(slow_ratio)} | "
            f"{_spread(energy_ratio)}"
        )


if __name__ == "__main__":
    main()
