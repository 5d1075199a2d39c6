"""Population annealing: a population cooled along a temperature ladder, resampled at each step.

Hukushima & Iba, "Population annealing and its application to a spin glass", AIP Conf.
Proc. 690, 200 (2003), arXiv cond-mat/0304013; Machta, "Population annealing with
weighted averages: a Monte Carlo method for rough free-energy landscapes", PRE 82, 026704
(2010), arXiv 1006.2812. R replicas in equilibrium at T_0 are cooled through
T_0 > T_1 > … > T_K. At step k → k+1 replica r gets the weight

    w_r = exp(−(β_{k+1} − β_k) U(x_r)),   β = 1/T,

the population is resampled in proportion to w (here systematically, which keeps R fixed),
and each replica then makes MCMC moves at T_{k+1}. The normalisation of the weights is an
unbiased estimate of a partition-function ratio,

    Q_k = (1/R) Σ_r w_r  →  Z(β_{k+1}) / Z(β_k),     ln Z(β_K) − ln Z(β_0) = Σ_k ln Q_k,

so −T·ln Z differences (free energies) come out of the run. The population is split into
G groups that are resampled separately; the G group estimates are independent, which
gives the standard error, and the pooled estimate is ln of the mean of the G ratios
(unbiased for the ratio itself). Here U is ``u · T_ref`` with u the energy's reduced
energy at its temperature T_ref, so every temperature is a view
(:meth:`~boltzgen.energies.Energy.at_temperature`).

Cost: R evaluations at the start (the energies of the initial population), then what the
moves cost at each of the K temperatures; reweighting reuses the stored energies. See
:func:`population_annealing_evaluations`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzgen.energies.base import Energy
from boltzgen.energies.particles import ParticleEnergy
from boltzgen.kernels.metropolis import accept
from boltzgen.kernels.noise import standard_normal
from boltzgen.records import CostMeter, WeightedSamples
from boltzgen.samplers.smc import systematic_resample
from boltzgen.samplers.swap_mc import SwapMCConfig, SwapMCState, SwapMonteCarlo

Move = Callable[[Energy, Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]
"""``(energy at T, x: [R, *event], u: [R] at T, generator) -> (x, u)``; keeps exp(−u) invariant."""


def metropolis_move(step_size: float, n_steps: int) -> Move:
    """``n_steps`` Gaussian random-walk Metropolis steps (R evaluations each)."""

    def move(energy: Energy, x: Tensor, u: Tensor, generator: torch.Generator):
        for _ in range(n_steps):
            y = x + step_size * standard_normal(x, generator)
            u_y = energy.energy(y)
            ok, _ = accept(u - u_y, generator)
            x = torch.where(ok.reshape((-1,) + (1,) * (x.dim() - 1)), y, x)
            u = torch.where(ok, u_y, u)
        return x, u

    return move


def swap_mc_move(config: SwapMCConfig, n_sweeps: int) -> Move:
    """``n_sweeps`` swap (or local, p_swap = 0) Monte Carlo sweeps on a particle energy."""

    def move(energy: Energy, x: Tensor, u: Tensor, generator: torch.Generator):
        if not isinstance(energy, ParticleEnergy):
            raise TypeError(f"swap moves need a ParticleEnergy, got {type(energy).__name__}")
        sampler, state = SwapMonteCarlo(energy, config), SwapMCState(x, u)
        for _ in range(n_sweeps):
            state, _ = sampler.sweep(state, generator)
        return state.x, state.u

    return move


@dataclass(frozen=True)
class LogZRatio:
    """ln Z(T_K) − ln Z(T_0) with its standard error and the independent group estimates."""

    value: float
    stderr: float
    groups: list[float]


def pooled_log_ratio(group_log_ratios: Tensor) -> LogZRatio:
    """ln of the mean of G independent ratio estimates, with a delta-method standard error."""
    g = group_log_ratios.numel()
    value = float(torch.logsumexp(group_log_ratios, 0)) - math.log(g)
    relative = (group_log_ratios - value).exp()
    stderr = float(relative.std()) / math.sqrt(g) if g > 1 else math.inf
    return LogZRatio(value, stderr, group_log_ratios.tolist())


class PopulationAnnealing:
    """Population annealing over ``temperatures`` (hottest first) with MCMC ``move`` s.

    Args:
        energy: the target; u is reduced at ``energy.temperature``.
        temperatures: T_0 > T_1 > … > T_K; the initial population is at T_0.
        move: the MCMC move made at every temperature after resampling.
        n_groups: G independent sub-populations (standard errors need G ≥ 2).
    """

    def __init__(
        self, energy: Energy, temperatures: Sequence[float], move: Move, n_groups: int = 10
    ):
        temps = [float(t) for t in temperatures]
        if len(temps) < 2 or any(b >= a for a, b in itertools.pairwise(temps)):
            raise ValueError(f"temperatures must decrease from hot to cold, got {temps}")
        self.energy, self.temperatures, self.move, self.n_groups = energy, temps, move, n_groups

    def _reduced(self, u_ref: Tensor, temperature: float) -> Tensor:
        return u_ref * self.energy.temperature / temperature

    def sample(
        self, x0: Tensor, generator: torch.Generator, progress: bool = False
    ) -> WeightedSamples:
        """Anneal the population ``x0: [R, *event]`` (in equilibrium at T_0; R divisible by G).

        Returns the final population at T_K, group after group (``n_runs = G``), with
        energies reduced at the energy's temperature, and in ``info`` the log Z ratio
        (``log_z_ratio``, ``log_z_ratio_stderr``, per-step ``log_q``, per group
        ``run_log_z_ratio``) and the number of
        distinct ancestors of the final population (``families``).
        """
        r, g = x0.shape[0], self.n_groups
        if r % g:
            raise ValueError(f"population {r} must be divisible by n_groups {g}")
        meter = CostMeter(self.energy)
        log_q = torch.zeros(len(self.temperatures) - 1, g, dtype=torch.float64)
        ancestors = torch.arange(r)
        with meter.measure():
            x, u_ref = x0, self.energy.energy(x0)
            steps = itertools.pairwise(self.temperatures)
            for k, (hot, cold) in enumerate(tqdm(list(steps), disable=not progress, desc="PA")):
                log_w = -(self._reduced(u_ref, cold) - self._reduced(u_ref, hot))
                index = self._resample(log_w.reshape(g, -1), generator)
                log_q[k] = torch.logsumexp(log_w.reshape(g, -1), 1) - math.log(r // g)
                x, u_ref, ancestors = x[index], u_ref[index], ancestors[index]
                at_cold = self.energy.at_temperature(cold)
                x, u_cold = self.move(at_cold, x, self._reduced(u_ref, cold), generator)
                u_ref = u_cold * cold / self.energy.temperature
        estimate = pooled_log_ratio(log_q.sum(0))
        info = {
            "log_z_ratio": estimate.value,
            "log_z_ratio_stderr": estimate.stderr,
            "log_q": log_q.tolist(),
            "run_log_z_ratio": log_q.sum(0).tolist(),
            "families": int(ancestors.unique().numel()),
            "temperatures": self.temperatures,
        }
        return WeightedSamples(x, torch.zeros_like(u_ref), u_ref, meter.cost, info, n_runs=g)

    def _resample(self, log_w: Tensor, generator: torch.Generator) -> Tensor:
        """Indices into the whole population ``[R]``, each group resampled within itself."""
        g, m = log_w.shape
        picks = [systematic_resample(log_w[i], generator) + i * m for i in range(g)]
        return torch.cat(picks)


def population_annealing_evaluations(
    n_replicas: int, n_temperatures: int, move_evaluations_per_replica: float
) -> float:
    """R + R·(K)·m: the start plus ``m`` evaluations per replica at each of K = n − 1 steps."""
    return n_replicas * (1 + (n_temperatures - 1) * move_evaluations_per_replica)
