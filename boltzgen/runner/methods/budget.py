"""Budget rules: invert a sampler's cost formula to size a run to a budget.

Every sampler exports the number of target evaluations (energy + force) a run of given
size spends; a method's ``fit_budget`` picks the largest size that the budget covers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any


def largest_within(cost: Callable[[int], float], budget: int) -> int:
    """The largest n ≥ 0 with ``cost(n) ≤ budget`` (−1 when even ``cost(0)`` exceeds it).

    ``cost`` must grow by at least one evaluation per unit of n (every sampler's does),
    so n ≤ budget; found by doubling, then bisection.
    """
    if cost(0) > budget:
        return -1
    high = 1
    while high <= budget and cost(high) <= budget:
        high *= 2
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if cost(middle) <= budget else (low, middle)
    return low


def too_small(method: str, budget: int, needed: float) -> ValueError:
    """The error of a budget that does not cover a method's fixed part."""
    return ValueError(f"{method}: a budget of {budget} evaluations is below the {needed} it needs")


def fit_chain_steps(params: Any, total_steps: int, method: str, budget: int) -> Any:
    """``params`` with ``n_warmup`` (at most a third) and ``n_steps`` filling ``total_steps``.

    Shared by every chain method (``n_warmup``, ``n_steps``, ``thin`` fields).
    """
    warmup = min(params.n_warmup, total_steps // 3)
    steps = (total_steps - warmup) // params.thin * params.thin
    if steps < params.thin:
        raise ValueError(f"{method}: a budget of {budget} evaluations is too small")
    return replace(params, n_warmup=int(warmup), n_steps=int(steps))
