"""The MD method: OpenMM Langevin dynamics from the card's initial positions (one chain).

Molecules and 3-D particle models run OpenMM's Langevin integrator; 2-D particle models run
it in the plane z = 0 (``System.md_system``).

Frames are saved every ``frame_interval`` steps after ``n_equilibration`` steps; the run
resumes from ``checkpoint/md.npz`` and writes ``trajectory.dcd`` for molecules.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from boltzgen.records import WeightedSamples
from boltzgen.runner.methods.base import MethodContext, library_config
from boltzgen.runner.methods.budget import largest_within, too_small
from boltzgen.samplers.md import MDConfig, MolecularDynamics, md_evaluations, write_trajectory
from boltzgen.systems import System


@dataclass(frozen=True)
class MDParams(MDConfig):
    """The integrator's settings (:class:`~boltzgen.samplers.md.MDConfig`) and the run's length.

    ``threads`` and ``checkpoint_every`` are not settings: the task's thread count and a
    checkpoint every tenth of the frames.
    """

    threads: int | None = field(default=None, init=False)
    checkpoint_every: int = field(default=1000, init=False)
    n_frames: int = 1000
    n_equilibration: int = 10_000

    def config(self) -> MDConfig:
        """The integrator configuration of this run."""
        return library_config(
            self,
            MDConfig,
            threads=torch.get_num_threads(),
            checkpoint_every=max(1, self.n_frames // 10),
        )


def run(
    system: System, params: MDParams, generator: torch.Generator, context: MethodContext
) -> WeightedSamples:
    """Equilibrate, then save ``n_frames`` frames (checkpointed every tenth of them)."""
    md_system = system.md_system  # built on each access for 2-D models: read once
    if md_system is None:
        raise ValueError(f"method md needs an OpenMM system; {system.name} has none")
    openmm_system, dimensions = md_system
    md = MolecularDynamics(openmm_system, system.temperature, params.config(), dimensions)
    checkpoint = None if context.checkpoint is None else context.checkpoint / "md.npz"
    samples = md.sample(
        system.initial_positions,
        params.n_frames,
        generator,
        params.n_equilibration,
        context.progress,
        checkpoint,
    )
    if system.topology is not None and context.output is not None:
        write_trajectory(samples, system.topology, context.output)
    return samples


def fit_budget(params: MDParams, budget: int, system: System) -> MDParams:
    """As many frames as the budget covers after equilibration."""
    frames = largest_within(
        lambda n: md_evaluations(n, params.frame_interval, params.n_equilibration), budget
    )
    if frames < 1:
        raise too_small(
            "md", budget, md_evaluations(1, params.frame_interval, params.n_equilibration)
        )
    return replace(params, n_frames=frames)
