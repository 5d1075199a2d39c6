"""Effective sample size of any sampler's output, and what each effective sample cost.

Independent weighted draws are scored by the Kish ESS (Σw)²/Σw²; MCMC chains by
n / τ_int, taking the slowest of the energy and the given observables (Sokal
windowing, see :mod:`boltzgen.metrics.autocorrelation`). Dividing by the cost —
every target evaluation and wall second, training included — makes generators and
baselines comparable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from boltzgen.metrics.autocorrelation import integrated_time
from boltzgen.metrics.weights import kish_ess
from boltzgen.records import WeightedSamples


def sample_ess(samples: WeightedSamples, observables: Sequence[Tensor] = ()) -> float:
    """Effective sample size of ``samples``.

    * independent draws (``samples.n_chains is None``): Kish ESS of the log-weights, at
      most ``samples.info["lineage_ess"]`` when the sampler reports one (SMC: resampled
      copies are not independent, see :mod:`boltzgen.samplers.smc`);
    * chains: n / max τ_int over the energies and each observable, every series
      reshaped to ``[T, C]``. Chain log-weights are taken as uniform (MCMC, MD).

    Args:
        samples: the sampler's output.
        observables: per-sample observables, each ``[n]`` (e.g. a dihedral angle);
            used for chains only.
    """
    if not samples.is_chain:
        kish = kish_ess(samples.log_weights)
        return min(kish, float(samples.info.get("lineage_ess", kish)))
    for k, obs in enumerate(observables):
        if obs.shape != (len(samples),):
            raise ValueError(
                f"observables[{k}] must have shape [{len(samples)}] (one value per sample), "
                f"got {list(obs.shape)}"
            )
    series = [samples.energies, *observables]
    tau = max(integrated_time(samples.chains(s)) for s in series)
    return len(samples) / tau


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def ess_per_energy_eval(samples: WeightedSamples, ess: float | None = None) -> float:
    """ESS / (all target energy and force evaluations, training included); NaN if none.

    Args:
        samples: the sampler's output with its ``cost``.
        ess: a precomputed ESS; ``None`` computes :func:`sample_ess` (energies only).
    """
    ess = sample_ess(samples) if ess is None else ess
    return _ratio(ess, samples.cost.total_energy_evals)


def ess_per_second(samples: WeightedSamples, ess: float | None = None) -> float:
    """ESS / wall seconds, training included; NaN if no time was recorded.

    Args:
        samples: the sampler's output with its ``cost``.
        ess: a precomputed ESS; ``None`` computes :func:`sample_ess` (energies only).
    """
    ess = sample_ess(samples) if ess is None else ess
    return _ratio(ess, samples.cost.total_wall_s)
