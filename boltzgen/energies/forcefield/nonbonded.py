"""NonbondedForce: Coulomb and Lennard-Jones pairs, with or without a reaction-field cutoff.

Forms (OpenMM user guide, "NonbondedForce"), r in nm, energies in kJ/mol:

* Lennard-Jones ``E = 4ε((σ/r)¹² - (σ/r)⁶)`` with the Lorentz-Berthelot rule
  ``σ = (σ_i + σ_j)/2``, ``ε = √(ε_i ε_j)``, evaluated as ``A/r¹² - C/r⁶`` with
  ``A = 4εσ¹²`` and ``C = 4εσ⁶`` precomputed per pair.
* Coulomb without cutoff ``E = k_e q_i q_j / r``, ``k_e = 1/(4πε₀)`` =
  :data:`COULOMB_CONSTANT` kJ·nm/(mol·e²).
* CutoffNonPeriodic and CutoffPeriodic: pairs beyond ``r_c`` are dropped, and the
  Coulomb term becomes the reaction field of Tironi et al. (J. Chem. Phys. 102, 5451
  (1995)), ``E = k_e q_i q_j (1/r + k_rf r² - c_rf)`` with
  ``k_rf = (ε_s - 1) / ((2ε_s + 1) r_c³)`` and ``c_rf = 3ε_s / ((2ε_s + 1) r_c)`` for
  the solvent (reaction-field) dielectric ε_s. With a switching function the
  Lennard-Jones energy is multiplied by ``S = 1 - 6x⁵ + 15x⁴ - 10x³``,
  ``x = (r - r_sw)/(r_c - r_sw)`` clamped to [0, 1]. CutoffPeriodic uses minimum images.
* Exceptions (1-4 pairs, exclusions) replace the pair's parameters by their own
  ``(q_i q_j, σ, ε)``; they are always evaluated in full, with no cutoff, reaction
  field or switching, and in a periodic box with minimum images only if
  ``getExceptionsUsePeriodicBoundaryConditions()``.
* With CutoffPeriodic and ``getUseDispersionCorrection()``, the constant long-range
  correction of Shirts et al. (J. Phys. Chem. B 111, 13052 (2007)) for the default box,
  ``E = 8πN²/V (⟨εσ¹²⟩/(9r_c⁹) - ⟨εσ⁶⟩/(3r_c³))`` plus, with switching, the energy the
  switch removes, ``2πN²/V (⟨A⟩ ∫ r⁻¹⁰(1 - S) dr - ⟨C⟩ ∫ r⁻⁴(1 - S) dr)`` over
  ``[r_sw, r_c]``; averages run over the N(N+1)/2 pairs ``i ≤ j`` with the combining
  rule, exceptions not removed (as OpenMM does).

Gradients are analytic: every pair adds ``(1/r) dE/dr`` to its frame's accumulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import openmm
import torch
from openmm import unit
from torch import Tensor

from boltzgen.energies.forcefield.geometry import (
    Box,
    BoxVectors,
    Frame,
    PairList,
    displacements,
    scatter_pairs,
    squared_norm,
)
from boltzgen.energies.forcefield.terms import Term, magnitude

COULOMB_CONSTANT = 138.935457644382
"""1/(4πε₀) in kJ·nm/(mol·e²): N_A e²/(4πε₀) from the CODATA 2018 constants, as OpenMM
uses it (``ONE_4PI_EPS0``)."""

SUPPORTED_METHODS = {
    openmm.NonbondedForce.NoCutoff: "NoCutoff",
    openmm.NonbondedForce.CutoffNonPeriodic: "CutoffNonPeriodic",
    openmm.NonbondedForce.CutoffPeriodic: "CutoffPeriodic",
}
_METHOD_NAMES = {
    **SUPPORTED_METHODS,
    openmm.NonbondedForce.Ewald: "Ewald",
    openmm.NonbondedForce.PME: "PME",
    openmm.NonbondedForce.LJPME: "LJPME",
}


@dataclass(frozen=True)
class PairParameters:
    """Coulomb and Lennard-Jones parameters of a pair list.

    Attributes:
        pairs: the pairs (P).
        coulomb: ``[P]`` k_e q_i q_j in kJ·nm/mol.
        lj12: ``[P]`` A = 4εσ¹² in kJ·nm¹²/mol.
        lj6: ``[P]`` C = 4εσ⁶ in kJ·nm⁶/mol.
    """

    pairs: PairList
    coulomb: Tensor
    lj12: Tensor
    lj6: Tensor


def pair_kernel(
    positions: Tensor,
    pairs: tuple[Tensor, Tensor],
    parameters: tuple[Tensor, Tensor, Tensor],
    box: BoxVectors | None,
    reaction_field: tuple[float, float, float, float | None] | None,
    with_gradient: bool,
) -> tuple[Tensor, Tensor | None]:
    """Energy ``[B]`` of Coulomb + Lennard-Jones over ``pairs`` (i, j) and, if asked,
    ``dU/dX: [N, 3, B]`` (a kernel).

    ``parameters`` = (k_e q_i q_j, A, C) as ``[P, 1]``. Without ``reaction_field``:
    ``k_e q q/r + A/r¹² - C/r⁶`` for every pair. With ``reaction_field`` = (r_c, k_rf,
    c_rf, r_sw or None): ``k_e q q (1/r + k_rf r² - c_rf) + S(r)(A/r¹² - C/r⁶)`` for
    r < r_c, 0 beyond.
    """
    coulomb, lj12, lj6 = parameters
    d = displacements(positions, *pairs, box)
    r2 = squared_norm(d)
    inv2 = 1.0 / r2
    inv1 = torch.sqrt(inv2)
    inv6 = inv2 * inv2 * inv2
    repulsion = lj12 * inv6 * inv6
    dispersion = lj6 * inv6
    lj = repulsion - dispersion
    scalar = -(12.0 * repulsion - 6.0 * dispersion) * inv2  # (1/r) dE/dr
    if reaction_field is None:
        energy = coulomb * inv1 + lj
        scalar = scalar - coulomb * inv1 * inv2
    else:
        cutoff, krf, crf, switch = reaction_field
        if switch is not None:
            width = cutoff - switch
            x = torch.clamp((r2 * inv1 - switch) / width, 0.0, 1.0)
            x2 = x * x
            value = 1.0 + x2 * x * (-10.0 + x * (15.0 - 6.0 * x))
            slope = -30.0 / width * x2 * (1.0 - x) * (1.0 - x)
            scalar = scalar * value + lj * slope * inv1
            lj = lj * value
        inside = (r2 < cutoff * cutoff).to(r2.dtype)
        energy = inside * (coulomb * (inv1 + krf * r2 - crf) + lj)
        scalar = inside * (coulomb * (2.0 * krf - inv1 * inv2) + scalar)
    if not with_gradient:
        return energy.sum(0), None
    return energy.sum(0), scatter_pairs(positions, *pairs, scalar[:, None, :] * d)


@dataclass(frozen=True)
class ReactionField:
    """Cutoff ``r_c`` (nm), reaction-field constants ``k_rf`` (nm⁻³) and ``c_rf``
    (nm⁻¹), and the switching distance (nm) or None."""

    cutoff: float
    krf: float
    crf: float
    switch: float | None

    @property
    def constants(self) -> tuple[float, float, float, float | None]:
        return self.cutoff, self.krf, self.crf, self.switch


@dataclass(frozen=True)
class Nonbonded(Term):
    """A compiled NonbondedForce.

    Attributes:
        normal: parameters of the ordinary pairs (without cutoff, the exceptions too),
            or None if no pair interacts.
        periodic: minimum images for ``normal``.
        reaction_field: the cutoff treatment, or None for NoCutoff.
        exceptions: exceptions evaluated apart, in full (cutoff methods), or None.
        exceptions_periodic: minimum images for ``exceptions``.
        constant: the long-range dispersion correction (kJ/mol), 0 if none.
    """

    normal: PairParameters | None
    periodic: bool
    reaction_field: ReactionField | None
    exceptions: PairParameters | None
    exceptions_periodic: bool
    constant: float

    def energy(self, frame: Frame) -> Tensor:
        rf = self.reaction_field.constants if self.reaction_field is not None else None
        energy = frame.positions.new_full((frame.positions.shape[2],), self.constant)
        if self.normal is not None:
            energy = energy + self._pairs(frame, self.normal, self.periodic, rf)
        if self.exceptions is not None:
            energy = energy + self._pairs(frame, self.exceptions, self.exceptions_periodic, None)
        return energy

    @staticmethod
    def _pairs(
        frame: Frame,
        p: PairParameters,
        periodic: bool,
        reaction_field: tuple[float, float, float, float | None] | None,
    ) -> Tensor:
        energy, gradient = frame.run(
            pair_kernel,
            frame.positions,
            (p.pairs.i, p.pairs.j),
            (p.coulomb[:, None], p.lj12[:, None], p.lj6[:, None]),
            frame.box_vectors(periodic),
            reaction_field,
            frame.with_gradient,
        )
        frame.add_gradient(gradient)
        return energy


def unsupported_reason(force: openmm.NonbondedForce) -> str | None:
    """Why ``force`` cannot be compiled, or None if it can."""
    method = force.getNonbondedMethod()
    if method not in SUPPORTED_METHODS:
        return (
            f"nonbonded method {_METHOD_NAMES.get(method, method)} "
            f"(supported: {', '.join(SUPPORTED_METHODS.values())})"
        )
    if force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
        return "parameter offsets (global-parameter-dependent charges or LJ parameters)"
    return None


def _particles(force: openmm.NonbondedForce) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Charges (e), σ (nm), ε (kJ/mol), each ``[N]``."""
    rows = [force.getParticleParameters(i) for i in range(force.getNumParticles())]
    charge = np.array([magnitude(r[0], unit.elementary_charge) for r in rows])
    sigma = np.array([magnitude(r[1], unit.nanometer) for r in rows])
    epsilon = np.array([magnitude(r[2], unit.kilojoule_per_mole) for r in rows])
    return charge, sigma, epsilon


def _exception_rows(force: openmm.NonbondedForce) -> list[tuple[int, int, float, float, float]]:
    """Exceptions as ``(i, j, q_i q_j, σ, ε)`` with i < j."""
    rows = []
    for e in range(force.getNumExceptions()):
        i, j, qq, sigma, epsilon = force.getExceptionParameters(e)
        rows.append(
            (
                min(i, j),
                max(i, j),
                magnitude(qq, unit.elementary_charge**2),
                magnitude(sigma, unit.nanometer),
                magnitude(epsilon, unit.kilojoule_per_mole),
            )
        )
    return rows


def _lj(sigma: np.ndarray, epsilon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s6 = sigma**6
    return 4.0 * epsilon * s6 * s6, 4.0 * epsilon * s6


def _parameters(
    pairs: tuple[np.ndarray, np.ndarray], coulomb: np.ndarray, lj12: np.ndarray, lj6: np.ndarray
) -> PairParameters | None:
    """The pairs whose parameters are not all zero, or None if there are none."""
    live = (coulomb != 0) | (lj12 != 0) | (lj6 != 0)
    if not live.any():
        return None

    def tensor(a: np.ndarray, dtype: torch.dtype = torch.float64) -> Tensor:
        return torch.as_tensor(a[live], dtype=dtype)

    return PairParameters(
        PairList(tensor(pairs[0], torch.long), tensor(pairs[1], torch.long)),
        tensor(coulomb),
        tensor(lj12),
        tensor(lj6),
    )


def dispersion_correction(force: openmm.NonbondedForce, box: Box) -> float:
    """The long-range dispersion correction (kJ/mol) of ``force`` in ``box`` (see the
    module docstring); the integral over the switching interval by 64-point
    Gauss-Legendre quadrature."""
    _, sigma, epsilon = _particles(force)
    n = len(sigma)
    i, j = np.triu_indices(n)
    lj12, lj6 = _lj(0.5 * (sigma[i] + sigma[j]), np.sqrt(epsilon[i] * epsilon[j]))
    a, c = lj12.mean(), lj6.mean()  # ⟨4εσ¹²⟩, ⟨4εσ⁶⟩
    cutoff = force.getCutoffDistance().value_in_unit(unit.nanometer)
    tail = a / (9.0 * cutoff**9) - c / (3.0 * cutoff**3)
    if force.getUseSwitchingFunction():
        start = force.getSwitchingDistance().value_in_unit(unit.nanometer)
        nodes, weights = np.polynomial.legendre.leggauss(64)
        r = start + (cutoff - start) * 0.5 * (nodes + 1.0)
        x = (r - start) / (cutoff - start)
        lost = (10.0 * x**3 - 15.0 * x**4 + 6.0 * x**5) * 0.5 * (cutoff - start) * weights
        tail += a * (lost * r**-10).sum() - c * (lost * r**-4).sum()
    return 2.0 * math.pi * n * n / box.volume * tail


def _reaction_field(force: openmm.NonbondedForce) -> ReactionField:
    cutoff = force.getCutoffDistance().value_in_unit(unit.nanometer)
    eps = force.getReactionFieldDielectric()
    switch = None
    if force.getUseSwitchingFunction():
        switch = force.getSwitchingDistance().value_in_unit(unit.nanometer)
    krf = (eps - 1.0) / ((2.0 * eps + 1.0) * cutoff**3)
    crf = 3.0 * eps / ((2.0 * eps + 1.0) * cutoff)
    return ReactionField(cutoff, krf, crf, switch)


def _split(
    force: openmm.NonbondedForce, cutoff: bool
) -> tuple[PairParameters | None, PairParameters | None]:
    """(ordinary pairs, exceptions evaluated apart): without cutoff, one list where each
    exception's parameters replace the combining rule's; with cutoff, two lists."""
    charge, sigma, epsilon = _particles(force)
    n = len(charge)
    i, j = np.triu_indices(n, k=1)
    coulomb = COULOMB_CONSTANT * charge[i] * charge[j]
    lj12, lj6 = _lj(0.5 * (sigma[i] + sigma[j]), np.sqrt(epsilon[i] * epsilon[j]))
    rows = np.array(_exception_rows(force), dtype=np.float64).reshape(-1, 5)
    ex_i, ex_j = rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64)
    where = ex_i * n - ex_i * (ex_i + 1) // 2 + (ex_j - ex_i - 1)  # index in (i, j)
    ex_coulomb = COULOMB_CONSTANT * rows[:, 2]
    ex_lj12, ex_lj6 = _lj(rows[:, 3], rows[:, 4])
    for array, value in ((coulomb, ex_coulomb), (lj12, ex_lj12), (lj6, ex_lj6)):
        array[where] = 0.0 if cutoff else value
    normal = _parameters((i, j), coulomb, lj12, lj6)
    if not cutoff:
        return normal, None
    return normal, _parameters((ex_i, ex_j), ex_coulomb, ex_lj12, ex_lj6)


def nonbonded(force: openmm.NonbondedForce, box: Box | None) -> list[Term]:
    """Compile ``force`` (a supported method; see :func:`unsupported_reason`); ``box`` is
    the System's default box (CutoffPeriodic needs it)."""
    method = force.getNonbondedMethod()
    cutoff = method != openmm.NonbondedForce.NoCutoff
    periodic = method == openmm.NonbondedForce.CutoffPeriodic
    normal, exceptions = _split(force, cutoff)
    constant = 0.0
    if periodic and force.getUseDispersionCorrection():
        assert box is not None, "CutoffPeriodic needs the System's default box"
        constant = dispersion_correction(force, box)
    if normal is None and exceptions is None and constant == 0.0:
        return []
    return [
        Nonbonded(
            normal,
            periodic,
            _reaction_field(force) if cutoff else None,
            exceptions,
            periodic and force.getExceptionsUsePeriodicBoundaryConditions(),
            constant,
        )
    ]
