"""A trained generator at a second temperature: the amortised free energy at T ≠ T₀.

A flow trained for the Boltzmann distribution at T₀ is a proposal for the distribution at
any T it overlaps (:meth:`~boltzgen.samplers.importance.BoltzmannGenerator.at_temperature`):
drawn from q and weighed by w = exp(−u_T(x)) / q(x), u_T = u · T₀/T, it estimates ΔF at T
for the cost of its draws alone — the training is already paid. How far T may move from T₀
is for the weights to say (the Kish ESS and the Pareto k̂ of the result, and the estimate's
convergence flag): heating spreads the target beyond q's tails, cooling concentrates it in
q's modes.

:func:`at_second_temperature` reloads the finished generator of a run's task folder (it
never trains), loads the task's system with ``temperature`` overridden — so that its
reference is the one at T (exact for the toy systems; a stored reference set is read only
when made at T) — and scores the draws as the runner scores any task
(:func:`boltzgen.runner.evaluate.evaluate`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from boltzgen.records.files import read_verified
from boltzgen.runner.evaluate import evaluate
from boltzgen.runner.methods.base import to_cpu
from boltzgen.runner.system_specs import load_task_system
from boltzgen.runner.trained import load_trained_generator, task_system_spec
from boltzgen.samplers.importance import BoltzmannGenerator


@dataclass(frozen=True)
class SecondTemperatureEstimate:
    """One free energy of a trained task's generator, weighed at another temperature.

    Attributes:
        task: the task folder whose generator was reused.
        method: the task's method label.
        seed: the task's seed.
        trained_at: the temperature the generator was trained for (T₀, the card's units).
        temperature: the temperature it was weighed at (T).
        name: the free energy, ``<b>_vs_<a>``.
        value: ΔF at T in kT (``nan`` when a state got no draw).
        stderr: its standard error, ``None`` when the estimate is not converged.
        reference: the reference ΔF at T, ``None`` when the system has none there.
        converged: the runner's convergence flag of the estimate.
        n_draws: the draws, one target evaluation each: the whole cost of this estimate.
        ess_fraction: Kish ESS of the draws over their number.
        pareto_k: Pareto k̂ of the log-weights.
        wall_s: seconds the draws took.
    """

    task: str
    method: str
    seed: int
    trained_at: float
    temperature: float
    name: str
    value: float
    stderr: float | None
    reference: float | None
    converged: bool
    n_draws: int
    ess_fraction: float
    pareto_k: float | None
    wall_s: float

    @property
    def error(self) -> float | None:
        """|ΔF − reference| in kT, ``None`` without a reference or a finite estimate."""
        if self.reference is None or not math.isfinite(self.value):
            return None
        return abs(self.value - self.reference)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error": self.error}


def at_second_temperature(
    task_dir: Path,
    temperatures: Sequence[float],
    n_draws: int,
    seed: int = 0,
    progress: bool = False,
) -> list[SecondTemperatureEstimate]:
    """Every free energy of the task's system at each of ``temperatures`` from ``n_draws``
    draws of the task's trained generator (loaded once; the same latent draws at each T).

    Raises:
        ValueError: the task trains no generator or its training has not finished
            (:func:`~boltzgen.runner.trained.load_trained_generator`), or ``n_draws < 1``.
    """
    settings = json.loads(read_verified(task_dir / "checkpoint" / "settings.json"))["settings"]
    _, trained = load_trained_generator(task_dir)
    model = trained.model
    return [
        estimate
        for temperature in temperatures
        for estimate in _estimates(task_dir, settings, model, temperature, n_draws, seed, progress)
    ]


def _estimates(
    task_dir: Path,
    settings: dict[str, Any],
    model: BoltzmannGenerator,
    temperature: float,
    n_draws: int,
    seed: int,
    progress: bool,
) -> list[SecondTemperatureEstimate]:
    """The free energies of ``model`` weighed at ``temperature``, scored against the task's
    system there."""
    spec = task_system_spec(task_dir, temperature=temperature)
    system = load_task_system(spec, backend=settings.get("energy_backend"))
    device = next(model.parameters()).device
    draws = torch.Generator(device=device).manual_seed(seed)
    samples = to_cpu(model.at_temperature(temperature).sample(n_draws, draws, progress=progress))
    scored = evaluate(system, samples, None, torch.Generator().manual_seed(seed))
    common = {
        "task": str(task_dir),
        "method": task_dir.parent.name,
        "seed": int(settings["seed"]),
        "trained_at": float(model.energy.temperature),
        "temperature": float(temperature),
        "n_draws": n_draws,
        "ess_fraction": float(scored["ess_fraction"]),
        "pareto_k": scored["metrics"].get("pareto_k"),
        "wall_s": float(samples.cost.wall_s),
    }
    return [
        SecondTemperatureEstimate(
            name=name,
            value=float(entry["value"]),
            stderr=entry["stderr"],
            reference=entry["reference"],
            converged=bool(entry["converged"]),
            **common,
        )
        for name, entry in scored["free_energies"].items()
    ]
