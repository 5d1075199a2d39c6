"""The glass formers of the catalog, each registered as an energy kind.

* ``kob_andersen`` — the binary 80:20 Lennard-Jones mixture of Kob & Andersen, "Testing
  mode-coupling theory for a supercooled binary Lennard-Jones mixture", PRE 51, 4626
  (1995): ε_AB = 1.5, ε_BB = 0.5, σ_AB = 0.8, σ_BB = 0.88, ρ = 1.2, truncated and shifted
  at 2.5 σ_αβ (T_MCT ≈ 0.435).
* ``kob_andersen_ternary`` — the two-dimensional ternary Kob–Andersen mixture used by
  Jung, Biroli & Berthier, "Normalizing flows as an enhanced sampling method for
  atomistic supercooled liquids", arXiv 2404.09914: σ_AA 1, σ_BB 0.88, σ_CC 0.94,
  σ_AB 0.8, σ_AC 0.9, σ_BC 0.8; ε_AA 1, ε_BB 0.5, ε_CC 0.75, ε_AB 1.5, ε_AC 0.75,
  ε_BC 1.5; LJ plus c₀ + c₂(r/σ)² + c₄(r/σ)⁴ so that V, V′, V″ vanish at 2.5 σ_αβ;
  N_A : N_B : N_C = 600 : 330 : 360 at ρ = 1.1921 for N = 1290 (the model ``KA2-2D`` and
  the example configurations of the first author's public code, GerhardJung/StructDynGlass).
* ``polydisperse_soft_spheres`` — the continuously polydisperse, non-additive soft
  spheres of Ninarello, Berthier & Coslovich, PRX 7, 021039 (2017), arXiv 1704.08864:
  v = (σ_ij/r)¹² + c₀ + c₂(r/σ_ij)² + c₄(r/σ_ij)⁴ cut at 1.25 σ_ij,
  σ_ij = ½(σ_i + σ_j)(1 − 0.2|σ_i − σ_j|), P(σ) ∝ σ⁻³ on [σ_min, σ_max] with
  σ_min/σ_max = 0.45 and mean diameter 1, ρ = 1 in three dimensions (T_MCT ≈ 0.108), the
  model and state point as Shakerpoor, Flenner & Szamel, Soft Matter (2020),
  DOI 10.1039/c9sm02022e, §2.1, state them citing the PRX; the cut, c₀, c₂, c₄, the
  non-additivity and P(σ) also as in the public codes GerhardJung/StructDynGlass and
  GillesBonne/swap_mc (the card says where each number comes from).
"""

from __future__ import annotations

import torch
from torch import Tensor

from boltzgen.energies.particles.box import cubic_box
from boltzgen.energies.particles.energy import ParticleEnergy
from boltzgen.energies.particles.potentials import CutInversePowers
from boltzgen.energies.registry import register_energy_kind

LENNARD_JONES = ((4.0, 12), (-4.0, 6))
KA_SIGMA = ((1.0, 0.8), (0.8, 0.88))
KA_EPSILON = ((1.0, 1.5), (1.5, 0.5))
KA_FRACTIONS = (0.8, 0.2)
TERNARY_SIGMA = ((1.0, 0.8, 0.9), (0.8, 0.88, 0.8), (0.9, 0.8, 0.94))
TERNARY_EPSILON = ((1.0, 1.5, 0.75), (1.5, 0.5, 1.5), (0.75, 1.5, 0.75))
TERNARY_FRACTIONS = (600 / 1290, 330 / 1290, 360 / 1290)
SIZE_RATIO = 0.45
"""σ_min/σ_max of the polydisperse model."""
NON_ADDITIVITY = 0.2


def species_counts(n_particles: int, fractions: tuple[float, ...]) -> list[int]:
    """Particles per species: rounded fractions, species A absorbing the remainder."""
    rest = [round(f * n_particles) for f in fractions[1:]]
    return [n_particles - sum(rest), *rest]


def mixture(
    n_particles: int,
    density: float,
    temperature: float,
    dimension: int,
    fractions: tuple[float, ...],
    sigma: tuple[tuple[float, ...], ...],
    epsilon: tuple[tuple[float, ...], ...],
    potential: CutInversePowers,
    neighbours: str,
) -> ParticleEnergy:
    """A discrete mixture: species by block (A first), σ_ij and ε_ij looked up by species."""
    counts = species_counts(n_particles, fractions)
    species = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    sig, eps = torch.tensor(sigma, dtype=torch.float64), torch.tensor(epsilon, dtype=torch.float64)
    return ParticleEnergy(
        cubic_box(n_particles, density, dimension),
        species,
        sig.diagonal()[species],
        sig[species][:, species],
        eps[species][:, species],
        potential,
        temperature,
        neighbours,
    )


@register_energy_kind("kob_andersen")
def kob_andersen(
    n_particles: int = 256,
    density: float = 1.2,
    temperature: float = 0.8,
    dimension: int = 3,
    neighbours: str = "auto",
) -> ParticleEnergy:
    """The 80:20 Kob–Andersen mixture, truncated and shifted at 2.5 σ_αβ."""
    potential = CutInversePowers(LENNARD_JONES, 2.5, "shift")
    return mixture(
        n_particles,
        density,
        temperature,
        dimension,
        KA_FRACTIONS,
        KA_SIGMA,
        KA_EPSILON,
        potential,
        neighbours,
    )


@register_energy_kind("kob_andersen_ternary")
def kob_andersen_ternary(
    n_particles: int = 1290,
    density: float = 1.1921,
    temperature: float = 0.5,
    dimension: int = 2,
    neighbours: str = "auto",
) -> ParticleEnergy:
    """The 2-D ternary Kob–Andersen mixture, smoothed so V, V′, V″ vanish at 2.5 σ_αβ."""
    potential = CutInversePowers(LENNARD_JONES, 2.5, "quartic")
    return mixture(
        n_particles,
        density,
        temperature,
        dimension,
        TERNARY_FRACTIONS,
        TERNARY_SIGMA,
        TERNARY_EPSILON,
        potential,
        neighbours,
    )


def power_law_diameters(n_particles: int, size_ratio: float = SIZE_RATIO) -> Tensor:
    """σ_i = F⁻¹((i − ½)/N) for P(σ) ∝ σ⁻³ on [σ_min, σ_max], scaled to mean 1.

    F(σ) = (σ_min⁻² − σ⁻²)/(σ_min⁻² − σ_max⁻²); the deterministic quantiles reproduce the
    distribution without sample-to-sample disorder. The mean of P is
    2σ_minσ_max/(σ_min + σ_max), which fixes σ_max = (1 + r)/(2r) for mean 1, r = σ_min/σ_max.
    """
    sigma_max = (1 + size_ratio) / (2 * size_ratio)
    sigma_min = size_ratio * sigma_max
    q = (torch.arange(n_particles, dtype=torch.float64) + 0.5) / n_particles
    inverse_square = sigma_min**-2 - q * (sigma_min**-2 - sigma_max**-2)
    return inverse_square.rsqrt()


def non_additive_sigma(diameters: Tensor, non_additivity: float = NON_ADDITIVITY) -> Tensor:
    """σ_ij = ½(σ_i + σ_j)(1 − ε|σ_i − σ_j|) ``[N, N]``."""
    d_i, d_j = diameters[:, None], diameters[None, :]
    return 0.5 * (d_i + d_j) * (1 - non_additivity * (d_i - d_j).abs())


@register_energy_kind("polydisperse_soft_spheres")
def polydisperse_soft_spheres(
    n_particles: int = 256,
    density: float = 1.0,
    temperature: float = 0.2,
    dimension: int = 3,
    neighbours: str = "auto",
) -> ParticleEnergy:
    """Continuously polydisperse non-additive (σ/r)¹² spheres, smoothed at 1.25 σ_ij."""
    diameters = power_law_diameters(n_particles)
    sigma = non_additive_sigma(diameters)
    return ParticleEnergy(
        cubic_box(n_particles, density, dimension),
        torch.arange(n_particles),
        diameters,
        sigma,
        torch.ones_like(sigma),
        CutInversePowers(((1.0, 12),), 1.25, "quartic"),
        temperature,
        neighbours,
    )
