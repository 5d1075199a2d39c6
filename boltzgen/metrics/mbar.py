"""MBAR: free energies of many thermodynamic states from all their samples, via pymbar 4.

The multistate Bennett acceptance ratio (Shirts & Chodera, "Statistically optimal analysis
of samples from multiple equilibrium states", J. Chem. Phys. 129, 124105, 2008,
arXiv 0801.1426) pools N = Σ_k N_k samples x_n drawn from K states with reduced potentials
u_k and solves the self-consistent equations

    f_i = −ln Σ_n exp(−u_i(x_n)) / Σ_k N_k exp(f_k − u_k(x_n)),

for the dimensionless free energies f_i = −ln Z_i (up to a constant; f_0 = 0 here). Any
other state j, sampled or not, then has weights w_jn ∝ exp(−u_j(x_n)) / Σ_k N_k exp(f_k −
u_k(x_n)); a named region S of the target state t is the state with u = u_t inside S and
+∞ outside, so

    ΔF_{B vs A} = −ln(P_B / P_A) = f_{t∩B} − f_{t∩A},

with the asymptotic covariance of Shirts & Chodera (eq. D.11) giving its standard error.

Standard errors assume uncorrelated samples. Subsample correlated series first, keeping
every g-th sample where g = 1 + 2τ is the statistical inefficiency
(:func:`statistical_inefficiency`, from pymbar.timeseries; Chodera, Swope, Pitera, Seok,
Dill, J. Chem. Theory Comput. 3, 26, 2007); :func:`ladder_state_free_energy` does so.

For a temperature ladder (parallel tempering) the states are u_k = u · T_0 / T_k, so the
whole ``[K, N]`` matrix comes from one energy per sample (:func:`ladder_reduced_energies`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pymbar
import torch
from pymbar import timeseries
from pymbar.utils import ParameterError
from torch import Tensor

from boltzgen.metrics.estimate import Estimate
from boltzgen.records import WeightedSamples

Array = Tensor | np.ndarray
_JACKKNIFE_GROUPS = 16  # chains are pooled into at most this many delete-one-group blocks
JACKKNIFE_MIN_CHAINS = 4
"""With this many independent chains or more the ladder error comes from a jackknife over them."""
MIN_KEPT_STEPS = 20
"""The fewest recorded steps per chain that the ladder estimate keeps, whatever g says."""


def _numpy(values: Array) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().to(torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def _mbar(reduced_energies_kn: Array, n_k: Array) -> pymbar.MBAR:
    u_kn, counts = _numpy(reduced_energies_kn), _numpy(n_k)
    if u_kn.ndim != 2 or counts.shape != (u_kn.shape[0],) or counts.sum() != u_kn.shape[1]:
        raise ValueError(
            f"reduced_energies_kn must be [K, N] with n_k [K] summing to N, got "
            f"{list(u_kn.shape)} and n_k of shape {list(counts.shape)} summing to {counts.sum()}"
        )
    return pymbar.MBAR(u_kn, counts)


def mbar_free_energies(reduced_energies_kn: Array, n_k: Array) -> tuple[Tensor, Tensor]:
    """Dimensionless free energies f_k = −ln(Z_k / Z_0) of every state by MBAR.

    Args:
        reduced_energies_kn: ``[K, N]``, u_k(x_n) for every state k and every sample n,
            samples ordered by the state that drew them (the first ``n_k[0]`` from state 0, …).
        n_k: ``[K]`` samples drawn from each state (0 for unsampled states).

    Returns:
        ``(f_k, df_k)``, float64 ``[K]``: f_0 = 0 and the standard error of f_k − f_0.

    Example:
        >>> u = torch.tensor([[0.0, 1.0], [0.0, 2.0]])   # u_k(x_n)
        >>> f, df = mbar_free_energies(u, torch.tensor([1, 1]))
    """
    result = _mbar(reduced_energies_kn, n_k).compute_free_energy_differences()
    f_k = torch.as_tensor(result["Delta_f"][0], dtype=torch.float64)
    df_k = torch.as_tensor(result["dDelta_f"][0], dtype=torch.float64)
    return f_k, df_k


def mbar_state_free_energy(
    reduced_energies_kn: Array, n_k: Array, in_a: Array, in_b: Array, target: int = 0
) -> Estimate:
    """ΔF = −ln(P_B / P_A) in state ``target``, using the samples of every state.

    Args:
        reduced_energies_kn: ``[K, N]`` as in :func:`mbar_free_energies`.
        n_k: ``[K]`` samples per state.
        in_a: ``[N]`` bool, whether each sample lies in region A.
        in_b: ``[N]`` bool, whether each sample lies in region B.
        target: index of the state in which the regions' probabilities are taken.

    Returns:
        ``Estimate(ΔF, stderr)``; ``±inf`` / NaN with stderr ``inf`` if a region is empty;
        stderr ``inf`` if the MBAR equations did not converge (pymbar then finds weights
        that do not sum to one, and its covariance would be meaningless).
    """
    return mbar_state_free_energies(reduced_energies_kn, n_k, in_a, in_b, (target,))[0]


def mbar_state_free_energies(
    reduced_energies_kn: Array, n_k: Array, in_a: Array, in_b: Array, targets: Sequence[int]
) -> list[Estimate]:
    """:func:`mbar_state_free_energy` in each state of ``targets``, from one MBAR solution
    (the f_k do not depend on the state the regions are taken in)."""
    a, b = _numpy(in_a).astype(bool), _numpy(in_b).astype(bool)
    u_kn = _numpy(reduced_energies_kn)
    if a.shape != (u_kn.shape[1],) or b.shape != a.shape:
        raise ValueError(f"in_a and in_b must be [N] = [{u_kn.shape[1]}], got {a.shape}, {b.shape}")
    if not a.any() or not b.any():
        value = math.nan if not (a.any() or b.any()) else (math.inf if a.any() else -math.inf)
        return [Estimate(value, math.inf) for _ in targets]
    mbar = _mbar(u_kn, n_k)
    return [_region_difference(mbar, u_kn[t], a, b) for t in targets]


def _region_difference(
    mbar: pymbar.MBAR, u_target: np.ndarray, a: np.ndarray, b: np.ndarray
) -> Estimate:
    """f_{t∩B} − f_{t∩A} of a solved ``mbar``, t the state of reduced energies ``u_target``."""
    restricted = np.stack([np.where(a, u_target, np.inf), np.where(b, u_target, np.inf)])
    try:
        result = mbar.compute_perturbed_free_energies(restricted)
    except ParameterError:
        result = mbar.compute_perturbed_free_energies(restricted, compute_uncertainty=False)
        return Estimate(float(result["Delta_f"][0, 1]), math.inf)
    return Estimate(float(result["Delta_f"][0, 1]), float(result["dDelta_f"][0, 1]))


def ladder_reduced_energies(
    energies: Tensor, temperatures: Sequence[float]
) -> tuple[Tensor, Tensor]:
    """MBAR input for a temperature ladder from energies at the lowest temperature.

    Args:
        energies: ``[T, K, C]`` reduced energies u = U / kT_0 (T_0 = ``temperatures[0]``)
            of the configuration held by temperature k in chain c at step t, as
            ``ParallelTempering`` records them in ``info["ladder_energies"]``.
        temperatures: ``[K]`` the ladder.

    Returns:
        ``u_kn [K, N]`` with u_l(x_n) = u(x_n) · T_0 / T_l, samples ordered by the state that
        drew them (N = K·T·C), and ``n_k [K]`` = T·C each.
    """
    u = torch.as_tensor(energies).detach().to("cpu", torch.float64)
    temps = torch.as_tensor(temperatures, dtype=torch.float64)
    if u.dim() != 3 or u.shape[1] != temps.numel():
        raise ValueError(
            f"energies must be [T, K, C] with K = {temps.numel()} temperatures, got {list(u.shape)}"
        )
    per_state = u.permute(1, 0, 2).reshape(-1)
    scales = temps[0] / temps
    n_k = torch.full((temps.numel(),), u.shape[0] * u.shape[2], dtype=torch.int64)
    return scales[:, None] * per_state[None, :], n_k


def statistical_inefficiency(series: Tensor) -> float:
    """g = 1 + 2τ of ``[T]`` or ``[T, C]`` (C chains of one process), by pymbar.timeseries.

    A series that is constant in every chain carries no correlation: g = 1.
    """
    x = torch.as_tensor(series).detach().to("cpu", torch.float64)
    x = x[:, None] if x.dim() == 1 else x
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"series must be [T] or [T, C] with T ≥ 2, got {list(x.shape)}")
    chains = [c for c in x.T.numpy() if np.ptp(c) > 0]
    if not chains:
        return 1.0
    return float(timeseries.statistical_inefficiency_multiple(chains))


def ladder_statistical_inefficiency(samples: WeightedSamples, states: Sequence[str] = ()) -> float:
    """The largest g over every temperature's energy series and, for each named state in
    ``states``, its indicator series, from a ``ParallelTempering`` run's ``info``."""
    energies = samples.info["ladder_energies"]
    series = [energies[:, k] for k in range(energies.shape[1])]
    for name in states:
        member = torch.as_tensor(samples.info["ladder_states"][name], dtype=torch.float64)
        series += [member[:, k] for k in range(member.shape[1])]
    return max(statistical_inefficiency(s) for s in series)


def _ladder_estimates(
    energies: Tensor,
    in_a: Tensor,
    in_b: Tensor,
    temperatures: Sequence[float],
    rungs: Sequence[int],
) -> list[Estimate]:
    """MBAR ΔF at each rung of ``rungs`` from ``[T, K, C]`` energies and memberships."""
    u_kn, n_k = ladder_reduced_energies(energies, temperatures)
    a, b = (m.permute(1, 0, 2).reshape(-1) for m in (in_a, in_b))
    return mbar_state_free_energies(u_kn, n_k, a, b, rungs)


def _group_jackknife(
    energies: Tensor,
    in_a: Tensor,
    in_b: Tensor,
    temperatures: Sequence[float],
    rungs: Sequence[int],
) -> list[float]:
    """Delete-one-group jackknife error of the ladder ΔF at each rung over min(C, 16) groups
    of chains; ``inf`` where some group's estimate is unusable (an empty state, or MBAR not
    converged)."""
    groups = torch.arange(energies.shape[2]) % min(energies.shape[2], _JACKKNIFE_GROUPS)
    n_groups = int(groups.max()) + 1
    left_out = [
        _ladder_estimates(
            energies[..., groups != g],
            in_a[..., groups != g],
            in_b[..., groups != g],
            temperatures,
            rungs,
        )
        for g in range(n_groups)
    ]
    errors = []
    for estimates in zip(*left_out, strict=True):
        if not all(math.isfinite(e.value) and math.isfinite(e.stderr) for e in estimates):
            errors.append(math.inf)
            continue
        values = torch.tensor([e.value for e in estimates])
        spread = float((values - values.mean()).square().sum())
        errors.append(math.sqrt((n_groups - 1) / n_groups * spread))
    return errors


def ladder_state_free_energy(
    samples: WeightedSamples,
    state_a: str,
    state_b: str,
    stride: int | None = None,
    rung: int = 0,
) -> Estimate:
    """ΔF_{B vs A} at the lowest temperature of a parallel-tempering run (or at rung
    ``rung`` of its ladder), by MBAR over all temperatures (samples of hot replicas that
    fall in A or B count too).

    The MBAR standard error treats the subsampled replicas as independent, but a walker
    carries its configuration from rung to rung, which per-rung statistical inefficiencies
    do not see (on a 1-D double well it is ~1.4× too small). With ``C ≥ 4`` independent
    chains the error is therefore the larger of MBAR's and the jackknife over G = min(C, 16)
    groups of chains (chain c in group c mod G; Efron & Stein, Ann. Statist. 9, 586, 1981),
    se² = (G−1)/G Σ_g (ΔF_(−g) − ΔF_(·))², ΔF_(−g) leaving group g out.

    Args:
        samples: returned by ``ParallelTempering.sample(..., states={...})`` (or
            ``openmm_parallel_tempering``) with ``state_a`` and ``state_b`` recorded.
        state_a: name of a recorded state (A).
        state_b: name of a recorded state (B).
        stride: keep every ``stride``-th recorded step; ``None``: ⌈g⌉ with g from
            :func:`ladder_statistical_inefficiency`, but no coarser than keeps
            :data:`MIN_KEPT_STEPS` steps. With fewer than :data:`JACKKNIFE_MIN_CHAINS`
            chains g is the largest over the energies and both indicators, as MBAR's own
            error needs independent steps. With more, the jackknife over independent chains
            measures the error whatever the stride, so g is the energies' alone: the
            indicators of rarely crossed states decorrelate far more slowly, and thinning
            to their g throws away most of the run (alanine dipeptide's 60-chain reference:
            g 154 for the indicators, 14 for the energies; jackknife error 0.057 kT at
            stride 154, 0.039 kT at stride 16, the same iterations). A run shorter than
            :data:`MIN_KEPT_STEPS` g would be cut to a handful of steps, whose estimate can
            miss by tens of kT with an error bar of one.
        rung: index of the ladder temperature the regions' probabilities are taken at.
    """
    return ladder_state_free_energies(samples, state_a, state_b, (rung,), stride)[0]


def ladder_state_free_energies(
    samples: WeightedSamples,
    state_a: str,
    state_b: str,
    rungs: Sequence[int],
    stride: int | None = None,
) -> list[Estimate]:
    """:func:`ladder_state_free_energy` at each rung of ``rungs`` (one MBAR solution and
    one jackknife for all of them)."""
    recorded = samples.info.get("ladder_states", {})
    missing = [s for s in (state_a, state_b) if s not in recorded]
    if missing:
        raise KeyError(
            f"states {missing} were not recorded; pass states={{name: fn}} to the sampler "
            f"(recorded: {sorted(recorded)})"
        )
    temperatures = samples.info["temperatures"]
    outside = [r for r in rungs if not 0 <= r < len(temperatures)]
    if outside:
        raise ValueError(f"rungs {outside} outside the ladder of {len(temperatures)} temperatures")
    if stride is None:
        n_steps, _, n_chains = torch.as_tensor(samples.info["ladder_energies"]).shape
        slow = (state_a, state_b) if n_chains < JACKKNIFE_MIN_CHAINS else ()
        g = ladder_statistical_inefficiency(samples, slow)
        stride = max(1, min(math.ceil(g), n_steps // MIN_KEPT_STEPS))
    energies = torch.as_tensor(samples.info["ladder_energies"]).cpu()[::stride]
    in_a, in_b = (torch.as_tensor(recorded[s]).cpu()[::stride] for s in (state_a, state_b))
    estimates = _ladder_estimates(energies, in_a, in_b, temperatures, rungs)
    usable = any(math.isfinite(e.stderr) for e in estimates)
    if energies.shape[2] < JACKKNIFE_MIN_CHAINS or not usable:
        return estimates
    jackknife = _group_jackknife(energies, in_a, in_b, temperatures, rungs)
    return [
        e if not math.isfinite(e.stderr) else Estimate(e.value, max(e.stderr, j))
        for e, j in zip(estimates, jackknife, strict=True)
    ]
