"""Chain methods start from dispersed points and flag estimates whose chains never mix."""

from __future__ import annotations

import pytest
import torch

from boltzgen.runner.evaluate import evaluate
from boltzgen.runner.methods import MethodContext, hmc
from boltzgen.runner.methods.hmc import HMCParams
from boltzgen.systems import load_system


def test_dispersed_starts_are_wider_than_the_target_and_cover_both_wells() -> None:
    system = load_system("double_well_2d")
    starts = system.dispersed_starts(400, torch.Generator().manual_seed(0))
    exact = system.sample_reference(400, torch.Generator().manual_seed(1))
    assert starts.shape == (400, 2)
    assert bool(system.states["left"](starts).any() and system.states["right"](starts).any())
    assert float(starts[:, 1].var()) > 1.5 * float(exact[:, 1].var())


def test_hmc_on_the_many_well_is_flagged_not_converged() -> None:
    """2¹⁶ modes, barriers of ~9 kT: HMC chains stay in their wells, so R̂ ≫ 1.01."""
    system = load_system("many_well_32d")
    params = HMCParams(n_chains=16, n_warmup=20, n_steps=100, n_leapfrog=5, step_size=0.05)
    generator = torch.Generator().manual_seed(0)
    samples = hmc.run(system, params, generator, MethodContext())
    result = evaluate(system, samples, None, generator)
    entry = result["free_energies"]["left_vs_right"]
    assert entry["converged"] is False
    assert entry["stderr"] is None
    assert entry["rhat"] is None or entry["rhat"] > 1.01


@pytest.mark.parametrize(
    ("name", "n_particles"), [("kob_andersen_2d_ternary", 36), ("polydisperse_3d", 100)]
)
def test_particle_starts_are_distinct_relaxed_and_free_of_overlaps(name, n_particles) -> None:
    system = load_system(name, n_particles=n_particles)
    energy = system.energy
    starts = system.dispersed_starts(5, torch.Generator().manual_seed(0))
    again = system.dispersed_starts(5, torch.Generator().manual_seed(0))
    assert starts.shape == (5, *energy.event_shape)
    torch.testing.assert_close(starts, again)  # the generator decides
    gaps = (starts[:, None] - starts[None]).flatten(2).abs().amax(-1)
    assert float(gaps[~torch.eye(5, dtype=torch.bool)].min()) > 0.5  # all five differ
    pairs = energy.pairs(starts)
    contact = (pairs.r2 / energy.sigma2[pairs.i, pairs.j]).sqrt().amin(-1)
    assert bool((contact > 0.85).all())  # no pair inside the steep core
    u_per_particle = energy.potential_energy(starts) / n_particles
    assert bool(
        (u_per_particle < energy.potential_energy(energy.minimum[None]) / n_particles + 1.0).all()
    )
