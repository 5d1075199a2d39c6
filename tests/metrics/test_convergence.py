"""Rank-normalised split-R̂: near 1 for mixed chains, large for chains that disagree."""

from __future__ import annotations

import torch

from boltzgen.metrics.convergence import RHAT_THRESHOLD, chain_convergence, split_rhat

F64 = torch.float64


def _normal(t: int, c: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(t, c, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_independent_chains_have_rhat_near_one() -> None:
    rhat = split_rhat(_normal(2000, 8))
    assert rhat is not None and abs(rhat - 1.0) < 0.005


def test_chains_with_different_means_have_a_large_rhat() -> None:
    x = _normal(2000, 8)
    x[:, :4] += 1.0
    assert split_rhat(x) > 1.1


def test_a_single_drifting_chain_is_caught_by_splitting() -> None:
    drift = torch.linspace(0.0, 3.0, 2000, dtype=F64)[:, None]
    assert split_rhat(_normal(2000, 1) + drift) > 1.1
    assert split_rhat(_normal(2000, 1)) < RHAT_THRESHOLD


def test_heavy_tailed_chains_differing_in_scale_only_are_caught_by_folding() -> None:
    """Same location, different spread: the folded (|x − median|) R̂ sees it."""
    x = _normal(2000, 8)
    x[:, :4] *= 4.0
    assert split_rhat(x) > 1.05


def test_constant_series_have_no_rhat_and_unvisited_states_fail() -> None:
    assert split_rhat(torch.zeros(100, 4, dtype=F64)) is None
    indicator = (_normal(500, 4) > 0).to(F64)
    indicator[:, 2] = 0.0  # chain 2 never enters the state
    verdict = chain_convergence((), [indicator])
    assert not verdict.all_visited and not verdict.converged


def test_many_chains_need_every_state_in_every_group_of_chains_not_in_every_chain() -> None:
    """512 well-mixed chains of 360 independent steps and a state of probability 0.8 %: some
    chains miss it by chance ((1 − p)^360 ≈ 5 %), yet every group of 64 chains visits it and
    R̂ is fine, so the estimate is converged; with 8 chains, one that never enters the state
    still fails, and so do 512 chains of which a whole group (64 neighbours) never enters."""
    g = torch.Generator().manual_seed(1)
    indicator = (torch.rand(360, 512, generator=g, dtype=F64) < 0.008).to(F64)
    assert not bool((indicator != 0).any(dim=0).all())  # some chain never visits
    verdict = chain_convergence((), [indicator])
    assert verdict.all_visited and verdict.converged
    few = indicator[:, :8].clone()
    few[:, 3] = 0.0
    few[0, :] = 1.0
    few[0, 3] = 0.0
    assert not chain_convergence((), [few]).all_visited
    stuck = indicator.clone()
    stuck[:, 64:128] = 0.0
    assert not chain_convergence((), [stuck]).all_visited
