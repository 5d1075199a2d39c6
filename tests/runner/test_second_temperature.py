"""A run's trained generator weighed at a second temperature: the amortised free energy."""

import math

import pytest
import torch
import yaml

import boltzgen as bg
from boltzgen.metrics import free_energy_difference
from boltzgen.runner.second_temperature import at_second_temperature
from boltzgen.runner.trained import load_trained_generator

RAW = yaml.safe_load(
    """
name: second_temperature
systems: [double_well_2d]
seeds: [0]
n_reference: 300
methods:
  bg:
    method: boltzmann_generator
    n_samples: 300
    flow: {n_layers: 4, hidden: 32}
    train: {loss: fab, steps: 150, batch_size: 128, ais_distributions: 3, ais_leapfrog: 3,
      buffer_size: 2560, buffer_updates: 4}
  pt: {method: parallel_tempering, n_temperatures: 2, n_chains: 4, n_steps: 20, n_warmup: 5}
"""
)


@pytest.fixture(scope="module")
def task(tmp_path_factory, run_on_debug):
    run_dir = run_on_debug(RAW, tmp_path_factory.mktemp("second_temperature"))
    return run_dir / "double_well_2d" / "bg" / "seed0"


def test_at_the_training_temperature_it_is_the_generators_own_estimate(task):
    """T = T₀: the same draws, the same weights, the same ΔF as sampling the model itself."""
    (estimate,) = at_second_temperature(task, [1.0], 2000, seed=3)
    _, trained = load_trained_generator(task)
    system = bg.load_system("double_well_2d")
    samples = trained.model.sample(2000, torch.Generator().manual_seed(3))
    direct = free_energy_difference(samples, system.states["left"], system.states["right"])
    assert estimate.name == "right_vs_left"
    assert estimate.value == pytest.approx(direct.value, rel=1e-12)
    assert estimate.reference == pytest.approx(4.777274129955561, rel=1e-12)
    assert estimate.trained_at == 1.0 and estimate.n_draws == 2000 and estimate.seed == 0


@pytest.mark.parametrize("temperature", [0.8, 1.25])
def test_weighed_at_another_temperature_it_recovers_the_exact_free_energy_there(task, temperature):
    """Against the exact ΔF of the card at T (quadrature), within 4 standard errors."""
    (estimate,) = at_second_temperature(task, [temperature], 20_000, seed=1)
    exact = bg.load_system("double_well_2d", temperature=temperature).reference_estimates()
    assert estimate.reference == pytest.approx(exact["right_vs_left"].value, rel=1e-12)
    assert not math.isclose(estimate.reference, 4.777274129955561, rel_tol=1e-3)
    assert estimate.converged and estimate.stderr is not None
    assert estimate.error < 4 * estimate.stderr
    assert 0 < estimate.ess_fraction < 1
    assert estimate.to_dict()["error"] == estimate.error


def test_a_task_without_a_generator_is_refused(task):
    with pytest.raises(ValueError, match="trains no generator"):
        at_second_temperature(task.parent.parent / "pt" / "seed0", [1.5], 100)
