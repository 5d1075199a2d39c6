"""How fast is TorchForceField? Energy+force evaluations per second, in turns with OpenMM.

For each system (alanine dipeptide in vacuum and in implicit solvent, alanine
hexapeptide in implicit solvent by default), each setting (device, dtype, mode) and each
batch size, the script alternates ``--repeats`` turns of

1. OpenMM's one-thread loop: one Context, ``setPositions`` +
   ``getState(getEnergy=True, getForces=True)`` per configuration, on the CPU platform
   (``Threads=1``) and on the Reference platform; the faster of the two in that turn is
   "OpenMM's best one-thread loop";
2. ``TorchForceField.energy_and_force`` on a batch (configurations already on the
   device; compiled kernels warmed up before the first turn),

each timed for at least ``--min-seconds``, so that both see the same machine load. It
prints, per row, the median rate of each and the ratio torch / best loop as
``median [min–max]`` over the turns (each turn's ratio uses that turn's rates). Modes:
``eager``, ``compiled`` (``compile=True``) and ``mixed`` (float32 compiled with float64
accumulation of the total; give ``--dtypes float32``). ``--threads`` sets torch's
threads (default 1: one core, like the loop).

    .venv/bin/python benchmarks/energy_throughput.py
    .venv/bin/python benchmarks/energy_throughput.py --systems alanine_dipeptide_vacuum \\
        --batches 1024 4096 --dtypes float32 --modes compiled --repeats 7

``--xml DIR`` reads ``DIR/<system>.xml`` (``openmm.XmlSerializer``) and
``DIR/<system>.npy`` (positions, nm) instead of the system cards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
import torch
from openmm import unit

from boltzgen.energies.forcefield import TorchForceField

SYSTEMS = (
    "alanine_dipeptide_vacuum",
    "alanine_dipeptide_implicit",
    "alanine_hexapeptide_implicit",
)
TEMPERATURE = 300.0


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
        close = getattr(card.energy, "close", None)
        if close is not None:
            close()
    return molecules


def perturbed(x0: np.ndarray, batch: int, noise: float, seed: int) -> torch.Tensor:
    """``[batch, N, 3]`` float64: ``x0`` plus Gaussian noise of ``noise`` nm."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.as_tensor(x0, dtype=torch.float64)
    return x0 + noise * torch.randn(batch, *x0.shape, dtype=torch.float64, generator=g)


def rate(evaluate: Callable[[], object], count: int, min_seconds: float, sync: Callable) -> float:
    """Configurations per second of ``evaluate`` (``count`` each), timed ≥ ``min_seconds``."""
    calls, start = 0, time.perf_counter()
    while True:
        evaluate()
        sync()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count * calls / elapsed


def context_loop(system: openmm.System, platform: str, x: np.ndarray) -> Callable[[], None]:
    """One Context on ``platform`` (CPU with 1 thread) evaluating the rows of ``x``."""
    properties = {"Threads": "1"} if platform == "CPU" else {}
    context = openmm.Context(
        system,
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName(platform),
        properties,
    )

    def evaluate() -> None:
        for row in x:
            context.setPositions(row)
            state = context.getState(getEnergy=True, getForces=True)
            state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            state.getForces(asNumpy=True)

    return evaluate


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else lambda: None


@dataclass(frozen=True)
class Turns:
    """Rates (evaluations/s) of each turn: OpenMM's best loop and torch."""

    loop: list[float]
    torch: list[float]

    def ratio_text(self) -> str:
        ratios = sorted(t / b for t, b in zip(self.torch, self.loop, strict=True))
        return f"{statistics.median(ratios):7.1f} [{ratios[0]:.1f}–{ratios[-1]:.1f}]"


def take_turns(
    loops: list[Callable[[], None]],
    loop_count: int,
    evaluate: Callable[[], object],
    batch: int,
    args: argparse.Namespace,
    sync: Callable[[], None],
) -> Turns:
    """Alternate the OpenMM loops and torch ``args.repeats`` times."""
    best_loop, torch_rates = [], []
    for _ in range(args.repeats):
        best_loop.append(
            max(rate(loop, loop_count, args.min_seconds, lambda: None) for loop in loops)
        )
        torch_rates.append(rate(evaluate, batch, args.min_seconds, sync))
    return Turns(best_loop, torch_rates)


def force_field(molecule: Molecule, setting: tuple[str, str, str], args) -> TorchForceField:
    device_name, dtype_name, mode = setting
    return TorchForceField.from_openmm(
        molecule.system,
        TEMPERATURE,
        device=device_name,
        dtype=getattr(torch, dtype_name),
        chunk_size=args.chunk_size,
        compile=mode != "eager",
        accumulate=torch.float64 if mode == "mixed" else None,
    )


def benchmark_molecule(molecule: Molecule, args: argparse.Namespace) -> None:
    """Print the table of one system."""
    x_all = perturbed(molecule.positions, max(args.batches), args.noise, args.seed)
    loop_x = x_all[: args.baseline_configs].numpy()
    loops = [context_loop(molecule.system, p, loop_x) for p in ("CPU", "Reference")]
    print(f"\n{molecule.name}: {molecule.system.getNumParticles()} atoms")
    print(
        f"{'device':6s} {'dtype':8s} {'mode':8s} {'batch':>6s} {'OpenMM loop/s':>14s} "
        f"{'torch e+f/s':>13s} {'ratio median [min–max]':>24s}"
    )
    for device_name in args.devices:
        for dtype_name in args.dtypes:
            for mode in args.modes:
                setting = (device_name, dtype_name, mode)
                ff = force_field(molecule, setting, args)
                device = torch.device(device_name)
                for batch in args.batches:
                    x = x_all[:batch].to(device, getattr(torch, dtype_name))
                    evaluate = lambda x=x, ff=ff: ff.energy_and_force(x)  # noqa: E731
                    evaluate()  # compiles, if compiled
                    turns = take_turns(loops, len(loop_x), evaluate, batch, args, _sync(device))
                    print(
                        f"{device_name:6s} {dtype_name:8s} {mode:8s} {batch:6d} "
                        f"{statistics.median(turns.loop):14,.0f} "
                        f"{statistics.median(turns.torch):13,.0f} {turns.ratio_text():>24s}",
                        flush=True,
                    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument(
        "--dtypes", nargs="+", choices=["float32", "float64"], default=["float64", "float32"]
    )
    default_devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=default_devices)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["eager", "compiled", "mixed"],
        default=["eager", "compiled"],
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--chunk-size", type=int, default=None, help="TorchForceField chunk_size")
    parser.add_argument("--repeats", type=int, default=5, help="turns per row")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="per timing")
    parser.add_argument(
        "--baseline-configs", type=int, default=200, help="configurations per OpenMM loop"
    )
    parser.add_argument("--noise", type=float, default=0.01, help="perturbation of the start, nm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--xml", type=Path, default=None, help="read serialized Systems from here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, openmm {openmm.__version__}, {torch.get_num_threads()} torch "
        f"thread(s), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        + (f", {torch.cuda.get_device_name()}" if "cuda" in args.devices else "")
    )
    for molecule in load_molecules(args.systems, args.xml):
        benchmark_molecule(molecule, args)


if __name__ == "__main__":
    main()
