"""Chain methods start from dispersed points and flag estimates whose chains never mix."""

from __future__ import annotations

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
