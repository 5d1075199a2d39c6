"""The coverage benchmark on a small subset: reported error bars cover the exact answers."""

from __future__ import annotations

import pytest
import torch

from boltzgen.systems import load_system
from tests.benchmark_scripts import load_benchmark


@pytest.mark.slow
def test_error_bars_cover_the_exact_answers_on_the_correlated_gaussian() -> None:
    """30 seeds: |z| > 3 is rare and |z| > 2 near 5 % for weighted and chain methods.

    With 30 runs, P(more than 4 of 30 beyond 2σ) is 2 % for a calibrated error and
    P(more than 2 beyond 3σ) is < 0.1 %; the HMC chains on a Gaussian converge.
    """
    calibration = load_benchmark("calibration")
    models = calibration.prepare(load_system("correlated_gaussian_4d"))
    for method in ("bg", "smc", "hmc"):
        runs = []
        for seed in range(30):
            g = torch.Generator().manual_seed(1000 + seed)
            samples = calibration.SAMPLERS[method](models, g)
            runs.append(calibration.outcomes(models.system, samples, g))
        for row in calibration.summarise("correlated_gaussian_4d", method, runs):
            assert row.flagged < 0.2, row
            assert row.over2 <= 4 / 30 and row.over3 <= 2 / 30, row


def test_a_ladder_run_is_also_scored_by_its_mbar_over_every_temperature() -> None:
    """PT on the double well gives two z-scores per free energy: the lowest temperature's
    samples and MBAR over the whole ladder (the estimator of the PT reference sets); one run
    with 8 chains, so the MBAR error is the jackknife's and lands within 4 of its σ."""
    calibration = load_benchmark("calibration")
    system = load_system("double_well_2d")
    models = calibration.Models(system, None, None, None)
    g = torch.Generator().manual_seed(1000)
    outcomes = calibration.outcomes(system, calibration.SAMPLERS["pt"](models, g), g)
    by_name = {o.estimate: o for o in outcomes}
    (name,) = [f"{b}_vs_{a}" for a, b in system.free_energy_pairs]
    assert set(by_name) == {name, f"{name}, MBAR"}
    ladder = by_name[f"{name}, MBAR"]
    assert ladder.converged and abs(ladder.z) < 4
