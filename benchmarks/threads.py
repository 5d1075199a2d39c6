"""Why each task runs on one thread: small-batch HMC with 1 thread against torch's default.

Runs ``--steps`` HMC steps of ``--chains`` chains on a peptide (default alanine
tripeptide in implicit solvent, 32 atoms, TorchForceField) in a fresh process per
thread count, so the count is fixed before torch starts, and prints seconds per step
and the ratio to one thread. The default count is torch's (the machine's cores); on a
machine whose cores are busy with other work (other tasks of the same run, other
users) the many-thread run waits for cores it cannot get, and small batches are many
times slower. ``boltzgen run`` therefore gives each task one thread on the local and
debug executors, and the allocation's cores on a cluster (``threads:`` overrides).

    .venv/bin/python benchmarks/threads.py
    .venv/bin/python benchmarks/threads.py --threads 1 2 4 --chains 8 --steps 15
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = """
import sys, time, torch
import boltzgen as bg
system = bg.load_system(sys.argv[1])
chains, steps = int(sys.argv[2]), int(sys.argv[3])
x0 = system.initial_positions.expand(chains, *system.energy.event_shape).clone()
hmc = bg.samplers.HMC(system.energy, step_size=1e-3, n_leapfrog=10, target_acceptance=0.8)
gen = torch.Generator().manual_seed(0)
hmc.sample(x0, 2, gen, 0)
start = time.perf_counter()
hmc.sample(x0, steps, gen, 0)
print(torch.get_num_threads(), (time.perf_counter() - start) / steps)
"""


def seconds_per_step(
    threads: int | None, system: str, chains: int, steps: int
) -> tuple[int, float]:
    """(threads torch used, seconds per HMC step) measured in a fresh process."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, system, str(chains), str(steps)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    used, seconds = out.stdout.split()
    return int(used), float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="alanine_tripeptide_implicit")
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--threads", type=int, nargs="*", default=[1], help="besides the default")
    args = parser.parse_args()
    rows = [seconds_per_step(t, args.system, args.chains, args.steps) for t in args.threads]
    rows.append(seconds_per_step(None, args.system, args.chains, args.steps))
    base = rows[0][1]
    print(f"HMC, {args.chains} chains, {args.system}, {os.cpu_count()} cores")
    print(f"{'threads':>12} {'s / step':>10} {'× one thread':>13}")
    for (used, seconds), asked in zip(rows, [*args.threads, None], strict=True):
        label = f"{used}" + (" (default)" if asked is None else "")
        print(f"{label:>12} {seconds:>10.4f} {seconds / base:>13.2f}")


if __name__ == "__main__":
    main()
