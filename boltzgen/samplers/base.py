"""What every sampler returns: :class:`WeightedSamples` with its :class:`Cost`.

A trained Boltzmann generator, HMC, MD or SMC all return the same record:
configurations ``x: [n, *event_shape]``, log importance weights ``[n]`` (zeros for
MCMC and MD), reduced energies ``[n]``, the cost paid (energy and force
evaluations and wall seconds, split into training and sampling) and a free-form
``info`` dictionary (acceptance, ESS history, ...).

Samples of MCMC chains are stored step-major: with ``n_chains = C`` the samples
are ``x.view(T, C, ...)``, sample ``t * C + c`` being step ``t`` of chain ``c``.
``n_chains = None`` means independent draws.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from boltzgen.energies.base import Energy


@dataclass
class Cost:
    """Energy and force evaluations (configurations) and wall seconds spent.

    ``energy_evals`` / ``force_evals`` / ``wall_s`` are the sampling cost;
    the ``train_*`` fields are what training the generator cost beforehand.
    """

    energy_evals: int = 0
    force_evals: int = 0
    wall_s: float = 0.0
    train_energy_evals: int = 0
    train_force_evals: int = 0
    train_wall_s: float = 0.0

    @property
    def total_energy_evals(self) -> int:
        """Every target evaluation, energy or force, training included."""
        return (
            self.energy_evals + self.force_evals + self.train_energy_evals + self.train_force_evals
        )

    @property
    def total_wall_s(self) -> float:
        return self.wall_s + self.train_wall_s

    def with_training(self, training: Cost) -> Cost:
        """This sampling cost with ``training``'s sampling fields as its training cost."""
        return Cost(
            self.energy_evals,
            self.force_evals,
            self.wall_s,
            self.train_energy_evals + training.energy_evals + training.train_energy_evals,
            self.train_force_evals + training.force_evals + training.train_force_evals,
            self.train_wall_s + training.wall_s + training.train_wall_s,
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cost:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


class CostMeter:
    """Measures what a block of code costs on an energy: evaluations and wall time."""

    def __init__(self, energy: Energy):
        self.energy = energy
        self.cost = Cost()

    @contextmanager
    def measure(self) -> Iterator[Cost]:
        before = self.energy.counter.snapshot()
        start = time.perf_counter()
        try:
            yield self.cost
        finally:
            spent = self.energy.counter.since(before)
            self.cost.energy_evals += spent.energy
            self.cost.force_evals += spent.force
            self.cost.wall_s += time.perf_counter() - start


def _jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as strict JSON: tensors and arrays as lists, non-finite floats as null."""
    path.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


@dataclass
class WeightedSamples:
    """Configurations with log importance weights, energies, cost and diagnostics.

    Attributes:
        x: ``[n, *event_shape]`` configurations.
        log_weights: ``[n]`` unnormalised log importance weights (zeros for MCMC).
        energies: ``[n]`` reduced target energies u(x).
        cost: what producing them cost, training included.
        info: sampler diagnostics (JSON-serialisable after conversion).
        n_chains: number of MCMC chains (samples step-major), ``None`` for
            independent draws.
        n_runs: number of independent runs of a sampler whose particles are correlated
            within a run (SMC after resampling), stored run after run in equal blocks;
            errors then come from the spread between runs. ``None`` otherwise.
    """

    x: Tensor
    log_weights: Tensor
    energies: Tensor
    cost: Cost = field(default_factory=Cost)
    info: dict[str, Any] = field(default_factory=dict)
    n_chains: int | None = None
    n_runs: int | None = None

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.log_weights.shape != (n,) or self.energies.shape != (n,):
            raise ValueError(
                f"log_weights and energies must have shape [{n}], got "
                f"{list(self.log_weights.shape)} and {list(self.energies.shape)}"
            )
        if self.n_chains is not None and (self.n_chains < 1 or n % self.n_chains):
            raise ValueError(f"{n} samples do not split into {self.n_chains} chains")
        if self.n_runs is not None and (self.n_runs < 1 or n % self.n_runs):
            raise ValueError(f"{n} samples do not split into {self.n_runs} runs")

    def __len__(self) -> int:
        return self.x.shape[0]

    def __repr__(self) -> str:
        shape = "×".join(map(str, self.x.shape[1:]))
        lw = torch.nan_to_num(self.log_weights.double(), nan=-torch.inf)
        ess = float(torch.exp(2 * lw.logsumexp(0) - (2 * lw).logsumexp(0))) if len(self) else 0.0
        kind = f"{self.n_chains} chains" if self.is_chain else "independent draws"
        return (
            f"WeightedSamples(n={len(self)} of {shape}, {kind}, Kish ESS {ess:.1f}, "
            f"cost {self.cost.total_energy_evals} evaluations / {self.cost.total_wall_s:.1f} s)"
        )

    def resample(self, n: int, generator: torch.Generator) -> WeightedSamples:
        """``n`` equally weighted configurations drawn by the normalised weights.

        Systematic resampling (Kitagawa 1996; Douc, Cappé, Moulines 2005): one uniform
        u ~ U[0, 1/n), then index i is taken once for each (u + k)/n, k < n, that falls in
        its slice of the cumulative weights. Draws with zero weight are never taken;
        equal weights return each draw ⌊n/len⌋ or ⌈n/len⌉ times. The result keeps the
        cost and carries zero log-weights (it is no longer a chain).
        """
        if n < 1:
            raise ValueError(f"n must be ≥ 1, got {n}")
        if not bool(torch.isfinite(self.log_weights).any()):
            raise ValueError("every log-weight is −inf or NaN: nothing to resample")
        finite = torch.nan_to_num(self.log_weights, nan=-torch.inf)
        w = torch.softmax(finite.to(torch.float64), dim=0).cpu()
        u = torch.rand((), dtype=torch.float64, generator=generator)
        points = (u + torch.arange(n, dtype=torch.float64)) / n
        cumulative = torch.cumsum(w, dim=0)
        index = torch.searchsorted(cumulative, points).clamp(max=len(self) - 1)
        index = index.to(self.x.device)
        return WeightedSamples(
            self.x[index],
            torch.zeros(n, dtype=self.log_weights.dtype, device=self.log_weights.device),
            self.energies[index],
            self.cost,
            {"resampled_from": len(self)},
        )

    def to_mdtraj(self, system: Any) -> Any:
        """The configurations as an ``mdtraj.Trajectory`` on ``system.topology`` (nm).

        The weights are not part of a trajectory: keep ``log_weights`` beside it, or
        call :meth:`resample` first for equally weighted frames.
        """
        import mdtraj

        if getattr(system, "topology", None) is None:
            raise ValueError(
                f"{getattr(system, 'name', system)} has no topology: to_mdtraj needs a molecule"
            )
        n_atoms = system.topology.n_atoms
        if tuple(self.x.shape[1:]) != (n_atoms, 3):
            raise ValueError(
                f"x must be [n, {n_atoms}, 3] for this topology, got {list(self.x.shape)}"
            )
        return mdtraj.Trajectory(self.x.detach().cpu().numpy(), system.topology)

    @property
    def is_chain(self) -> bool:
        return self.n_chains is not None

    def chains(self, values: Tensor) -> Tensor:
        """``values: [n, ...]`` reshaped to ``[T, C, ...]`` (a single chain if independent)."""
        c = self.n_chains or 1
        return values.reshape((values.shape[0] // c, c, *tuple(values.shape[1:])))

    def save(self, directory: str | Path, result: Mapping[str, Any] | None = None) -> Path:
        """Write ``samples.npz`` (x, log_weights, energies) and ``result.json``.

        ``result.json`` holds ``result`` (if given) plus ``n_samples``, ``cost``,
        ``n_chains``, ``n_runs`` and ``info``. Returns the directory.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            directory / "samples.npz",
            x=self.x.detach().cpu().numpy(),
            log_weights=self.log_weights.detach().cpu().numpy(),
            energies=self.energies.detach().cpu().numpy(),
        )
        record = dict(result or {})
        record.setdefault("n_samples", len(self))
        record["cost"] = self.cost.to_dict()
        record["n_chains"] = self.n_chains
        record["n_runs"] = self.n_runs
        record["info"] = self.info
        write_json(directory / "result.json", record)
        return directory

    @classmethod
    def load(cls, path: str | Path) -> WeightedSamples:
        """Read samples written by :meth:`save` (a directory or its ``samples.npz``)."""
        path = Path(path)
        directory = path if path.is_dir() else path.parent
        npz = directory / "samples.npz"
        if not npz.exists():
            raise FileNotFoundError(f"{npz} does not exist: not a samples directory")
        with np.load(npz) as data:
            x, lw, u = (torch.from_numpy(data[k]) for k in ("x", "log_weights", "energies"))
        record: dict[str, Any] = {}
        if (directory / "result.json").exists():
            record = json.loads((directory / "result.json").read_text())
        return cls(
            x,
            lw,
            u,
            Cost.from_dict(record.get("cost", {})),
            record.get("info", {}),
            record.get("n_chains"),
            record.get("n_runs"),
        )


class Sampler(Protocol):
    """Anything that draws configurations of a target and says what it cost."""

    def sample(self, n: int, generator: torch.Generator) -> WeightedSamples:
        """Draw ``n`` weighted samples using only ``generator`` for randomness."""
        ...
