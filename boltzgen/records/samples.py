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

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzgen.records.cost import Cost
from boltzgen.records.files import write_atomic, write_json


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
        ``n_chains``, ``n_runs`` and ``info``. Both are written atomically with their
        SHA-256 beside them (``NAME.sha256``), ``result.json`` last: a folder whose
        ``result.json`` matches its checksum holds a complete result. Returns the directory.
        """
        directory = Path(directory)
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            x=self.x.detach().cpu().numpy(),
            log_weights=self.log_weights.detach().cpu().numpy(),
            energies=self.energies.detach().cpu().numpy(),
        )
        write_atomic(directory / "samples.npz", buffer.getvalue(), checksum=True)
        record = dict(result or {})
        record.setdefault("n_samples", len(self))
        record["cost"] = self.cost.to_dict()
        record["n_chains"] = self.n_chains
        record["n_runs"] = self.n_runs
        record["info"] = self.info
        write_json(directory / "result.json", record, checksum=True)
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
