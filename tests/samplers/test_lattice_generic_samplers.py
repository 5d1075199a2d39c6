"""Parallel tempering, SMC and SNF on the lattice energies recover exact answers.

On 4×4 lattices: PT the exact U(1) plaquette and ⟨Q²⟩ at β = 4 (where plain HMC hardly moves
Q), SMC the exact ln Z of the relaxed Ising field (= the spin model's, Kaufman/enumeration)
and of U(1) (character expansion), SNF the exact U(1) ln Z and plaquette — each within 4
standard errors — and each sampler's evaluation count against its formula. SMC and SNF start
U(1) from the uniform Haar measure of the links, whose log-density does not depend on the
links (a zero score; both samplers used to fail on it in autograd). Through the runner, on the
``u1_2d`` and ``ising_2d`` cards: ``parallel_tempering`` writes the exact plaquette to
result.json, ``smc`` (from the card's own flow) the exact ln Z and plaquette or Ising energy
density, ``snf`` (the card's own layers and prior) the exact U(1) ln Z and plaquette.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from boltzgen.energies.lattice import IsingGaussian, U1Wilson, enumerate_ising, u1_exact
from boltzgen.flows import GaussianPrior
from boltzgen.flows.base import Flatten
from boltzgen.flows.gauge import UniformAnglePrior
from boltzgen.metrics import log_partition_function, observable_estimate
from boltzgen.metrics.runs import samples_runs_log_z
from boltzgen.observables.lattice import plaquette, q2
from boltzgen.records import WeightedSamples
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.parallel_tempering import (
    ParallelTempering,
    geometric_ladder,
    pt_evaluations,
)
from boltzgen.samplers.smc import SMCSampler, flow_score, smc_evaluations
from boltzgen.samplers.snf import (
    InterpolatedEnergy,
    MALABlock,
    StochasticNormalizingFlow,
    snf_evaluations,
)

F64 = torch.float64


def assert_within_sigma(samples: WeightedSamples, series: torch.Tensor, exact: float) -> None:
    est = observable_estimate(samples, series)
    assert abs(est.value - exact) < 4 * est.stderr, (est, exact)


def _haar_model(energy: U1Wilson) -> BoltzmannGenerator:
    """Uniform links on [0, 2π)^{2V} reshaped to ``[B, 2, L, L]``: q = (2π)^{−2V}, Z_q = 1."""
    return BoltzmannGenerator(UniformAnglePrior(energy.dim), Flatten(energy.event_shape), energy)


def test_haar_prior_has_zero_score_in_smc_and_snf() -> None:
    """A log q (or u_Z) that does not depend on x has gradient 0, not an autograd error."""
    energy = U1Wilson(L=4, beta=2.0)
    x = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    log_q, grad = flow_score(_haar_model(energy), x)
    torch.testing.assert_close(log_q, torch.full((3,), -32 * math.log(2 * math.pi), dtype=F64))
    assert grad.shape == x.shape and not bool(grad.any())
    u_z, g_z = InterpolatedEnergy(UniformAnglePrior(32), energy).prior_and_grad(x.reshape(3, -1))
    torch.testing.assert_close(u_z, -log_q)
    assert g_z.shape == (3, 32) and not bool(g_z.any())


def test_parallel_tempering_on_u1_at_beta_4_recovers_plaquette_and_q2() -> None:
    """PT over β_eff = 4 … 1 (5 rungs, HMC moves): plaquette and ⟨Q²⟩ (0.0319) within 4
    standard errors of the character expansion; cost K·C·(1 + (warm-up + steps)·L)."""
    energy = U1Wilson(L=4, beta=4.0)
    pt = ParallelTempering(energy, geometric_ladder(1.0, 4.0, 5), step_size=0.2, n_leapfrog=5)
    x0 = torch.zeros(16, 2, 4, 4, dtype=F64)
    samples = pt.sample(x0, 1000, torch.Generator().manual_seed(0), n_warmup=100)
    assert samples.cost.force_evals == pt_evaluations(5, 16, 1100, "hmc", 5)
    assert samples.cost.energy_evals == 0
    assert samples.info["round_trips"] > 100  # Q decorrelates through the hot rungs
    exact = u1_exact(4, 4.0)
    assert_within_sigma(samples, plaquette(samples.x), exact.plaquette)
    assert_within_sigma(samples, q2(samples.x), exact.q2)


def _ising_case() -> tuple[BoltzmannGenerator, float]:
    """Relaxed Ising field at K = 0.44 from N(0, 3²) per site; ln Z by enumeration."""
    energy = IsingGaussian(L=4, K=0.44)
    prior = GaussianPrior(energy.dim, std=torch.full((energy.dim,), 3.0, dtype=F64))
    model = BoltzmannGenerator(prior, Flatten(energy.event_shape), energy)
    return model, enumerate_ising(4, 0.44).log_z


def _u1_case() -> tuple[BoltzmannGenerator, float]:
    """U(1) at β = 4 from the Haar measure; ln Z by the character expansion."""
    energy = U1Wilson(L=4, beta=4.0)
    return _haar_model(energy), u1_exact(4, 4.0).log_z


@pytest.mark.parametrize("case", [_ising_case, _u1_case], ids=["ising_K0.44", "u1_beta4"])
def test_smc_recovers_the_exact_log_z(case) -> None:
    """20 independent SMC runs (30 stages, HMC moves): ln Ẑ within 4 standard errors of the
    exact ln Z, the error from the spread of the runs; cost N·(1 + stages·sweeps·L)."""
    model, exact = case()
    smc = SMCSampler(
        model, model.energy, n_steps=30, kernel="hmc", step_size=0.1, n_mcmc=2, n_runs=20
    )
    samples = smc.sample(3000, torch.Generator().manual_seed(0))
    assert samples.cost.force_evals == smc_evaluations(3000, 30, 2, "hmc", 5)
    assert samples.cost.energy_evals == 0
    est = samples_runs_log_z(samples)
    assert abs(est.value - exact) < 4 * est.stderr, (est, exact)


def test_snf_annealed_mala_on_u1_recovers_log_z_and_plaquette() -> None:
    """Haar prior and 20 MALA blocks at λ = 0.05 … 1 (5 steps each), no flow layers: the
    path-weighted ln Z (delta-method error of the i.i.d. path weights, ESS ≈ 10%) and the
    reweighted plaquette within 4 standard errors of the exact β = 2 values. Back-to-back
    blocks reuse their start, so forces are n·(1 + K·steps), below snf_evaluations'
    n·K·(steps + 1) (blocks separated by flow layers)."""
    energy = U1Wilson(L=4, beta=2.0)
    blocks = [MALABlock((k + 1) / 20, 0.1, 5, trainable=False) for k in range(20)]
    snf = StochasticNormalizingFlow(UniformAnglePrior(energy.dim), blocks, energy)
    samples = snf.sample(4000, torch.Generator().manual_seed(0))
    assert samples.cost.force_evals == 4000 * (1 + 20 * 5) <= snf_evaluations(4000, 20, 5)
    assert samples.info["ess_fraction"] > 0.05
    exact = u1_exact(4, 2.0)
    assert abs(samples.info["log_z"] - exact.log_z) < 4 * samples.info["log_z_se"]
    assert_within_sigma(samples, plaquette(samples.x), exact.plaquette)


def _run_on_card(
    run_experiment, card: dict[str, Any], method: dict[str, Any], budget: int
) -> tuple[dict[str, Any], Path]:
    """``method`` on ``card`` (seed 0) through the runner (the ``run_experiment`` fixture)
    within ``budget`` target evaluations: the task's result.json and its folder."""
    raw = {
        "name": "lattice_runner",
        "systems": [card],
        "seeds": [0],
        "n_reference": 100,
        "budget": {"energy_evals": budget},
        "methods": {"m": method},
    }
    folder = run_experiment(raw) / card["name"] / "m" / "seed0"
    return json.loads((folder / "result.json").read_text()), folder


def test_runner_parallel_tempering_on_u1_card_reports_the_exact_plaquette(run_experiment) -> None:
    """``parallel_tempering`` on ``u1_2d`` (L = 4, β = 4) within a 2·10⁵ budget: result.json's
    plaquette within 4 standard errors of its exact reference; cost = pt_evaluations."""
    budget = 200_000
    method = {
        "method": "parallel_tempering",
        "n_chains": 16,
        "n_temperatures": 5,
        "t_max_factor": 4.0,
        "n_leapfrog": 5,
        "n_warmup": 100,
    }
    card = {"name": "u1_2d", "overrides": {"L": 4, "beta": 4.0}}
    result, _ = _run_on_card(run_experiment, card, method, budget)
    n_steps = result["config"]["n_steps"]
    assert result["cost"]["force_evals"] == pt_evaluations(5, 16, 100 + n_steps, "hmc", 5)
    assert result["cost"]["force_evals"] <= budget
    entry = result["observables"]["plaquette"]
    assert entry["reference"] == pytest.approx(u1_exact(4, 4.0).plaquette, abs=1e-12)
    assert abs(entry["value"] - entry["reference"]) < 4 * entry["stderr"]


U1_CARD = {"name": "u1_2d", "overrides": {"L": 4, "beta": 2.0}}
ISING_CARD = {"name": "ising_2d", "overrides": {"L": 4}}
U1_EXACT, ISING_EXACT = u1_exact(4, 2.0), enumerate_ising(4, 0.44)
SMC_CASES = {
    "u1_2d": (
        U1_CARD,
        {"kind": "u1_gauge", "coupling": "spline", "n_layers": 1, "hidden": 4, "n_bins": 2},
        {"plaquette": U1_EXACT.plaquette},
        U1_EXACT.log_z,
    ),
    "ising_2d": (
        ISING_CARD,
        {"kind": "lattice", "n_layers": 2, "hidden": 4},
        {"energy_density": ISING_EXACT.energy_density},
        ISING_EXACT.log_z,
    ),
}
SMC_TRAIN = {"loss": "reverse_kl", "steps": 200, "batch_size": 64, "lr": 0.01}
SMC_PARTICLES, SMC_STAGES = 2000, 15


@pytest.mark.parametrize("system", list(SMC_CASES))
def test_runner_smc_on_lattice_cards_recovers_the_exact_log_z_and_observable(
    run_experiment, system
) -> None:
    """``smc`` from the card's own flow (U(1): one gauge-equivariant layer on the Haar prior;
    Ising: two checkerboard layers on N(0, 1)), trained 200 reverse-KL steps, then 8 runs of
    250 particles through 15 stages of 2 HMC sweeps: result.json's ln Z and plaquette (U(1),
    β = 2) or spin energy density (Ising, K = 0.44) within 4 standard errors (the spread of the
    runs) of the exact values; cost = steps · batch for training, smc_evaluations after."""
    card, flow, observables, log_z = SMC_CASES[system]
    train_evals = SMC_TRAIN["steps"] * SMC_TRAIN["batch_size"]
    sampling = smc_evaluations(SMC_PARTICLES, SMC_STAGES, 2, "hmc", 5)
    method = {
        "method": "smc",
        "generator": {"flow": flow, "train": SMC_TRAIN},
        "n_steps": SMC_STAGES,
        "kernel": "hmc",
        "step_size": 0.1,
        "n_mcmc": 2,
        "n_runs": 8,
    }
    result, _ = _run_on_card(run_experiment, card, method, train_evals + sampling)
    cost = result["cost"]
    assert result["config"]["n_particles"] == SMC_PARTICLES
    assert (cost["energy_evals"], cost["force_evals"]) == (0, sampling)
    assert cost["train_energy_evals"] + cost["train_force_evals"] == train_evals
    entries = {"log_z": (result["log_z"], log_z)}
    entries |= {name: (result["observables"][name], v) for name, v in observables.items()}
    for name, (entry, exact) in entries.items():
        assert entry["reference"] == pytest.approx(exact, abs=1e-9), name
        assert entry["converged"], (name, entry)
        assert abs(entry["value"] - exact) < 4 * entry["stderr"], (name, entry)


def test_runner_snf_on_u1_card_recovers_the_exact_log_z_and_plaquette(run_experiment) -> None:
    """``snf`` on ``u1_2d`` (L = 4, β = 2) with the card's own layers and prior (20
    gauge-equivariant layers, the Haar prior, 20 MALA blocks of 5 steps), trained 10 steps:
    result.json's ln Z and plaquette are the path-weighted estimates of samples.npz, within 4
    standard errors (the delta method on those weights; result.json withholds SNF's error
    bars) of the exact values; cost = snf_evaluations for training and sampling."""
    n, blocks, steps, trained = 4000, 20, 5, 10 * 32
    method = {
        "method": "snf",
        "n_blocks": blocks,
        "block_steps": steps,
        "step_size": 0.1,
        "hidden": 4,
        "n_bins": 2,
        "train_steps": 10,
        "batch_size": 32,
    }
    budget = snf_evaluations(trained + n, blocks, steps)
    result, folder = _run_on_card(run_experiment, U1_CARD, method, budget)
    cost = result["cost"]
    assert (cost["energy_evals"], cost["force_evals"]) == (0, snf_evaluations(n, blocks, steps))
    assert cost["train_force_evals"] == snf_evaluations(trained, blocks, steps)
    samples = WeightedSamples.load(folder)
    estimates = {
        "log_z": (result["log_z"], log_partition_function(samples), U1_EXACT.log_z),
        "plaquette": (
            result["observables"]["plaquette"],
            observable_estimate(samples, plaquette(samples.x)),
            U1_EXACT.plaquette,
        ),
    }
    for name, (entry, est, exact) in estimates.items():
        assert entry["stderr"] is None and entry["errors_calibrated"] is False, name
        assert entry["value"] == pytest.approx(est.value, abs=1e-9), name
        assert abs(est.value - exact) < 4 * est.stderr, (name, est, exact)
