"""``boltzgen reference SYSTEM --method md|pt|umbrella``: a system's reference data set.

The routes: MD in OpenMM (``md``), parallel tempering in OpenMM or torch (``pt``, the torch
route checkpointed and resumable with ``--resume``) and umbrella sampling along the card's
collective variable in torch (``umbrella``); each writes a set under the data folder
(``--data`` or ``BOLTZGEN_DATA``) and prints the free energies it estimates. The code of each
route is in :mod:`boltzgen.reference`; this module turns the command line into its settings.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from boltzgen.errors import ConfigError
from boltzgen.records.reference_sets import reference_dir
from boltzgen.reference import (
    MIN_ENTRIES,
    MDReferenceSettings,
    PTReferenceSettings,
    ReferenceRefused,
    TorchPTReferenceSettings,
    UmbrellaSettings,
    generate_md_reference,
    generate_pt_reference,
    generate_torch_pt_reference,
    generate_umbrella_reference,
    load_reference,
)
from boltzgen.reference.pt_checkpoint import checkpoint_path, checkpointed_settings
from boltzgen.runner.quiet import quiet_imports
from boltzgen.systems import load_system, md_reference_value


def add_reference_parser(sub: Any) -> None:
    """``boltzgen reference``: its MD and PT options."""
    ref = sub.add_parser("reference", help="generate a system's reference data set")
    ref.add_argument("system", help="catalog name or path to a card")
    ref.add_argument("--method", choices=("md", "pt", "umbrella"), default="md")
    ref.add_argument(
        "--backend",
        choices=("openmm", "torch"),
        default=None,
        help="pt: openmmtools replica exchange or torch parallel tempering on the system's "
        "energy (default: openmm for OpenMM-backed systems, torch for others)",
    )
    ref.add_argument("--ns", type=float, default=1.0, help="md: simulated nanoseconds")
    ref.add_argument(
        "--equilibration-ps",
        type=float,
        default=MDReferenceSettings.equilibration_ps,
        help="md: picoseconds simulated from the start before the first kept frame",
    )
    ref.add_argument("--iterations", type=int, default=2000, help="pt: exchange iterations")
    ref.add_argument(
        "--steps-per-iteration",
        type=int,
        default=None,
        help="pt: MD steps per exchange (openmm, default 500) or leapfrog steps per HMC "
        "move (torch, default 10)",
    )
    ref.add_argument("--temperatures", type=int, default=8, help="pt: ladder size")
    ref.add_argument(
        "--t-max",
        type=float,
        default=None,
        help="pt: hottest temperature (default 600 K with openmm, twice the system's with torch)",
    )
    ref.add_argument(
        "--discard",
        type=int,
        default=None,
        help="pt: first iterations dropped as equilibration (default: a tenth, at most 100)",
    )
    ref.add_argument("--chains", type=int, default=8, help="pt, torch: independent chains")
    ref.add_argument(
        "--step-size", type=float, default=0.1, help="pt, torch: initial HMC step, then tuned"
    )
    ref.add_argument(
        "--move", choices=("hmc", "langevin"), default="hmc", help="pt, torch: HMC or MALA moves"
    )
    ref.add_argument(
        "--dtype", choices=("float64", "float32"), default="float64", help="pt, torch: precision"
    )
    ref.add_argument("--device", default="cpu", help="pt, torch: cpu, cuda or auto")
    ref.add_argument("--thin", type=int, default=1, help="pt, torch: keep every n-th step")
    ref.add_argument(
        "--max-minutes", type=float, default=None, help="pt, torch: stop sampling after this"
    )
    ref.add_argument(
        "--resume",
        action="store_true",
        help="pt, torch: continue the checkpointed run (same settings; --iterations is the "
        "new total, --max-minutes this invocation's limit)",
    )
    ref.add_argument(
        "--min-entries",
        type=int,
        default=MIN_ENTRIES,
        help="pt, torch: refuse unless the T_0 chains entered each named state this often",
    )
    ref.add_argument("--windows", type=int, default=36, help="umbrella: windows along s")
    ref.add_argument(
        "--exchange-every",
        type=int,
        default=1,
        help="umbrella: swap configurations between neighbouring windows after every "
        "N-th HMC step (0: never)",
    )
    ref.add_argument(
        "--max-samples",
        type=int,
        default=100_000,
        help="umbrella: at most this many subsampled samples enter MBAR (strides are raised "
        "beyond each window's statistical inefficiency when more would)",
    )
    ref.add_argument(
        "--start-from",
        choices=("structure", "reference"),
        default="structure",
        help="umbrella: walkers start from the card's structure, or from the card's MD/PT "
        "reference frames nearest to each window's centre",
    )
    ref.add_argument(
        "--spring",
        type=float,
        default=None,
        help="umbrella: spring in kT per unit² of s (default 4/Δ², Δ the window spacing)",
    )
    ref.add_argument(
        "--cv-range",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="umbrella: range of the window centres for a non-periodic s",
    )
    ref.add_argument("--frames", type=int, default=10_000, help="frames kept (evenly spaced)")
    ref.add_argument("--seed", type=int, default=0)
    ref.add_argument("--timestep-fs", type=float, default=1.0)
    ref.add_argument("--hydrogen-mass", type=float, default=None, help="amu, repartitioned")
    ref.add_argument("--data", type=Path, default=None, help="data folder (default data/)")


def cmd_reference(args: argparse.Namespace) -> int:
    """Generate the set, print where it went and its free energies; 1 if the route refuses."""
    quiet_imports()
    if args.data is not None:
        os.environ["BOLTZGEN_DATA"] = str(args.data)
    if args.resume and args.method != "pt":
        raise ConfigError("boltzgen reference", "--resume", "applies to --method pt", True)
    system = load_system(args.system)
    try:
        out = ROUTES[args.method](system, args)
    except ReferenceRefused as refused:
        print(f"boltzgen reference: {refused}", file=sys.stderr)
        return 1
    finally:
        system.energy.close()
    print(f"reference set written to {out}")
    for name, (value, stderr, note) in _reference_free_energies(system, args.method, out).items():
        text = "not estimated" if value is None else f"{value:.3f} ± {stderr:.3f} kT"
        print(f"  ΔF {name}: {text} ({note})")
    if system.has_exact_reference:
        print(f"note: {system.name} computes its exact answers; they take precedence over this set")
    elif args.method == "umbrella":
        if system.free_energies_from != "umbrella":
            kind = system.reference_kind
            print(
                f"note: set `reference: {{kind: {kind}, free_energies: umbrella}}` "
                f"in {system.card_path} to score against this ΔF"
            )
    elif system.reference_kind != args.method:
        print(
            f"note: {system.card_path} reads its reference from `{system.reference_kind}`; "
            f"set `reference: {{kind: {args.method}}}` in the card to use this set"
        )
    return 0


def _pt_reference(system: Any, args: argparse.Namespace) -> Path:
    backend = args.backend or ("openmm" if system.openmm_system is not None else "torch")
    if args.resume and backend != "torch":
        raise ConfigError("boltzgen reference", "--resume", "applies to --backend torch", True)
    discard = args.discard if args.discard is not None else _default_discard(system, args)
    if not 0 <= discard < args.iterations:
        raise ConfigError(
            "boltzgen reference",
            "--discard",
            f"must be ≥ 0 and below --iterations ({args.iterations})",
            discard,
        )
    if backend == "torch":
        return _torch_pt_reference(system, args, discard)

    pt = PTReferenceSettings(
        n_temperatures=args.temperatures,
        t_max=600.0 if args.t_max is None else args.t_max,
        n_iterations=args.iterations,
        steps_per_iteration=500 if args.steps_per_iteration is None else args.steps_per_iteration,
        timestep_fs=args.timestep_fs,
        n_discard=discard,
        n_frames=args.frames,
        seed=args.seed,
    )
    return generate_pt_reference(system, pt)


def _default_discard(system: Any, args: argparse.Namespace) -> int:
    """A tenth of the iterations, at most 100; a resumed run keeps its checkpoint's."""
    if args.resume:
        saved = checkpointed_settings(checkpoint_path(reference_dir(system.name, "pt")))
        if saved is not None:
            return int(saved["n_discard"])
    return min(100, args.iterations // 10)


def _torch_pt_reference(system: Any, args: argparse.Namespace, discard: int) -> Path:
    settings = TorchPTReferenceSettings(
        n_temperatures=args.temperatures,
        t_max=args.t_max,
        n_iterations=args.iterations,
        n_leapfrog=10 if args.steps_per_iteration is None else args.steps_per_iteration,
        step_size=args.step_size,
        n_chains=args.chains,
        n_discard=discard,
        n_frames=args.frames,
        seed=args.seed,
        move=args.move,
        thin=args.thin,
        dtype=args.dtype,
        device=args.device,
        min_entries=args.min_entries,
        max_wall_s=None if args.max_minutes is None else 60.0 * args.max_minutes,
    )
    return generate_torch_pt_reference(
        system,
        settings,
        progress=sys.stderr.isatty() or args.max_minutes is not None,
        resume=args.resume,
    )


def _umbrella_reference(system: Any, args: argparse.Namespace) -> Path:
    if args.backend == "openmm":
        raise ConfigError(
            "boltzgen reference",
            "--backend",
            "umbrella runs in torch: use --backend torch",
            "openmm",
        )
    discard = args.discard if args.discard is not None else min(200, args.iterations // 10)
    settings = UmbrellaSettings(
        n_windows=args.windows,
        spring=args.spring,
        cv_range=None if args.cv_range is None else tuple(args.cv_range),
        n_chains=args.chains,
        n_iterations=args.iterations,
        n_discard=discard,
        n_leapfrog=10 if args.steps_per_iteration is None else args.steps_per_iteration,
        step_size=args.step_size,
        thin=args.thin,
        exchange_every=args.exchange_every,
        seed=args.seed,
        dtype=args.dtype,
        device=args.device,
        max_wall_s=None if args.max_minutes is None else 60.0 * args.max_minutes,
        start=args.start_from,
        max_samples=args.max_samples,
    )
    return generate_umbrella_reference(
        system, settings, progress=sys.stderr.isatty() or args.max_minutes is not None
    )


def _md_reference(system: Any, args: argparse.Namespace) -> Path:
    if args.backend == "torch":
        raise ConfigError(
            "boltzgen reference", "--backend", "torch has no md route: use --method pt", "torch"
        )
    if not args.equilibration_ps >= 0:
        raise ConfigError(
            "boltzgen reference", "--equilibration-ps", "must be ≥ 0", args.equilibration_ps
        )
    settings = MDReferenceSettings(
        ns=args.ns,
        n_frames=args.frames,
        equilibration_ps=args.equilibration_ps,
        timestep_fs=args.timestep_fs,
        hydrogen_mass=args.hydrogen_mass,
        seed=args.seed,
    )
    return generate_md_reference(system, settings, progress=sys.stderr.isatty())


def _reference_free_energies(
    system: Any, method: str, out: Path
) -> dict[str, tuple[float | None, float | None, str]]:
    """ΔF of each named pair from the set just written (PT: its MBAR estimates)."""
    import json

    if method in ("pt", "umbrella"):
        stored = json.loads((out / "manifest.json").read_text()).get("free_energies", {})
        note = {True: f"{method}: MBAR", False: f"{method}: MBAR, NOT CONVERGED: halves disagree"}
        return {
            name: (fe.get("value"), fe.get("stderr"), note[fe.get("converged", True)])
            for name, fe in stored.items()
        }

    samples = load_reference(system.name, "md").samples()
    out_values = {}
    for a, b in system.free_energy_pairs:
        ref = md_reference_value(samples, system.states[a], system.states[b])
        out_values[f"{b}_vs_{a}"] = (ref.value, ref.stderr, ref.note)
    return out_values


ROUTES = {"md": _md_reference, "pt": _pt_reference, "umbrella": _umbrella_reference}
