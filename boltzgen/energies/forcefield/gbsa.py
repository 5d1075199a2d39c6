"""Generalized Born implicit solvent: GBSAOBCForce and the OBC2/GBn2 CustomGBForce forms.

All three share one energy (OpenMM user guide, "GBSAOBCForce"; Onufriev, Bashford & Case,
Proteins 55, 383 (2004)), lengths in nm and energies in kJ/mol:

``E = Σ_i e_i(B_i) + Σ_i a_i (R_i/B_i)⁶ + Σ_{i<j} e_ij(f_ij)``, with

* self energy ``e_i = -½ k_e q_i² (1/ε_in - exp(-κB_i)/ε_out) / B_i``,
* ACE surface term ``a_i = 4π E_SA (R_i + r_probe)²``, r_probe = 0.14 nm,
* pair energy ``e_ij = -k_e q_i q_j (1/ε_in - exp(-κf)/ε_out) (1/f - 1/r_c)``
  with ``f = √(r² + B_i B_j exp(-r²/(4 B_i B_j)))`` (the ``1/r_c`` shift only with a
  cutoff, where OpenMM applies it too; κ = 0 unless the CustomGBForce form has salt).

Born radii ``B_i = 1/(1/ρ_i - tanh(α ψ_i - β ψ_i² + γ ψ_i³)/R_i)`` with ``ψ_i = I_i ρ_i``,
the atomic radius R_i, the offset radius ``ρ_i = R_i - offset`` (0.009 nm for OBC) and
(α, β, γ) = (1, 0.8, 4.85) for OBC2 or per-atom values for GBn2. The descreening
integral ``I_i = Σ_{j≠i} h(r_ij; ρ_i, s_j)`` sums the pairwise Hawkins-Cramer-Truhlar
integral of 1/r⁴ over atom j's sphere of scaled radius ``s_j = S_j ρ_j`` outside atom i,

``h = ½ (1/L - 1/U + ¼ (r - s²/r)(1/U² - 1/L²) + ½ ln(L/U)/r)`` if ``r + s > ρ``, else 0,
``U = r + s``, ``L = max(ρ, |r - s|)``;

GBSAOBCForce adds ``1/ρ - 1/L`` when atom i lies inside j's sphere (``ρ < s - r``), as
in the CustomGBForce example of OpenMM's API documentation; the openmm.app forms do not.
GBn2 (Nguyen, Roe & Simmerling, JCTC 9, 2020 (2013)) adds the neck term
``σ_neck m₀/(1 + 100 (r - d₀)² + 0.3·10⁶ (r - d₀)⁶)`` for ``r < R_i + R_j + neckCut``
with m₀, d₀ from tables indexed by the two atoms' radius classes.

With a cutoff, pairs farther than r_c contribute neither to I nor to the pair energy;
CutoffPeriodic uses minimum images.

Gradients are analytic, by the chain rule through the Born radii:
``dE/dr_ij = ∂e_ij/∂f ∂f/∂r + (dE/dB_i dB_i/dI_i) ∂h_ij/∂r + (dE/dB_j dB_j/dI_j) ∂h_ji/∂r``.
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
    BoxVectors,
    Frame,
    PairList,
    displacements,
    scatter_pairs,
    squared_norm,
)
from boltzgen.energies.forcefield.nonbonded import COULOMB_CONSTANT
from boltzgen.energies.forcefield.terms import Term, magnitude

OBC_OFFSET = 0.009
"""Dielectric offset of GBSAOBCForce (nm): ρ = R - 0.009 nm."""
OBC2 = (1.0, 0.8, 4.85)
"""(α, β, γ) of OBC2 (GBSAOBCForce and openmm.app's implicit/obc2.xml)."""
PROBE_RADIUS = 0.14
"""Solvent probe radius of the ACE surface term (nm)."""


@dataclass(frozen=True)
class Neck:
    """The GBn2 neck correction of the descreening integral, per pair p = (i, j).

    Attributes:
        scale: σ_neck (dimensionless).
        reach: ``[P]`` R_i + R_j + neckCut (nm): the correction acts for r below it.
        m0_ij, d0_ij: ``[P]`` table values for I_i (nm⁻¹, nm); m0_ji, d0_ji for I_j.
    """

    scale: float
    reach: Tensor
    m0_ij: Tensor
    d0_ij: Tensor
    m0_ji: Tensor
    d0_ji: Tensor

    def arguments(self) -> tuple[float, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(σ_neck, then the tables as ``[P, 1]`` columns) for :func:`descreening`."""
        columns = (self.reach, self.m0_ij, self.d0_ij, self.m0_ji, self.d0_ji)
        return (self.scale, *(c[:, None] for c in columns))


def _neck_value(
    r: Tensor, inv_r: Tensor, near: Tensor, m0: Tensor, d0: Tensor, with_gradient: bool
) -> tuple[Tensor, Tensor | None]:
    """``near · m₀/(1 + 100u² + 0.3e6 u⁶)``, u = r - d₀, and its (1/r) d/dr."""
    u = r - d0
    u2 = u * u
    u4 = u2 * u2
    inverse = 1.0 / (1.0 + 100.0 * u2 + 0.3e6 * u4 * u2)
    value = near * m0 * inverse
    if not with_gradient:
        return value, None
    return value, -value * inverse * (200.0 * u + 1.8e6 * u4 * u) * inv_r


def hct_integral(
    r: Tensor, inv_r: Tensor, r2: Tensor, rho: Tensor, s: Tensor, inside: bool, with_gradient: bool
) -> tuple[Tensor, Tensor | None]:
    """The pairwise descreening integral h(r; ρ, s) ``[P, B]`` (nm⁻¹) and (1/r) dh/dr.

    Written with ``U = max(r + s, ρ)``, which makes h and its derivative vanish where
    ``r + s ≤ ρ`` with no mask. With ``t = 1/U² - 1/L²`` and ``λ = ln(L/U)``, the
    derivative simplifies to ``dh/dr = (t (r² + s²)/8 - λ/4)/r²`` plus ``1/L²`` where
    ``ρ < s - r`` — a term that GBSAOBCForce's inside correction ``1/ρ - 1/L`` cancels.

    Args:
        r, inv_r, r2: ``[P, B]`` distances (nm), their inverses and squares.
        rho: ``[P, 1]`` offset radius of the atom whose integral this is (nm).
        s: ``[P, 1]`` scaled radius of the other atom (nm).
        inside: add ``1/ρ - 1/L`` when ``ρ < s - r`` (GBSAOBCForce).
        with_gradient: also return (1/r) dh/dr (nm⁻³).
    """
    gap = r - s
    lower = torch.maximum(gap.abs(), rho)
    inv_l, inv_u = 1.0 / lower, 1.0 / torch.maximum(r + s, rho)
    t = inv_u * inv_u - inv_l * inv_l
    log = torch.log(lower * inv_u)
    h = 0.5 * (inv_l - inv_u) + 0.125 * (r - s * s * inv_r) * t + 0.25 * log * inv_r
    enclosed = (gap < -rho).to(r.dtype)  # atom i inside the other's sphere
    if inside:
        h = h + enclosed * (1.0 / rho - inv_l)
    if not with_gradient:
        return h, None
    slope = (0.125 * t * (r2 + s * s) - 0.25 * log) * inv_r * inv_r * inv_r
    if not inside:
        slope = slope + enclosed * inv_l * inv_l * inv_r
    return h, slope


def descreening(
    positions: Tensor,
    pairs: tuple[Tensor, Tensor],
    radii: tuple[Tensor, Tensor, Tensor, Tensor],
    options: tuple[bool, tuple | None, float | None],
    box: BoxVectors | None,
    with_gradient: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The descreening integrals I ``[N, B]`` (nm⁻¹) and, if asked, the (1/r) d/dr of
    each pair's shares h_ij (of I_i) and h_ji (of I_j), ``[P, B]`` each (a kernel).

    ``radii`` = (ρ_i, s_j, ρ_j, s_i) as ``[P, 1]``; ``options`` = (inside correction,
    neck arguments or None, cutoff or None).
    """
    inside, neck, cutoff = options
    rho_i, s_j, rho_j, s_i = radii
    r2 = squared_norm(displacements(positions, *pairs, box))
    r = torch.sqrt(r2)
    inv_r = 1.0 / r
    h_ij, g_ij = hct_integral(r, inv_r, r2, rho_i, s_j, inside, with_gradient)
    h_ji, g_ji = hct_integral(r, inv_r, r2, rho_j, s_i, inside, with_gradient)
    if neck is not None:
        scale, reach, m0_ij, d0_ij, m0_ji, d0_ji = neck
        near = scale * (r < reach).to(r.dtype)
        n_ij, dn_ij = _neck_value(r, inv_r, near, m0_ij, d0_ij, with_gradient)
        n_ji, dn_ji = _neck_value(r, inv_r, near, m0_ji, d0_ji, with_gradient)
        h_ij, h_ji = h_ij + n_ij, h_ji + n_ji
        if with_gradient:
            g_ij, g_ji = g_ij + dn_ij, g_ji + dn_ji
    if cutoff is not None:
        within = (r2 < cutoff * cutoff).to(r2.dtype)
        h_ij, h_ji = h_ij * within, h_ji * within
        if with_gradient:
            g_ij, g_ji = g_ij * within, g_ji * within
    integrals = r2.new_zeros((positions.shape[0], r2.shape[1]))
    integrals = integrals.index_add(0, pairs[0], h_ij).index_add(0, pairs[1], h_ji)
    return integrals, g_ij, g_ji


def born_energies(
    integrals: Tensor,
    obc: tuple[Tensor, ...],
    atoms: tuple[Tensor, Tensor, Tensor | None],
    kappa: float,
    with_gradient: bool,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
    """Born radii B ``[N, B]`` (nm), dB/dI (nm²) if asked, the self + surface energy
    ``[B]`` and, if asked, its derivative in each B_i ``[N, B]`` (a kernel).

    ``obc`` = (ρ, R, α, β, γ) and ``atoms`` = (self_in, self_out, surface or None) as
    ``[N, 1]`` columns.
    """
    rho, radius, alpha, beta, gamma = obc
    self_in, self_out, surface = atoms
    psi = integrals * rho
    tanh = torch.tanh(psi * (alpha + psi * (gamma * psi - beta)))
    inverse = 1.0 / rho - tanh / radius  # 1/B
    born = 1.0 / inverse
    screened = self_out * torch.exp(-kappa * born) if kappa != 0.0 else self_out
    energy = (self_in + screened) * inverse
    slope = -energy * inverse
    if kappa != 0.0:
        slope = slope - kappa * screened * inverse
    if surface is not None:
        inverse3 = inverse * inverse * inverse
        ace = surface * inverse3 * inverse3
        energy = energy + ace
        slope = slope - 6.0 * ace * inverse
    if not with_gradient:
        return born, None, energy.sum(0), None
    dt_dpsi = alpha + psi * (3.0 * gamma * psi - 2.0 * beta)
    born_slope = born * born * (1.0 - tanh * tanh) / radius * dt_dpsi * rho
    return born, born_slope, energy.sum(0), slope


def pair_energies(
    positions: Tensor,
    pairs: tuple[Tensor, Tensor],
    born: Tensor,
    charges: tuple[Tensor, Tensor],
    constants: tuple[float, float, float | None],
    box: BoxVectors | None,
    with_gradient: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """GB pair energy ``[B]`` and, if asked, ``(1/r) ∂e/∂r: [P, B]`` at fixed Born radii
    and ``Σ_pairs ∂e/∂B: [N, B]`` (a kernel).

    ``charges`` = (pair_in, pair_out) as ``[P, 1]``; ``constants`` = (κ, 1/r_c shift,
    cutoff or None).
    """
    pair_in, pair_out = charges
    kappa, shift, cutoff = constants
    i, j = pairs
    r2 = squared_norm(displacements(positions, i, j, box))
    b_i, b_j = born[i], born[j]
    product = b_i * b_j
    ratio = r2 / product
    damping = torch.exp(-0.25 * ratio)
    inv_f = torch.rsqrt(r2 + product * damping)
    reach = inv_f - shift
    screened = pair_out * torch.exp(-kappa / inv_f) if kappa != 0.0 else pair_out
    charge = pair_in + screened
    energy = charge * reach
    de_df_over_f = -charge * inv_f * inv_f * inv_f  # (1/f) ∂e/∂f
    if kappa != 0.0:
        de_df_over_f = de_df_over_f - kappa * screened * reach * inv_f
    if cutoff is not None:
        within = (r2 < cutoff * cutoff).to(r2.dtype)
        energy, de_df_over_f = energy * within, de_df_over_f * within
    if not with_gradient:
        return energy.sum(0), None, None
    direct = de_df_over_f * (1.0 - 0.25 * damping)
    common = 0.5 * de_df_over_f * damping * (1.0 + 0.25 * ratio)
    de_born = torch.zeros_like(born).index_add(0, i, common * b_j).index_add(0, j, common * b_i)
    return energy.sum(0), direct, de_born


def chain_rule(
    positions: Tensor,
    pairs: tuple[Tensor, Tensor],
    direct: Tensor,
    de_born: Tensor,
    born_slope: Tensor,
    slopes: tuple[Tensor, Tensor],
    box: BoxVectors | None,
) -> Tensor:
    """``dU/dX: [N, 3, B]`` of the GB energy: per pair, ``(1/r) dE/dr = direct +
    dE/dI_i (1/r) ∂h_ij/∂r + dE/dI_j (1/r) ∂h_ji/∂r`` with ``dE/dI = dE/dB dB/dI`` (a
    kernel)."""
    i, j = pairs
    de_di = de_born * born_slope
    scalar = direct + de_di[i] * slopes[0] + de_di[j] * slopes[1]
    d = displacements(positions, i, j, box)
    return scatter_pairs(positions, i, j, scalar[:, None, :] * d)


@dataclass(frozen=True)
class GeneralizedBorn(Term):
    """A compiled GB force (see the module docstring for the energy).

    Per atom ``[N]``: ``rho`` (ρ), ``radius`` (R), ``alpha``, ``beta``, ``gamma``,
    ``self_in = -½ k_e q²/ε_in``, ``self_out = ½ k_e q²/ε_out`` (kJ·nm/mol) and
    ``surface = 4π E_SA (R + r_probe)² R⁶`` (kJ·nm⁶/mol) or None. Per pair ``[P]`` of
    ``pairs`` (all i < j): ``rho_i, rho_j, s_i, s_j`` (nm), ``pair_in = -k_e q_i q_j/ε_in``
    and ``pair_out = k_e q_i q_j/ε_out`` (kJ·nm/mol). ``shift`` is 1/r_c in the pair
    energy (nm⁻¹), ``kappa`` the Debye screening κ (nm⁻¹).
    """

    pairs: PairList
    periodic: bool
    cutoff: float | None
    inside: bool
    neck: Neck | None
    rho: Tensor
    radius: Tensor
    alpha: Tensor
    beta: Tensor
    gamma: Tensor
    rho_i: Tensor
    rho_j: Tensor
    s_i: Tensor
    s_j: Tensor
    self_in: Tensor
    self_out: Tensor
    surface: Tensor | None
    pair_in: Tensor
    pair_out: Tensor
    shift: float
    kappa: float

    def energy(self, frame: Frame) -> Tensor:
        positions, grad, box = (
            frame.positions,
            frame.with_gradient,
            frame.box_vectors(self.periodic),
        )
        pairs = (self.pairs.i, self.pairs.j)
        radii = (self.rho_i[:, None], self.s_j[:, None], self.rho_j[:, None], self.s_i[:, None])
        neck = self.neck.arguments() if self.neck is not None else None
        integrals, g_ij, g_ji = frame.run(
            descreening, positions, pairs, radii, (self.inside, neck, self.cutoff), box, grad
        )
        obc = tuple(p[:, None] for p in (self.rho, self.radius, self.alpha, self.beta, self.gamma))
        surface = self.surface[:, None] if self.surface is not None else None
        atoms = (self.self_in[:, None], self.self_out[:, None], surface)
        born, born_slope, e_atoms, de_atoms = frame.run(
            born_energies, integrals, obc, atoms, self.kappa, grad
        )
        e_pairs, direct, de_born = frame.run(
            pair_energies,
            positions,
            pairs,
            born,
            (self.pair_in[:, None], self.pair_out[:, None]),
            (self.kappa, self.shift, self.cutoff),
            box,
            grad,
        )
        if grad:
            gradient = frame.run(
                chain_rule,
                positions,
                pairs,
                direct,
                de_born + de_atoms,
                born_slope,
                (g_ij, g_ji),
                box,
            )
            frame.add_gradient(gradient)
        return e_atoms + e_pairs


@dataclass(frozen=True)
class Dielectrics:
    """Coulomb constant k_e (kJ·nm/(mol·e²)), solute and solvent dielectric constants,
    and the Debye screening κ (nm⁻¹) of a GB energy."""

    coulomb: float
    solute: float
    solvent: float
    kappa: float = 0.0


def generalized_born(
    charge: np.ndarray,
    rho: np.ndarray,
    scaled: np.ndarray,
    radius: np.ndarray,
    obc: tuple[np.ndarray, np.ndarray, np.ndarray],
    self_energy: Dielectrics,
    pair_energy: Dielectrics,
    surface: tuple[float, float] | None,
    pairs: PairList,
    cutoff: tuple[float | None, bool, float],
    inside: bool = False,
    neck: Neck | None = None,
) -> GeneralizedBorn:
    """Build a :class:`GeneralizedBorn` from per-atom arrays ``[N]``.

    Args:
        charge: q (e); rho: ρ (nm); scaled: s = S ρ (nm); radius: R (nm).
        obc: per-atom (α, β, γ).
        self_energy, pair_energy: the constants of the self and pair terms.
        surface: (4π E_SA in kJ/mol/nm², probe radius in nm) of the ACE term, or None.
        pairs: all pairs i < j (shared with other terms).
        cutoff: (r_c or None, periodic, 1/r_c shift of the pair energy or 0).
        inside: GBSAOBCForce's inside-sphere correction of the integral.
        neck: the GBn2 neck correction, or None.
    """
    i, j = pairs.i.numpy(), pairs.j.numpy()

    def t(a: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64))

    def screen(d: Dielectrics) -> tuple[float, float]:
        return d.coulomb / d.solute, d.coulomb / d.solvent

    self_in, self_out = screen(self_energy)
    pair_in, pair_out = screen(pair_energy)
    if self_energy.kappa != pair_energy.kappa:
        raise ValueError("the self and pair terms of a GB force must have the same kappa")
    ace = None
    if surface is not None:
        ace = t(surface[0] * (radius + surface[1]) ** 2 * radius**6)
    qq = charge[i] * charge[j]
    return GeneralizedBorn(
        pairs=pairs,
        periodic=cutoff[1],
        cutoff=cutoff[0],
        inside=inside,
        neck=neck,
        rho=t(rho),
        radius=t(radius),
        alpha=t(obc[0]),
        beta=t(obc[1]),
        gamma=t(obc[2]),
        rho_i=t(rho[i]),
        rho_j=t(rho[j]),
        s_i=t(scaled[i]),
        s_j=t(scaled[j]),
        self_in=t(-0.5 * self_in * charge**2),
        self_out=t(0.5 * self_out * charge**2),
        surface=ace,
        pair_in=t(-pair_in * qq),
        pair_out=t(pair_out * qq),
        shift=cutoff[2],
        kappa=self_energy.kappa,
    )


def gbsa_obc(force: openmm.GBSAOBCForce, pairs: PairList) -> list[Term]:
    """Compile a GBSAOBCForce (OBC2 Born radii, ACE surface term, offset 0.009 nm)."""
    rows = [force.getParticleParameters(a) for a in range(force.getNumParticles())]
    charge = np.array([magnitude(r[0], unit.elementary_charge) for r in rows])
    radius = np.array([magnitude(r[1], unit.nanometer) for r in rows])
    scale = np.array([float(r[2]) for r in rows])
    rho = radius - OBC_OFFSET
    n = len(rows)
    obc = tuple(np.full(n, value) for value in OBC2)
    dielectrics = Dielectrics(
        COULOMB_CONSTANT, force.getSoluteDielectric(), force.getSolventDielectric()
    )
    method = force.getNonbondedMethod()
    cutoff, shift = None, 0.0
    if method != openmm.GBSAOBCForce.NoCutoff:
        cutoff = force.getCutoffDistance().value_in_unit(unit.nanometer)
        shift = 1.0 / cutoff
    energy_sa = magnitude(force.getSurfaceAreaEnergy(), unit.kilojoule_per_mole / unit.nanometer**2)
    return [
        generalized_born(
            charge,
            rho,
            scale * rho,
            radius,
            obc,
            dielectrics,
            dielectrics,
            (4.0 * math.pi * energy_sa, PROBE_RADIUS) if energy_sa != 0.0 else None,
            pairs,
            (cutoff, method == openmm.GBSAOBCForce.CutoffPeriodic, shift),
            inside=True,
        )
    ]
