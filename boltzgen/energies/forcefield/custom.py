"""Custom bonded and external forces, evaluated from their expressions.

* ``CustomBondForce``: ``E = Σ_bonds f(r; bond parameters, globals)``, r = |x₂ − x₁|;
* ``CustomAngleForce``: ``f(theta)``, the angle (rad) at the middle particle;
* ``CustomTorsionForce``: ``f(theta)``, the dihedral (rad, in [−π, π]) with
  PeriodicTorsionForce's sign convention;
* ``CustomExternalForce``: ``E = Σ_particles f(x, y, z; particle parameters)``, with
  ``periodicdistance(x, y, z, x0, y0, z0)`` the minimum-image distance;
* ``CustomCompoundBondForce``: ``f`` of the coordinates ``x1, y1, z1, x2, …`` of each
  bond's particles and of ``distance(p1, p2)``, ``angle(p1, p2, p3)``,
  ``dihedral(p1, p2, p3, p4)``, ``pointdistance(x1, y1, z1, x2, y2, z2)``,
  ``pointangle(…)``, ``pointdihedral(…)`` (all with minimum images in a periodic force,
  as OpenMM rewrites the particle forms into the point forms).

Every force may use global parameters (at their default values, as a new Context has
them) and its tabulated functions (:mod:`~boltzgen.energies.forcefield.tabulated`).
A force that uses periodic boundary conditions takes minimum images of its bond vectors.
Forces are the autograd gradient of the energy (:class:`AutogradTerm`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import openmm
import torch
from torch import Tensor

from boltzgen.energies.forcefield.geometry import BoxVectors, Frame, minimum_image
from boltzgen.energies.forcefield.language import Expression, ExpressionError, Value
from boltzgen.energies.forcefield.tabulated import Spline1D, Table, check_tabulated, tabulated
from boltzgen.energies.forcefield.terms import Term


class AutogradTerm(Term):
    """A term whose gradient is autograd's: subclasses give ``potential(X, box)`` ``[B]``."""

    def potential(self, positions: Tensor, box: BoxVectors | None) -> Tensor:
        raise NotImplementedError

    @property
    def periodic(self) -> bool:
        """Whether minimum images apply: the term's ``uses_pbc`` field, where it has one."""
        return bool(getattr(self, "uses_pbc", False))

    def energy(self, frame: Frame) -> Tensor:
        box = frame.box_vectors(self.periodic)
        if not frame.with_gradient:
            return self.potential(frame.positions, box)
        with torch.enable_grad():
            positions = frame.positions.detach().requires_grad_(True)
            energy = self.potential(positions, box)
            if not energy.requires_grad:  # no dependence on the positions
                return energy.detach()
            (gradient,) = torch.autograd.grad(energy.sum(), positions, allow_unused=True)
        frame.add_gradient(gradient)
        return energy.detach()


def summed(value: Value, count: int, positions: Tensor) -> Tensor:
    """``Σ_m value[m, b]``: ``[B]`` from a per-item value ``[M, B]``, ``[M, 1]`` or a number."""
    batch = positions.shape[2]
    if not isinstance(value, Tensor):
        return positions.new_full((batch,), float(value) * count)
    return value.broadcast_to((count, batch)).sum(0)


def dot(a: Tensor, b: Tensor) -> Tensor:
    """``[M, 3, B]`` × 2 → ``[M, B]``."""
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


def cross(a: Tensor, b: Tensor) -> Tensor:
    """Cross products of ``[M, 3, B]`` vectors."""
    return torch.stack(
        [
            a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
            a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
            a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0],
        ],
        dim=1,
    )


def norm(d: Tensor) -> Tensor:
    return torch.sqrt(dot(d, d))


def vector(a: Tensor, b: Tensor, box: BoxVectors | None) -> Tensor:
    """``b − a`` (``[M, 3, B]``), the minimum image in ``box`` if given."""
    d = b - a
    return d if box is None else minimum_image(d, box)


def angle_at(a: Tensor, vertex: Tensor, c: Tensor, box: BoxVectors | None) -> Tensor:
    """The angle a–vertex–c (rad) ``[M, B]``: atan2(|u×v|, u·v)."""
    u, v = vector(vertex, a, box), vector(vertex, c, box)
    return torch.atan2(norm(cross(u, v)), dot(u, v))


def dihedral(a: Tensor, b: Tensor, c: Tensor, d: Tensor, box: BoxVectors | None) -> Tensor:
    """The dihedral a–b–c–d (rad, [−π, π]) ``[M, B]``, IUPAC sign (as OpenMM)."""
    b1, b2, b3 = vector(a, b, box), vector(b, c, box), vector(c, d, box)
    n = cross(b2, b3)
    return torch.atan2(norm(b2) * dot(b1, n), dot(cross(b1, b2), n))


@dataclass(frozen=True)
class Definitions:
    """What a force's expressions may refer to besides their own variables: global
    parameters (default values) and tabulated functions."""

    globals: dict[str, float]
    functions: dict[str, Spline1D | Table]

    def environment(self) -> dict[str, Any]:
        return {**self.globals, **self.functions}

    def names(self) -> set[str]:
        return set(self.globals)


def definitions(force: openmm.Force) -> Definitions:
    """The global parameters and tabulated functions of a custom force."""
    values = {
        force.getGlobalParameterName(k): float(force.getGlobalParameterDefaultValue(k))
        for k in range(force.getNumGlobalParameters())
    }
    functions = {}
    count = force.getNumTabulatedFunctions() if hasattr(force, "getNumTabulatedFunctions") else 0
    for k in range(count):
        functions[force.getTabulatedFunctionName(k)] = tabulated(force.getTabulatedFunction(k))
    return Definitions(values, functions)


def check_definitions(force: openmm.Force) -> None:
    """Raise :class:`ExpressionError` if a tabulated function cannot be compiled."""
    count = force.getNumTabulatedFunctions() if hasattr(force, "getNumTabulatedFunctions") else 0
    for k in range(count):
        reason = check_tabulated(force.getTabulatedFunction(k))
        if reason is not None:
            raise ExpressionError(f"{force.getTabulatedFunctionName(k)}: {reason}")


def function_names(force: openmm.Force) -> set[str]:
    count = force.getNumTabulatedFunctions() if hasattr(force, "getNumTabulatedFunctions") else 0
    return {force.getTabulatedFunctionName(k) for k in range(count)}


def parameter_columns(rows: list[tuple[float, ...]], names: tuple[str, ...]) -> dict[str, Tensor]:
    """``{name: [M, 1]}`` float64 columns of per-item parameters."""
    array = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
    return {name: torch.as_tensor(array[:, [k]].copy()) for k, name in enumerate(names)}


def names_of(force: openmm.Force, count: str, name: str) -> tuple[str, ...]:
    return tuple(getattr(force, name)(k) for k in range(getattr(force, count)()))


GEOMETRY: dict[type, tuple[int, str]] = {
    openmm.CustomBondForce: (2, "r"),
    openmm.CustomAngleForce: (3, "theta"),
    openmm.CustomTorsionForce: (4, "theta"),
}


@dataclass(frozen=True)
class BondedExpression(AutogradTerm):
    """A CustomBondForce, CustomAngleForce or CustomTorsionForce: ``atoms`` ``[k, M]``."""

    expression: Expression
    atoms: Tensor
    parameters: dict[str, Tensor]
    context: Definitions
    uses_pbc: bool

    def potential(self, positions: Tensor, box: BoxVectors | None) -> Tensor:
        points = [positions[index] for index in self.atoms]
        if len(points) == 2:
            name, value = "r", norm(vector(points[0], points[1], box))
        elif len(points) == 3:
            name, value = "theta", angle_at(*points, box)
        else:
            name, value = "theta", dihedral(*points, box)
        environment = {**self.context.environment(), **self.parameters, name: value}
        return summed(self.expression(environment), self.atoms.shape[1], positions)


def _bonded_rows(force: openmm.Force, particles: int) -> tuple[list, list]:
    atoms, parameters = [], []
    getter = {2: "getBondParameters", 3: "getAngleParameters", 4: "getTorsionParameters"}
    counter = {2: "getNumBonds", 3: "getNumAngles", 4: "getNumTorsions"}
    for k in range(getattr(force, counter[particles])()):
        row = getattr(force, getter[particles])(k)
        atoms.append(row[:particles])
        parameters.append(tuple(row[particles]))
    return atoms, parameters


def _parameter_names(force: openmm.Force) -> tuple[str, ...]:
    for count, name in (
        ("getNumPerBondParameters", "getPerBondParameterName"),
        ("getNumPerAngleParameters", "getPerAngleParameterName"),
        ("getNumPerTorsionParameters", "getPerTorsionParameterName"),
        ("getNumPerParticleParameters", "getPerParticleParameterName"),
    ):
        if hasattr(force, count):
            return names_of(force, count, name)
    return ()


def check_bonded(force: openmm.Force) -> None:
    """Raise :class:`ExpressionError` if a custom bond/angle/torsion force cannot be compiled."""
    check_definitions(force)
    _, variable = GEOMETRY[type(force)]
    allowed = {variable, *_parameter_names(force), *definitions_names(force)}
    Expression(force.getEnergyFunction()).check(allowed, function_names(force))


def definitions_names(force: openmm.Force) -> set[str]:
    return set(names_of(force, "getNumGlobalParameters", "getGlobalParameterName"))


def bonded_expression(force: openmm.Force) -> list[Term]:
    """Compile a CustomBondForce, CustomAngleForce or CustomTorsionForce."""
    particles, _ = GEOMETRY[type(force)]
    atoms, rows = _bonded_rows(force, particles)
    if not atoms:
        return []
    return [
        BondedExpression(
            Expression(force.getEnergyFunction()),
            torch.tensor(atoms, dtype=torch.long).T.contiguous(),
            parameter_columns(rows, _parameter_names(force)),
            definitions(force),
            force.usesPeriodicBoundaryConditions(),
        )
    ]


def _periodic_distance(box: BoxVectors | None) -> Callable[..., Tensor]:
    def distance(x: Value, y: Value, z: Value, x0: Value, y0: Value, z0: Value) -> Tensor:
        like = next(v for v in (x, y, z, x0, y0, z0) if isinstance(v, Tensor))
        parts = [
            torch.as_tensor(a - b, dtype=like.dtype, device=like.device)
            for a, b in ((x, x0), (y, y0), (z, z0))
        ]
        shape = torch.broadcast_shapes(*(p.shape for p in parts))
        d = torch.stack([p.expand(shape) for p in parts], dim=1)
        if box is not None:
            d = minimum_image(d, box)
        return norm(d)

    return distance


@dataclass(frozen=True)
class ExternalExpression(AutogradTerm):
    """A CustomExternalForce over ``particles`` ``[M]``."""

    expression: Expression
    particles: Tensor
    parameters: dict[str, Tensor]
    context: Definitions
    uses_pbc: bool

    def potential(self, positions: Tensor, box: BoxVectors | None) -> Tensor:
        x = positions[self.particles]
        environment = {
            **self.context.environment(),
            **self.parameters,
            "x": x[:, 0],
            "y": x[:, 1],
            "z": x[:, 2],
            "periodicdistance": _periodic_distance(box),
        }
        return summed(self.expression(environment), self.particles.shape[0], positions)


def check_external(force: openmm.CustomExternalForce) -> None:
    check_definitions(force)
    allowed = {"x", "y", "z", *_parameter_names(force), *definitions_names(force)}
    Expression(force.getEnergyFunction()).check(allowed, {"periodicdistance"})


def external_expression(force: openmm.CustomExternalForce) -> list[Term]:
    """Compile a CustomExternalForce."""
    rows = [force.getParticleParameters(k) for k in range(force.getNumParticles())]
    if not rows:
        return []
    return [
        ExternalExpression(
            Expression(force.getEnergyFunction()),
            torch.tensor([r[0] for r in rows], dtype=torch.long),
            parameter_columns([tuple(r[1]) for r in rows], _parameter_names(force)),
            definitions(force),
            force.usesPeriodicBoundaryConditions(),
        )
    ]


def _points(arguments: tuple[Value, ...]) -> list[Tensor]:
    like = next(a for a in arguments if isinstance(a, Tensor))
    columns = [torch.as_tensor(a, dtype=like.dtype, device=like.device) for a in arguments]
    shape = torch.broadcast_shapes(*(c.shape for c in columns))
    columns = [c.expand(shape) for c in columns]
    return [torch.stack(columns[k : k + 3], dim=1) for k in range(0, len(columns), 3)]


def compound_geometry(points: list[Tensor], box: BoxVectors | None) -> dict[str, Any]:
    """The geometric functions of a CustomCompoundBondForce on one bond's ``points``."""
    return {
        **{f"p{k + 1}": k for k in range(len(points))},
        "distance": lambda a, b: norm(vector(points[a], points[b], box)),
        "angle": lambda a, b, c: angle_at(points[a], points[b], points[c], box),
        "dihedral": lambda a, b, c, d: dihedral(points[a], points[b], points[c], points[d], box),
        "pointdistance": lambda *v: norm(vector(*_points(v), box)),
        "pointangle": lambda *v: angle_at(*_points(v), box),
        "pointdihedral": lambda *v: dihedral(*_points(v), box),
    }


COMPOUND_FUNCTIONS = {
    "distance",
    "angle",
    "dihedral",
    "pointdistance",
    "pointangle",
    "pointdihedral",
}


@dataclass(frozen=True)
class CompoundExpression(AutogradTerm):
    """A CustomCompoundBondForce: ``atoms`` ``[k, M]``."""

    expression: Expression
    atoms: Tensor
    parameters: dict[str, Tensor]
    context: Definitions
    uses_pbc: bool

    def potential(self, positions: Tensor, box: BoxVectors | None) -> Tensor:
        points = [positions[index] for index in self.atoms]
        coordinates = {
            f"{axis}{k + 1}": p[:, c] for k, p in enumerate(points) for c, axis in enumerate("xyz")
        }
        environment = {
            **self.context.environment(),
            **self.parameters,
            **coordinates,
            **compound_geometry(points, box),
        }
        return summed(self.expression(environment), self.atoms.shape[1], positions)


def check_compound(force: openmm.CustomCompoundBondForce) -> None:
    check_definitions(force)
    n = force.getNumParticlesPerBond()
    coordinates = {f"{a}{k + 1}" for k in range(n) for a in "xyz"}
    particles = {f"p{k + 1}" for k in range(n)}
    allowed = {*coordinates, *particles, *_parameter_names(force), *definitions_names(force)}
    Expression(force.getEnergyFunction()).check(allowed, COMPOUND_FUNCTIONS | function_names(force))


def compound_expression(force: openmm.CustomCompoundBondForce) -> list[Term]:
    """Compile a CustomCompoundBondForce."""
    rows = [force.getBondParameters(k) for k in range(force.getNumBonds())]
    if not rows:
        return []
    return [
        CompoundExpression(
            Expression(force.getEnergyFunction()),
            torch.tensor([list(r[0]) for r in rows], dtype=torch.long).T.contiguous(),
            parameter_columns([tuple(r[1]) for r in rows], _parameter_names(force)),
            definitions(force),
            force.usesPeriodicBoundaryConditions(),
        )
    ]
