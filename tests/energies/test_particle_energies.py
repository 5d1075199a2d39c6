"""Glass-former energies: OpenMM agreement, cutoff smoothness, symmetries, cell lists, berni."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import openmm
import pytest
import torch
import yaml

import boltzgen as bg
from boltzgen.energies.particles import (
    CutInversePowers,
    ParticleEnergy,
    kob_andersen,
    kob_andersen_ternary,
    polydisperse_soft_spheres,
)
from boltzgen.energies.particles.box import lattice_positions, wrap
from boltzgen.energies.particles.energy import inherent_structures
from boltzgen.energies.particles.models import (
    KA_EPSILON,
    KA_SIGMA,
    LENNARD_JONES,
    SIZE_RATIO,
    TERNARY_EPSILON,
    TERNARY_SIGMA,
    power_law_diameters,
)
from boltzgen.energies.particles.openmm_system import to_openmm
from boltzgen.energies.units import MOLAR_GAS_CONSTANT
from boltzgen.samplers.md import MDConfig, MolecularDynamics
from boltzgen.systems import CATALOG
from tests.energies.openmm_reference import reference

BUILDERS = {
    "kob_andersen_3d": lambda: kob_andersen(n_particles=256),
    "kob_andersen_2d_ternary": lambda: kob_andersen_ternary(n_particles=64),
    "polydisperse_3d": lambda: polydisperse_soft_spheres(n_particles=128),
}


@functools.cache
def _model(name: str) -> ParticleEnergy:
    """One instance per model (its relaxed start is computed once)."""
    return BUILDERS[name]()


MODELS = {name: functools.partial(_model, name) for name in BUILDERS}


def _configurations(energy: ParticleEnergy, n: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    x = energy.minimum.expand(n, -1, -1)
    return x + 0.05 * torch.randn(x.shape, generator=generator, dtype=torch.float64)


def _openmm_system(energy: ParticleEnergy) -> openmm.System:
    """The same model as an OpenMM CustomNonbondedForce with a periodic cutoff."""
    c0, c2, c4 = energy.potential.coefficients
    powers = " + ".join(f"({a})*x^(-{p})" for a, p in energy.potential.terms)
    expression = (
        f"eps*step({energy.potential.x_cut} - x)*({powers} + ({c0}) + ({c2})*x^2 + ({c4})*x^4);"
        " x = r/sig; sig = sigmas(a1, a2); eps = epsilons(a1, a2)"
    )
    n = energy.n_particles
    force = openmm.CustomNonbondedForce(expression)
    force.addPerParticleParameter("a")
    sig = energy.sigma2.sqrt().numpy()
    force.addTabulatedFunction("sigmas", openmm.Discrete2DFunction(n, n, sig.T.ravel().tolist()))
    eps = energy.epsilon.numpy()
    force.addTabulatedFunction("epsilons", openmm.Discrete2DFunction(n, n, eps.T.ravel().tolist()))
    force.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
    force.setCutoffDistance(energy.r_max)
    system = openmm.System()
    for i in range(n):
        system.addParticle(1.0)
        force.addParticle([float(i)])
    system.addForce(force)
    sides = energy.box.tolist() + [10.0 * energy.r_max] * (3 - energy.box.numel())
    system.setDefaultPeriodicBoxVectors(
        openmm.Vec3(sides[0], 0, 0), openmm.Vec3(0, sides[1], 0), openmm.Vec3(0, 0, sides[2])
    )
    return system


def _as_3d(x: torch.Tensor) -> np.ndarray:
    pad = torch.zeros(*x.shape[:-1], 3 - x.shape[-1], dtype=x.dtype)
    return torch.cat([x, pad], -1).numpy()


@pytest.mark.parametrize("name", MODELS)
def test_energies_and_forces_match_openmm(name):
    energy = MODELS[name]()
    x = _configurations(energy)
    u, f = energy.energy_and_force(x)
    expected_u, expected_f = reference(_openmm_system(energy), _as_3d(x))
    d = x.shape[-1]
    np.testing.assert_allclose(u.numpy() * energy.temperature, expected_u, rtol=1e-6)
    scale = np.abs(expected_f).max()
    np.testing.assert_allclose(
        f.numpy() * energy.temperature, expected_f[..., :d], rtol=0, atol=1e-6 * scale
    )


@pytest.mark.parametrize("name", MODELS)
def test_forces_are_minus_the_gradient_by_finite_differences(name):
    energy = MODELS[name]()
    x = _configurations(energy, 1)
    _, f = energy.energy_and_force(x)
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    h = 1e-5
    slope = (energy.energy(x + h * direction) - energy.energy(x - h * direction)) / (2 * h)
    assert float(slope) == pytest.approx(-float((f * direction).sum()), rel=1e-6)


@pytest.mark.parametrize(
    "potential",
    [
        CutInversePowers(((4.0, 12), (-4.0, 6)), 2.5, "quartic"),
        CutInversePowers(((1.0, 12),), 1.25, "quartic"),
    ],
    ids=["lj_quartic", "soft_sphere_quartic"],
)
def test_smoothing_makes_v_and_its_first_two_derivatives_vanish_at_the_cutoff(potential):
    for k in range(3):
        scale = abs(potential.value(0.9 * potential.x_cut, k)) + 1.0
        assert abs(potential.value(potential.x_cut, k)) < 1e-12 * scale
    r = torch.tensor([potential.x_cut - 1e-7, potential.x_cut + 1e-7], dtype=torch.float64)
    values = potential(r**2)
    assert float(values.abs().max()) < 1e-12


def test_polydisperse_smoothing_has_the_published_coefficients():
    c0, c2, c4 = CutInversePowers(((1.0, 12),), 1.25, "quartic").coefficients
    assert (c0, c2, c4) == pytest.approx((-28 / 1.25**12, 48 / 1.25**14, -21 / 1.25**16))


def test_shifted_lennard_jones_is_continuous_at_the_cutoff():
    potential = CutInversePowers(((4.0, 12), (-4.0, 6)), 2.5, "shift")
    assert potential.value(2.5) == pytest.approx(0.0, abs=1e-15)
    assert potential.value(2.5, 1) != pytest.approx(0.0, abs=1e-3)  # the force jumps


@pytest.mark.parametrize("name", MODELS)
def test_translation_with_wrapping_and_same_species_permutation_leave_u_unchanged(name):
    energy = MODELS[name]()
    x = _configurations(energy, 2)
    u = energy.energy(x)
    shifted = x + torch.tensor([0.37, -1.21, 2.9][: x.shape[-1]], dtype=x.dtype)
    wrapped = shifted - energy.box * torch.floor(shifted / energy.box)
    torch.testing.assert_close(energy.energy(wrapped), u, rtol=1e-12, atol=1e-9)
    order = torch.arange(energy.n_particles)
    for s in energy.species.unique():
        members = torch.nonzero(energy.species == s).flatten()
        order[members] = members[torch.randperm(members.numel())]
    torch.testing.assert_close(energy.energy(x[:, order]), u, rtol=1e-12, atol=1e-9)


def test_cell_list_gives_the_all_pairs_energy():
    cells = kob_andersen(n_particles=600, neighbours="cells")
    dense = kob_andersen(n_particles=600, neighbours="dense")
    generator = torch.Generator().manual_seed(3)
    sites = lattice_positions(600, cells.box, generator).expand(2, -1, -1)
    x = sites + 0.1 * torch.randn(sites.shape, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(cells.energy(x), dense.energy(x), rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(cells.force(x), dense.force(x), rtol=1e-10, atol=1e-9)


def test_cell_list_takes_positions_far_outside_the_box():
    """An exploding leapfrog trajectory (|x| ≫ L) is a batch row, not an indexing crash."""
    cells = kob_andersen(n_particles=600, neighbours="cells")
    dense = kob_andersen(n_particles=600, neighbours="dense")
    generator = torch.Generator().manual_seed(4)
    x = lattice_positions(600, cells.box, generator).expand(3, -1, -1).clone()
    x[1] += 7 * cells.box  # periodic images: the same energy
    far = 1e18 * torch.rand(2000, 3, generator=generator, dtype=torch.float64)
    far = far[(wrap(far, cells.box) < 0).any(1)][:5]  # x − L⌊x/L⌋ rounds below 0 here
    assert far.shape == (5, 3)
    x[2, :5] = far
    u = cells.energy(x)
    torch.testing.assert_close(u[:2], dense.energy(x[:2]), rtol=1e-9, atol=1e-9)
    assert u.shape == (3,)


def test_particle_energies_sum_to_twice_the_total_and_are_charged_one_nth():
    energy = kob_andersen(n_particles=256)
    x = _configurations(energy, 2)
    index = torch.arange(energy.n_particles).expand(2, -1)
    before = energy.counter.energy
    per_particle = energy.particle_energies(x, index)
    assert energy.counter.energy - before == 2
    torch.testing.assert_close(per_particle.sum(-1), 2 * energy.energy(x), rtol=1e-12, atol=1e-9)


def test_power_law_diameters_have_the_model_size_ratio_and_unit_mean():
    sigma = power_law_diameters(100_000)
    assert float(sigma.min() / sigma.max()) == pytest.approx(SIZE_RATIO, rel=1e-3)
    assert float(sigma.mean()) == pytest.approx(1.0, rel=1e-4)
    log_density = torch.histc(sigma, bins=10)
    centres = sigma.min() + (torch.arange(10) + 0.5) * (sigma.max() - sigma.min()) / 10
    ratio = log_density * centres**3
    assert float(ratio.std() / ratio.mean()) < 0.02  # P(σ) ∝ σ⁻³


def test_load_system_takes_keyword_overrides_and_exposes_box_and_species():
    system = bg.load_system("kob_andersen_3d", n_particles=200, density=1.1, temperature=0.6)
    assert system.energy.temperature == 0.6 and isinstance(system.energy, ParticleEnergy)
    assert system.energy.event_shape == (200, 3)
    assert float(system.box.prod()) == pytest.approx(200 / 1.1)
    assert system.species.tolist().count(1) == 40
    assert math.isfinite(float(system.energy.energy(system.initial_positions[None])[0]))


def test_kob_andersen_parameters_are_berni_s():
    berni = pytest.importorskip("berni")
    model = berni.models.get("kob_andersen")
    lj = model["potential"][0]["parameters"]
    assert lj["sigma"] == [list(row) for row in KA_SIGMA]
    assert lj["epsilon"] == [list(row) for row in KA_EPSILON]
    rcut = model["cutoff"][0]["parameters"]["rcut"]
    assert model["cutoff"][0]["type"] == "cut_shift"
    assert np.allclose(rcut, 2.5 * np.array(KA_SIGMA))


def test_ternary_parameters_are_berni_s_ka2_but_for_the_three_2d_entries():
    """berni's ``kob_andersen_2`` is the 3-D ternary KA2 (PRL 125, 085505 (2020)); the 2-D
    model of the authors' code (``KA2-2D``, GerhardJung/StructDynGlass) shares every σ and ε
    with it except σ_BC = 0.8, ε_AC = 0.75 and ε_BC = 1.5."""
    berni = pytest.importorskip("berni")
    lj = berni.models.get("kob_andersen_2")["potential"][0]["parameters"]
    two_d = {("sigma", 1, 2): 0.8, ("epsilon", 0, 2): 0.75, ("epsilon", 1, 2): 1.5}
    for name, ours in (("sigma", TERNARY_SIGMA), ("epsilon", TERNARY_EPSILON)):
        for i, j in itertools.product(range(3), repeat=2):
            key = (name, min(i, j), max(i, j))
            assert ours[i][j] == two_d.get(key, lj[name][i][j]), key


AUTHORS_COEFFICIENTS = {
    "lennard_jones": (0.04049023795, -0.00970155098, 0.00062012616),
    "soft_spheres": (-1.92414534861, 2.11106232533, -0.5910974510),
}
"""(c₀, c₂, c₄) as printed in the authors' code (``struct_epot.h`` of GerhardJung/StructDynGlass,
the LJ ones in units of 4ε)."""


def test_smoothing_coefficients_are_those_of_the_authors_code():
    lj = CutInversePowers(LENNARD_JONES, 2.5, "quartic").coefficients
    soft = CutInversePowers(((1.0, 12),), 1.25, "quartic").coefficients
    np.testing.assert_allclose(np.array(lj) / 4, AUTHORS_COEFFICIENTS["lennard_jones"], atol=1e-10)
    np.testing.assert_allclose(soft, AUTHORS_COEFFICIENTS["soft_spheres"], atol=1e-10)


def test_the_ternary_card_has_the_box_and_composition_of_the_authors_configurations():
    """N = 1290 particles, 600:330:360, in a square of side 32.8962 (ρ = 1290/32.8962² =
    1.1921): the example configurations of GerhardJung/StructDynGlass (``data/Cnf-*/``)."""
    card = yaml.safe_load((CATALOG / "kob_andersen_2d_ternary.yaml").read_text())
    energy = kob_andersen_ternary(**card["energy"]["params"])
    side = torch.full((2,), 32.8962, dtype=energy.box.dtype)
    torch.testing.assert_close(energy.box, side, atol=1e-3, rtol=0)
    assert torch.bincount(energy.species).tolist() == [600, 330, 360]


@pytest.mark.parametrize("name", list(MODELS))
def test_the_library_openmm_system_gives_the_reduced_energy_at_t_kelvin(name):
    """… and the force (in the plane z = 0 for the 2-D model, with no z component)."""
    energy = MODELS[name]()
    x = _configurations(energy, 2)
    expected, forces = reference(to_openmm(energy), _as_3d(x))
    kt = MOLAR_GAS_CONSTANT * energy.temperature  # T* runs as T* kelvin
    np.testing.assert_allclose(energy.energy(x).numpy(), expected / kt, rtol=1e-6)
    d = x.shape[-1]
    scale = np.abs(forces).max()
    np.testing.assert_allclose(energy.force(x).numpy() * kt, forces[..., :d], atol=1e-6 * scale)
    assert np.all(forces[..., d:] == 0.0)


@pytest.mark.parametrize(
    "name, n, dimensions", [("kob_andersen_3d", 200, 3), ("kob_andersen_2d_ternary", 64, 2)]
)
def test_md_runs_on_a_particle_system_at_its_reduced_temperature(name, n, dimensions):
    system = bg.load_system(name, n_particles=n, temperature=1.0)
    openmm_system, d = system.md_system
    assert d == dimensions
    config = MDConfig(timestep_fs=5.0, frame_interval=20, platform="Reference")
    md = MolecularDynamics(openmm_system, system.temperature, config, dimensions)
    samples = md.sample(system.initial_positions, 5, torch.Generator().manual_seed(0), 100)
    assert samples.x.shape == (5, n, dimensions)
    torch.testing.assert_close(samples.energies, system.energy.energy(samples.x))


def test_the_2d_model_is_no_openmm_system_of_the_card():
    """Its OpenMM system (laid in a plane) serves MD only; the PT and reference routes that
    read ``openmm_system`` expect 3-D positions and do not see it."""
    system = bg.load_system("kob_andersen_2d_ternary", n_particles=64)
    assert system.openmm_system is None and system.md_system[1] == 2
    assert bg.load_system("double_well_2d").md_system is None


def test_inherent_structures_are_minima_below_the_start():
    energy = _model("kob_andersen_2d_ternary")
    x = _configurations(energy, 2) + 0.1
    minima, per_particle = inherent_structures(energy, x)
    assert bool((per_particle < energy.potential_energy(x) / energy.n_particles).all())
    force = energy.force(minima) * energy.temperature
    assert float(force.abs().max()) < 1e-4  # pair forces near the minimum are O(10)
