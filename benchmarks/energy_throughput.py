"""How fast is TorchForceField? Energy+force evaluations per second against OpenMM.

For each peptide (alanine dipeptide in vacuum and in OBC implicit solvent, alanine
hexapeptide in implicit solvent) and each batch size, prints the energy+force
evaluations per second of ``TorchForceField.energy_and_force`` on every device, dtype
and mode (``eager``, or ``compiled``: ``compile=True``, whose first call, which
compiles, is not timed) asked for, with the ratio to

* (a) a plain single-Context OpenMM loop in this process (CPU platform, 1 thread,
  ``setPositions`` + ``getState(getEnergy=True, getForces=True)`` per configuration),
  whose rate does not depend on the batch size and is measured once per system — and
  the same loop on the Reference platform (a*), which on small molecules can be much
  faster than the CPU platform, whose every call hands work to a thread (slow on an
  idle virtual machine), and
* (b) ``OpenMMEnergy`` with a pool of ``--workers`` processes (CPU platform, 1 thread
  each) at the same batch size,

and the peak memory of one call: ``torch.cuda.max_memory_allocated`` on a GPU; on CPU
the growth of the process's peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs`` after ``malloc_trim``) over its resident set before the call.
Rates are the best of ``--repeats`` timings, each of at least ``--min-seconds``;
configurations are on the device before timing starts.

    .venv/bin/python benchmarks/energy_throughput.py
    .venv/bin/python benchmarks/energy_throughput.py --systems alanine_dipeptide_vacuum \\
        --batches 1024 8192 --dtypes float32 --devices cuda --no-pool

``--xml DIR`` reads ``DIR/<system>.xml`` (``openmm.XmlSerializer``) and
``DIR/<system>.npy`` (positions, nm) instead of the system cards.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
import torch
from openmm import unit

from boltzgen.energies.forcefield import TorchForceField
from boltzgen.energies.openmm import OpenMMEnergy

SYSTEMS = (
    "alanine_dipeptide_vacuum",
    "alanine_dipeptide_implicit",
    "alanine_hexapeptide_implicit",
)
TEMPERATURE = 300.0
MIB = 2**20


@dataclass(frozen=True)
class Molecule:
    """A benchmark system: its name, OpenMM System and a start configuration ``[N, 3]`` (nm)."""

    name: str
    system: openmm.System
    positions: np.ndarray


def load_molecules(names: list[str], xml: Path | None) -> list[Molecule]:
    """The systems ``names``, from the catalog or from ``xml`` (see the module docstring)."""
    if xml is not None:
        return [
            Molecule(
                name,
                openmm.XmlSerializer.deserialize((xml / f"{name}.xml").read_text()),
                np.load(xml / f"{name}.npy"),
            )
            for name in names
        ]
    from boltzgen.systems import load_system

    molecules = []
    for name in names:
        card = load_system(name)
        molecules.append(Molecule(name, card.openmm_system, card.initial_positions.numpy()))
        card.energy.close()
    return molecules


def perturbed(x0: np.ndarray, batch: int, noise: float, seed: int) -> torch.Tensor:
    """``[batch, N, 3]`` float64: ``x0`` plus Gaussian noise of ``noise`` nm."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.as_tensor(x0, dtype=torch.float64)
    return x0 + noise * torch.randn(batch, *x0.shape, dtype=torch.float64, generator=g)


def best_rate(
    evaluate: Callable[[], object], batch: int, repeats: int, min_seconds: float, sync: Callable
) -> float:
    """Configurations per second: the best of ``repeats`` timings of at least ``min_seconds``."""
    evaluate()
    sync()
    best = math.inf
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            evaluate()
            sync()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / calls)
    return batch / best


def context_loop(system: openmm.System, platform: str) -> Callable[[np.ndarray], None]:
    """(a): one Context (``platform``; CPU with 1 thread), positions set row by row."""
    properties = {"Threads": "1", "DeterministicForces": "true"} if platform == "CPU" else {}
    context = openmm.Context(
        system,
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName(platform),
        properties,
    )

    def evaluate(x: np.ndarray) -> None:
        for row in x:
            context.setPositions(row)
            state = context.getState(getEnergy=True, getForces=True)
            state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            state.getForces(asNumpy=True)

    return evaluate


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_memory(evaluate: Callable[[], object], device: torch.device) -> tuple[float, str]:
    """Peak memory of one call of ``evaluate`` in MiB, and how it was measured."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        evaluate()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / MIB, "cuda"
    try:
        ctypes.CDLL(None).malloc_trim(0)  # hand freed heap back, so that reuse shows as growth
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to VmRSS
        before = _status_kib("VmRSS")
        evaluate()
        peak = _status_kib("VmHWM")
        if before is not None and peak is not None:
            return (peak - before) / 1024, "VmHWM"
    except OSError:
        pass
    evaluate()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "maxrss"


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else lambda: None


@dataclass(frozen=True)
class Baselines:
    """(a) the Context loop's rate on the CPU and Reference platforms and (b) the pool's
    rate per batch size (evaluations/s)."""

    loop: float
    reference_loop: float
    pool: dict[int, float]


def measure_baselines(
    molecule: Molecule, x_all: torch.Tensor, args: argparse.Namespace
) -> Baselines:
    """Rates of (a) and (b); measured before any torch work, whose idle OpenMP threads
    would otherwise spin on the cores that OpenMM needs."""
    baseline_x = x_all[: args.baseline_configs].numpy()
    cpu = _sync(torch.device("cpu"))
    rates = []
    for platform in ("CPU", "Reference"):
        loop = context_loop(molecule.system, platform)
        rates.append(
            best_rate(lambda loop=loop: loop(baseline_x), len(baseline_x), args.repeats, 0.0, cpu)
        )
    pool_rates = {}
    if not args.no_pool:
        with OpenMMEnergy(molecule.system, TEMPERATURE, n_workers=args.workers) as pool:
            for batch in args.batches:
                x = x_all[:batch]
                pool_rates[batch] = best_rate(
                    lambda x=x: pool.energy_and_force(x), batch, args.repeats, args.min_seconds, cpu
                )
    return Baselines(rates[0], rates[1], pool_rates)


def benchmark_molecule(
    molecule: Molecule, x_all: torch.Tensor, baselines: Baselines, args: argparse.Namespace
) -> None:
    """Print the table of one system."""
    print(
        f"\n{molecule.name}: {molecule.system.getNumParticles()} atoms; "
        f"(a) OpenMM Context loop (CPU, 1 thread): {baselines.loop:,.0f} evaluations/s; "
        f"(a*) the same on Reference: {baselines.reference_loop:,.0f} evaluations/s"
    )
    print(
        f"{'device':6s} {'dtype':8s} {'mode':8s} {'batch':>6s} {'torch e+f/s':>13s} {'x (a)':>8s} "
        f"{'x (a*)':>8s} {'(b) pool/s':>11s} {'x (b)':>7s} {'peak MiB':>9s}"
    )
    for device_name in args.devices:
        for dtype_name in args.dtypes:
            for mode in args.modes:
                setting = (device_name, dtype_name, mode)
                _benchmark_setting(molecule, args, x_all, baselines, setting)


def _benchmark_setting(
    molecule: Molecule,
    args: argparse.Namespace,
    x_all: torch.Tensor,
    baselines: Baselines,
    setting: tuple[str, str, str],
) -> None:
    """One table row per batch size for (device, dtype, mode)."""
    pool_rates = baselines.pool
    device_name, dtype_name, mode = setting
    device, dtype = torch.device(device_name), getattr(torch, dtype_name)
    ff = TorchForceField.from_openmm(
        molecule.system,
        TEMPERATURE,
        device=device,
        dtype=dtype,
        chunk_size=args.chunk_size,
        compile=mode == "compiled",
    )
    for batch in args.batches:
        x = x_all[:batch].to(device, dtype)
        rate = best_rate(
            lambda x=x: ff.energy_and_force(x), batch, args.repeats, args.min_seconds, _sync(device)
        )
        memory, _ = peak_memory(lambda x=x: ff.energy_and_force(x), device)
        pool = pool_rates.get(batch)
        pool_text = f"{pool:11,.0f} {rate / pool:7.1f}" if pool else f"{'-':>11s} {'-':>7s}"
        print(
            f"{device_name:6s} {dtype_name:8s} {mode:8s} {batch:6d} {rate:13,.0f} "
            f"{rate / baselines.loop:8.1f} {rate / baselines.reference_loop:8.1f} "
            f"{pool_text} {memory:9.1f}",
            flush=True,
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024, 8192])
    parser.add_argument(
        "--dtypes", nargs="+", choices=["float32", "float64"], default=["float64", "float32"]
    )
    default_devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=default_devices)
    parser.add_argument(
        "--modes", nargs="+", choices=["eager", "compiled"], default=["eager", "compiled"]
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="processes of the OpenMMEnergy pool (b)"
    )
    parser.add_argument("--no-pool", action="store_true", help="skip the OpenMMEnergy pool (b)")
    parser.add_argument("--chunk-size", type=int, default=None, help="TorchForceField chunk_size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=0.2, help="per timing")
    parser.add_argument(
        "--baseline-configs", type=int, default=256, help="configurations timed in (a)"
    )
    parser.add_argument("--noise", type=float, default=0.01, help="perturbation of the start, nm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--xml", type=Path, default=None, help="read serialized Systems from here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, openmm {openmm.__version__}, {torch.get_num_threads()} torch "
        f"thread(s), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        + (f", {torch.cuda.get_device_name()}" if "cuda" in args.devices else "")
    )
    molecules = load_molecules(args.systems, args.xml)
    batch = max(args.batches)
    configurations = [perturbed(m.positions, batch, args.noise, args.seed) for m in molecules]
    baselines = [
        measure_baselines(m, x, args) for m, x in zip(molecules, configurations, strict=True)
    ]
    for molecule, x, baseline in zip(molecules, configurations, baselines, strict=True):
        benchmark_molecule(molecule, x, baseline, args)


if __name__ == "__main__":
    main()
