"""A flow that maps equilibrium configurations of a hot liquid to a cold one, with weights.

Jung, Biroli & Berthier, "Normalizing flows as an enhanced sampling method for atomistic
supercooled liquids", arXiv 2404.09914: the base distribution is the liquid at T_hot,
p_hot(z) = exp(−u_hot(z))/Z_hot (sampled by any equilibrium method), and a flow x = f(z)
pushes it towards p_cold ∝ exp(−u_cold). The pushed-forward density is
q(x) = p_hot(z) |det ∂f/∂z|⁻¹, so the importance weight of x is

    log w = −u_cold(x) + u_hot(z) + log|det ∂f/∂z|      (up to the constant −ln Z_hot),

and the mean weight estimates a partition-function ratio:
ln Z_cold − ln Z_hot = ln mean w (the same ratio population annealing estimates). The
flow is trained on hot samples by minimising E_z[u_cold(f(z)) − log|det ∂f/∂z|], the
Kullback–Leibler divergence KL(q ‖ p_cold) up to constants
(:func:`boltzgen.training.temperature_map.train_temperature_map`).

Cost: one evaluation of u_cold per mapped configuration (u_hot comes with the hot samples).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.flows.base import Flow
from boltzgen.records import CostMeter, WeightedSamples
from boltzgen.samplers.swap_mc import SwapMCState, SwapMonteCarlo


class TemperatureMap:
    """Importance sampling of ``cold`` with ``flow`` applied to hot equilibrium samples."""

    def __init__(self, flow: Flow, cold: Energy):
        self.flow, self.cold = flow, cold

    def log_weights(self, z: Tensor, u_hot: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(x, log w, u_cold(x))`` of hot configurations ``z`` with energies ``u_hot``."""
        x, logdet = self.flow(z)
        u_cold = self.cold.energy(x)
        return x, -u_cold + u_hot + logdet, u_cold

    @torch.no_grad()
    def sample(self, z: Tensor, u_hot: Tensor) -> WeightedSamples:
        """Map the hot samples ``z: [n, *event]`` (energies ``u_hot: [n]``) and weight them.

        ``info["log_z_ratio"]`` is ln Z_cold − ln Z_hot = ln mean w.
        """
        meter = CostMeter(self.cold)
        with meter.measure():
            x, log_w, u_cold = self.log_weights(z, u_hot)
        log_z = float(torch.logsumexp(log_w, 0)) - math.log(log_w.numel())
        return WeightedSamples(x, log_w, u_cold, meter.cost, {"log_z_ratio": log_z})


def temperature_map_evaluations(n_samples: int) -> int:
    """Evaluations of :meth:`TemperatureMap.sample`: one u_cold per sample."""
    return n_samples


class HotChains:
    """A stream of fresh hot configurations: batched swap-MC chains at T_hot.

    The C chains start from ``x0: [C, N, d]`` (equilibrated at T_hot) and every call
    advances them by ``sweeps`` sweeps and returns their C configurations, folded into the
    box — one training minibatch (:data:`boltzgen.training.temperature_map.HotBatches`).
    Successive batches are correlated over the hot chains' τ_int, but no configuration is
    reused, so a flow trained on the stream cannot fit a fixed training set. The sweeps are
    charged to the hot energy's counter (shared with the cold energy it was derived from).

    The stream's randomness is the generator handed to each call (the training loop's,
    checkpointed with it); its own state — the chains, their energies and pair tables,
    and the number of batches drawn — is :meth:`state_dict`, so a training run resumed
    from a checkpoint continues the very same chains.
    """

    def __init__(self, sampler: SwapMonteCarlo, x0: Tensor, sweeps: int = 1):
        if sweeps < 1:
            raise ValueError(f"sweeps must be a positive integer, got {sweeps}")
        self.sampler, self.sweeps = sampler, sweeps
        self.state = sampler.init(x0)
        self.batches = 0

    def __call__(self, step: int, generator: torch.Generator) -> Tensor:
        for _ in range(self.sweeps):
            self.state, _ = self.sampler.sweep(self.state, generator)
        self.batches += 1
        box = self.sampler.energy.box
        return self.state.x - box * torch.floor(self.state.x / box)

    def state_dict(self) -> dict[str, Any]:
        """The chains ``x: [C, N, d]``, energies ``u: [C]``, pair tables, batches drawn."""
        state = self.state
        return {"x": state.x, "u": state.u, "table": state.table, "batches": self.batches}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        """Continue the chains saved by :meth:`state_dict` (same number and shape)."""
        x = saved["x"]
        if x.shape != self.state.x.shape:
            raise ValueError(
                f"the saved hot chains have shape {list(x.shape)}, this stream "
                f"{list(self.state.x.shape)}: resume with the same chains and system"
            )
        table = saved["table"]
        self.state = SwapMCState(x.clone(), saved["u"].clone(), _cloned(table))
        self.batches = int(saved["batches"])


def _cloned(table: Tensor | None) -> Tensor | None:
    return None if table is None else table.clone()
