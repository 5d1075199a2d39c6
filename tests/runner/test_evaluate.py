"""What ``result.json`` says about an estimate: errors, convergence flags and R̂."""

from __future__ import annotations

import math

import pytest
import torch

from boltzgen.flows import AffineFlow, GaussianPrior
from boltzgen.records import WeightedSamples
from boltzgen.runner.evaluate import Reference, evaluate
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.smc import SMCSampler
from boltzgen.systems import load_system

F64 = torch.float64


def _smc_samples(**kwargs) -> tuple:
    system = load_system("double_well_2d")
    flow = AffineFlow(torch.zeros(2, dtype=F64), torch.diag(torch.tensor([2.0, 1.1], dtype=F64)))
    model = BoltzmannGenerator(GaussianPrior(2), flow, system.energy)
    smc = SMCSampler(model, system.energy, n_steps=4, step_size=0.02, **kwargs)
    return system, smc.sample(800, torch.Generator().manual_seed(0))


def test_smc_log_z_comes_from_the_unclipped_weights() -> None:
    system, samples = _smc_samples(n_runs=4, clip_fraction=0.05, resample_threshold=0.0)
    result = evaluate(system, samples, None, torch.Generator().manual_seed(0))
    assert result["log_z"]["value"] == pytest.approx(samples.info["log_z"], abs=1e-12)


def test_smc_without_moves_is_not_reported_as_perfectly_efficient() -> None:
    system, samples = _smc_samples(n_runs=8, n_mcmc=0, resample_threshold=1.0)
    result = evaluate(system, samples, None, torch.Generator().manual_seed(0))
    assert result["ess_fraction"] < 0.5
    for entry in (result["log_z"], result["free_energies"]["right_vs_left"]):
        assert entry["rhat"] is None
        # either an honest, non-zero error or no error at all (never "± 0.000")
        assert entry["stderr"] > 0.0 if entry["converged"] else entry["stderr"] is None


def test_smc_runs_that_miss_a_state_are_not_converged() -> None:
    """Runs of 25 particles without moves lose the rare right well (P ≈ 0.8 %)."""
    system, samples = _smc_samples(n_runs=32, n_mcmc=0, resample_threshold=1.0)
    right = system.states["right"](samples.x).reshape(32, -1)
    assert not bool(right.any(dim=1).all())
    result = evaluate(system, samples, None, torch.Generator().manual_seed(0))
    for entry in (result["log_z"], result["free_energies"]["right_vs_left"]):
        assert entry["converged"] is False and entry["stderr"] is None


def test_weighted_draws_with_few_samples_in_a_state_are_not_converged() -> None:
    system = load_system("double_well_2d")
    x = system.sample_reference(600, torch.Generator().manual_seed(4))  # ~5 in the right well
    samples = WeightedSamples(x, torch.zeros(600, dtype=F64), system.energy.energy(x))
    assert 0 < int(system.states["right"](x).sum()) < 10
    entry = evaluate(system, samples, None, torch.Generator().manual_seed(0))["free_energies"]
    assert entry["right_vs_left"]["converged"] is False


def _stuck_chains(n_steps: int = 400, n_chains: int = 8) -> WeightedSamples:
    """Chains that never leave their starting well: half left, half right."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n_steps, n_chains, 2, generator=g, dtype=F64) * 0.3
    x[:, : n_chains // 2, 0] -= 2.5
    x[:, n_chains // 2 :, 0] += 2.5
    x = x.reshape(-1, 2)
    return WeightedSamples(
        x, torch.zeros(len(x), dtype=F64), torch.zeros(len(x), dtype=F64), n_chains=n_chains
    )


def test_chains_that_never_mix_are_flagged_without_a_stderr() -> None:
    system = load_system("double_well_2d")
    result = evaluate(system, _stuck_chains(), None, torch.Generator().manual_seed(0))
    entry = result["free_energies"]["right_vs_left"]
    assert entry["converged"] is False
    assert entry["stderr"] is None
    assert entry["rhat"] > 1.01
    assert math.isfinite(entry["value"])


def test_well_mixed_chains_are_converged_with_rhat_near_one() -> None:
    system = load_system("double_well_2d")
    x = system.sample_reference(4000 * 8, torch.Generator().manual_seed(2))
    zeros = torch.zeros(len(x), dtype=F64)
    samples = WeightedSamples(x, zeros, system.energy.energy(x), n_chains=8)
    entry = evaluate(system, samples, None, torch.Generator().manual_seed(0))["free_energies"]
    entry = entry["right_vs_left"]
    assert entry["converged"] is True and entry["rhat"] < 1.01
    assert entry["stderr"] > 0


def test_a_state_missed_by_one_chain_is_not_converged() -> None:
    system = load_system("double_well_2d")
    x = system.sample_reference(4000 * 8, torch.Generator().manual_seed(3)).reshape(4000, 8, 2)
    x[:, 0, 0] = -2.5 - x[:, 0, 0].abs() * 0.0  # chain 0 stays in the left well
    x = x.reshape(-1, 2)
    zeros = torch.zeros(len(x), dtype=F64)
    samples = WeightedSamples(x, zeros, system.energy.energy(x), n_chains=8)
    entry = evaluate(system, samples, None, torch.Generator().manual_seed(0))["free_energies"]
    assert entry["right_vs_left"]["converged"] is False
    assert "not visited" in entry["right_vs_left"]["note"]


@pytest.mark.parametrize("sampler", ["snf", "flow_perturbation"])
def test_samplers_with_uncalibrated_error_bars_report_no_stderr(sampler: str) -> None:
    """SNF and flow perturbation failed the coverage benchmark (docs/calibration.md)."""
    system = load_system("double_well_2d")
    x = system.sample_reference(20_000, torch.Generator().manual_seed(5))
    zeros = torch.zeros(len(x), dtype=F64)
    samples = WeightedSamples(x, zeros, system.energy.energy(x), info={"sampler": sampler})
    result = evaluate(system, samples, None, torch.Generator().manual_seed(0))
    for entry in (result["log_z"], result["free_energies"]["right_vs_left"]):
        assert entry["stderr"] is None and entry["errors_calibrated"] is False
        assert math.isfinite(entry["value"])
    samples.info["sampler"] = "boltzmann_generator"
    entry = evaluate(system, samples, None, torch.Generator().manual_seed(0))["log_z"]
    assert entry["stderr"] is not None and "errors_calibrated" not in entry


@pytest.mark.parametrize("tail, flagged", [(0.05, False), (0.45, True)])
def test_weights_with_a_heavy_tail_get_no_error_bar(tail: float, flagged: bool) -> None:
    """Exact draws of the double well with log-weights a·ε², ε ~ N(0, 1) independent of x:
    the estimates stay unbiased, but the weights' tail has Pareto shape k = 2a (0.1 or 0.9),
    and with k above 1/2 (infinite variance) the bootstrap and delta-method errors mean
    nothing."""
    system = load_system("double_well_2d")
    g = torch.Generator().manual_seed(6)
    x = system.sample_reference(20_000, g)
    log_weights = tail * torch.randn(len(x), generator=g, dtype=F64).square()
    samples = WeightedSamples(x, log_weights, system.energy.energy(x))
    result = evaluate(system, samples, None, torch.Generator().manual_seed(0))
    assert (result["metrics"]["pareto_k"] > 0.5) is flagged
    for entry in (result["log_z"], result["free_energies"]["right_vs_left"]):
        assert entry["converged"] is not flagged
        assert (entry["stderr"] is None) is flagged
        assert math.isfinite(entry["value"])


def _flow_draws(scale: tuple[float, float], n: int) -> tuple:
    """Draws of a Gaussian flow on the double well, its log density and exact frames."""
    system = load_system("double_well_2d")
    flow = AffineFlow(torch.zeros(2, dtype=F64), torch.diag(torch.tensor(scale, dtype=F64)))
    model = BoltzmannGenerator(GaussianPrior(2), flow, system.energy)
    samples = model.sample(n, torch.Generator().manual_seed(1))
    frames = system.sample_reference(4000, torch.Generator().manual_seed(2))
    reference = Reference(system.energy.energy(frames), x=frames)
    return system, samples, reference, model.log_prob


def test_the_held_out_check_recovers_the_exact_free_energy_from_a_poor_flow() -> None:
    # A flow 0.9 wide across the wells (at x = ±1.7) reaches the rare right well only in
    # its tail: its weights there are too heavy-tailed for an error bar of their own, while
    # BAR with exact frames gives the exact ΔF with one.
    system, samples, reference, log_q = _flow_draws((0.9, 1.1), 20_000)
    result = evaluate(system, samples, reference, torch.Generator().manual_seed(0), log_q)
    assert result["free_energies"]["right_vs_left"]["converged"] is False
    held_out = result["metrics"]["held_out"]
    fe = held_out["free_energies"]["right_vs_left"]
    exact = system.reference_estimates()["right_vs_left"].value
    assert abs(fe["value"] - exact) < 4 * fe["stderr"]
    assert set(held_out["states"]) == {"left", "right"}
    assert held_out["states"]["left"]["misses_mass"] is False


def test_without_a_log_density_there_is_no_held_out_check() -> None:
    system, samples, reference, _ = _flow_draws((2.0, 1.1), 2000)
    result = evaluate(system, samples, reference, torch.Generator().manual_seed(0))
    assert "held_out" not in result["metrics"]


def test_frames_outside_the_flows_support_are_reported_not_scored() -> None:
    system, samples, reference, log_q = _flow_draws((2.0, 1.1), 2000)

    def partial(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x[:, 0] > 1.5, -math.inf, log_q(x))

    result = evaluate(system, samples, reference, torch.Generator().manual_seed(0), partial)
    share = float((reference.x[:, 0] > 1.5).double().mean())
    assert share > 0
    assert result["metrics"]["held_out"] == {"frames_outside_support": pytest.approx(share)}


@pytest.mark.parametrize("tail, flagged", [(0.05, False), (0.45, True)])
def test_observables_of_heavy_tailed_weights_get_no_error_bar(tail: float, flagged: bool) -> None:
    """Haar-uniform U(1) links (L = 4, β = 0.5) weighted by e^{−u} and an independent a·ε²:
    the plaquette stays unbiased (within 4 standard errors of the exact value where the
    tail is light, k = 0.1), and with k = 0.9 it has no error bar and is not converged."""
    system = load_system("u1_2d", L=4, beta=0.5)
    g = torch.Generator().manual_seed(3)
    x = 2 * math.pi * torch.rand(20_000, 2, 4, 4, generator=g, dtype=F64)
    u = system.energy.energy(x)
    log_weights = -u + tail * torch.randn(len(x), generator=g, dtype=F64).square()
    result = evaluate(system, WeightedSamples(x, log_weights, u), None, torch.Generator())
    entry = result["observables"]["plaquette"]
    assert entry["converged"] is not flagged
    assert (entry["stderr"] is None) is flagged
    if not flagged:
        assert abs(entry["value"] - entry["reference"]) < 4 * entry["stderr"], entry
