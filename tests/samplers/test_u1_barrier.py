"""The latent-barrier diagnostic of U(1) flows: zero excess for an exact map, the excess of a
known deformation of the latent action where it is put."""

from __future__ import annotations

import math

import torch
from torch import Tensor

import boltzgen as bg
from boltzgen.flows.gauge import make_gauge_flow
from boltzgen.flows.wilson_prior import gauge_prior
from boltzgen.samplers.importance import BoltzmannGenerator
from tests.benchmark_scripts import load_benchmark

barrier = load_benchmark("lattice_u1_barrier")
L, BETA = 4, 3.0


def _draws(beta: float, n: int, seed: int) -> Tensor:
    z = gauge_prior(L, beta, dtype=torch.float64).sample(n, torch.Generator().manual_seed(seed))
    return z.reshape(n, 2, L, L)


def test_an_exact_flow_has_no_excess_at_any_plaquette_and_keeps_q() -> None:
    """Identity flow, Wilson prior at the target's β: log w = ln Z for every draw."""
    system = bg.load_system("u1_2d", L=L, beta=BETA)
    flow = make_gauge_flow(L, n_layers=4, transform="spline")
    model = BoltzmannGenerator(gauge_prior(L, BETA), flow, system.energy)
    z = _draws(1.0, 2000, 0)
    with torch.no_grad():
        torch.testing.assert_close(model.flow(z)[0].reshape(z.shape), z)
    row = barrier.latent_excess(model, system.energy, z, _draws(BETA, 500, 1))
    excesses = [b["excess"] for b in row["bins"] if b["excess"] is not None]
    assert len(excesses) >= 4 and max(abs(e) for e in excesses) < 1e-9
    assert row["q_changed"] == 0.0


def test_a_target_stiffer_than_the_prior_shows_its_barrier_excess() -> None:
    """Identity flow from the Wilson prior at β₀ to the target at β: log w = (β − β₀)·Σ cos P
    + const, so a bin's excess is (β − β₀)·(⟨Σ cos P⟩_prior − ⟨Σ cos P⟩_bin), positive and
    growing towards P = π."""
    beta0 = 1.5
    system = bg.load_system("u1_2d", L=L, beta=BETA)
    model = BoltzmannGenerator(
        gauge_prior(L, beta0), make_gauge_flow(L, n_layers=4, transform="spline"), system.energy
    )
    z, z_prior = _draws(1.0, 3000, 2), _draws(beta0, 3000, 3)
    row = barrier.latent_excess(model, system.energy, z, z_prior)

    def cos_sum(t: Tensor) -> Tensor:
        return torch.cos(barrier.plaquette_angles(t)).flatten(1).sum(1)

    largest = barrier.max_plaquette(z)
    for b in row["bins"]:
        if b["excess"] is None:
            continue
        inside = (largest >= b["low"]) & (largest < b["high"])
        expected = (BETA - beta0) * float(cos_sum(z_prior).mean() - cos_sum(z[inside]).mean())
        assert math.isclose(b["excess"], expected, rel_tol=1e-9, abs_tol=1e-9)
    measured = [b["excess"] for b in row["bins"] if b["excess"] is not None]
    assert measured[-1] > measured[0] + 1.0


def test_the_plaquette_map_lowers_the_barrier_excess_of_the_identity() -> None:
    """From the Wilson prior at β₀ to β, the identity leaves (β − β₀)·(1 − cos P) per plaquette
    at the barrier; the analytic plaquette map (the scan's ``--plaquette-map``) removes most
    of it in every bin: what is left is the common shift."""
    beta0 = 1.5
    system = bg.load_system("u1_2d", L=L, beta=BETA)
    identity = BoltzmannGenerator(
        gauge_prior(L, beta0), make_gauge_flow(L, n_layers=4, transform="spline"), system.energy
    )
    mapped = barrier.plaquette_map_model(L, beta0, system)
    z, z_prior = _draws(1.0, 3000, 2), _draws(beta0, 3000, 3)
    plain = barrier.latent_excess(identity, system.energy, z, z_prior)["bins"]
    exact = barrier.latent_excess(mapped, system.energy, z, z_prior)["bins"]
    pairs = [
        (a["excess"], b["excess"])
        for a, b in zip(plain, exact, strict=True)
        if a["excess"] is not None
    ]
    assert len(pairs) >= 4
    assert pairs[-1][0] > 2.0
    for before, after in pairs:
        assert abs(after) < 0.3 * abs(before) + 0.2
