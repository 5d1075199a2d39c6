"""The observable kinds a system card's ``observables: {result_name: kind}`` may name.

An :class:`Observable` is a per-sample series whose weighted mean (or variance) the runner
reports. Most are functions of the configuration alone; an observable of the potential
energy (``of_energy``) reads the reduced energies u = U/T that every sampler already
returns with its samples, so it costs no evaluation. An observable whose estimator relies on
a symmetry of the target (``requires_symmetry``, one of the names in ``Energy.symmetries``)
is accepted only on a card whose energy declares it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from boltzgen.observables import lattice
from boltzgen.observables.particles import energy_per_particle


@dataclass(frozen=True)
class Observable:
    """A series ``[B, ...] -> [B]`` and whether its mean or its variance is reported.

    ``series(x)`` for a configuration observable; ``series(x, u, temperature)`` when
    ``of_energy`` (u the reduced energies ``[B]`` at ``temperature``). ``requires_symmetry``
    names the symmetry of the energy the estimator relies on (``None``: none).
    """

    series: Callable[..., Tensor]
    statistic: str = "mean"
    of_energy: bool = False
    requires_symmetry: str | None = None

    def values(self, x: Tensor, energies: Tensor, temperature: float) -> Tensor:
        """The series of samples ``x`` whose reduced energies are ``energies``: ``[B]``."""
        if self.of_energy:
            return self.series(x, energies, temperature)
        return self.series(x)


def potential_energy_per_particle(x: Tensor, u: Tensor, temperature: float) -> Tensor:
    """U/N = u·T/N of particle configurations ``x: [B, N, d]`` (k_B = 1): ``[B]``."""
    return energy_per_particle(u, temperature, x.shape[-2])


OBSERVABLE_KINDS: dict[str, Observable] = {
    "plaquette": Observable(lattice.plaquette),
    "q2": Observable(lattice.q2),
    "two_point_susceptibility": Observable(lattice.scaled_magnetization, "variance"),
    "two_point_susceptibility_symmetric": Observable(
        lattice.squared_scaled_magnetization, requires_symmetry="negate"
    ),
    "field_abs_magnetization": Observable(lattice.field_abs_magnetization),
    "spin_energy_density": Observable(lattice.spin_energy_density),
    "spin_abs_magnetization": Observable(lattice.spin_abs_magnetization),
    "potential_energy_per_particle": Observable(potential_energy_per_particle, of_energy=True),
}
"""Observable kinds a card's ``observables: {name: kind}`` may name."""
