"""A target distribution with its named states: the :class:`System` a card builds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.exact import ExactReference
from boltzgen.energies.particles import ParticleEnergy
from boltzgen.energies.particles.openmm_system import to_openmm
from boltzgen.observables.kinds import Observable
from boltzgen.observables.states import State
from boltzgen.systems.references import SystemReferences

DISPERSED_TEMPERATURE_FACTOR = 2.0
"""Chains of exactly solvable systems start from draws at this multiple of T."""


@dataclass
class System(SystemReferences):
    """A target distribution with its named states and reference answers.

    Attributes:
        name: catalog name.
        energy: the reduced energy u(x).
        states: named state indicators ``x -> bool[B]``.
        free_energy_pairs: ``(a, b)`` pairs reported as ``b_vs_a`` = −ln(P_b/P_a).
        initial_positions: a valid configuration ``[*event_shape]``.
        reference_kind: the card's reference route (``md``, ``pt``, ``exact`` or ``none``);
            exact answers come from the energy's capability, see
            :attr:`has_exact_reference`.
        free_energies_from: where the reference ΔF comes from when not from the frames'
            set: ``umbrella`` (``DATA/<system>/umbrella/manifest.json``), else ``None``.
        topology: mdtraj topology for molecules, ``None`` otherwise.
        openmm_system: the openmm.System behind OpenMM-backed energies, else ``None``.
        observables: named observables reported in ``result.json`` (lattice systems).
    """

    name: str
    energy: Energy
    states: dict[str, State]
    free_energy_pairs: list[tuple[str, str]]
    initial_positions: Tensor
    reference_kind: str = "none"
    free_energies_from: str | None = None
    description: str = ""
    card_path: Path | None = None
    topology: Any = None
    openmm_system: Any = None
    card: dict[str, Any] = field(default_factory=dict)
    observables: dict[str, Observable] = field(default_factory=dict)

    @property
    def temperature(self) -> float:
        return self.energy.temperature

    @property
    def md_system(self) -> tuple[Any, int] | None:
        """What Langevin dynamics integrates: the ``openmm.System`` and the dimensions its
        particles move in — the card's own system (3), or a 2-D particle model laid in the
        plane z = 0 of an OpenMM box (2; it is no ``openmm_system``, whose users expect 3-D
        positions); ``None`` where there is neither."""
        if self.openmm_system is not None:
            return self.openmm_system, 3
        if isinstance(self.energy, ParticleEnergy) and self.energy.box.numel() == 2:
            return to_openmm(self.energy), 2
        return None

    @property
    def box(self) -> Tensor | None:
        """Side lengths ``[d]`` of the periodic box of a particle system, else ``None``."""
        return getattr(self.energy, "box", None)

    @property
    def species(self) -> Tensor | None:
        """Species index per particle ``[N]`` of a particle system, else ``None``."""
        return getattr(self.energy, "species", None)

    def dispersed_starts(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` starting configurations ``[n, *event_shape]`` for independent chains.

        Convergence diagnostics (split-R̂) need chains started from points spread wider
        than the target, so that chains which fail to forget their start disagree
        (Gelman & Rubin 1992; Vehtari et al. 2021). An energy with an exact sampler draws
        them from itself at twice the system's temperature (overdispersed, every basin
        represented); particle systems start each chain from its own relaxed random
        lattice (:meth:`~boltzgen.energies.particles.ParticleEnergy.random_starts`, a quench:
        colder and more ordered than the liquid, and different from chain to chain); other
        systems start every chain from ``initial_positions``. These draws are set-up, not
        sampling: they are not charged.
        """
        if isinstance(self.energy, ParticleEnergy):
            return self.energy.random_starts(n, generator).to(self.initial_positions)
        hot = self.energy.at_temperature(DISPERSED_TEMPERATURE_FACTOR * self.temperature)
        if isinstance(hot, ExactReference):
            return hot.sample_exact(n, generator).to(self.initial_positions)
        return self.initial_positions.expand(n, *self.energy.event_shape).clone()
