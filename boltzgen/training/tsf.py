"""Training a temperature-steerable flow over a temperature ladder.

Dibak, Klein, Köhler, Noé, "Temperature steerable flows and Boltzmann generators",
Phys. Rev. Research 4, L042005 (2022), arXiv 2108.01590: one flow trained by reverse
KL at several temperatures (plus maximum likelihood on data at T_0), in the
checkpointed loop of :func:`~boltzgen.training.optimise.optimise`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.flows.steerable import TemperatureSteerableFlow
from boltzgen.records import Cost
from boltzgen.samplers.objectives import forward_kl, reverse_kl
from boltzgen.training.optimise import Checkpointing, Optimiser, optimise

CHECKPOINT_NAME = "tsf_checkpoint.pt"


def train_tsf(
    tsf: TemperatureSteerableFlow,
    energy: Energy,
    temperatures: Sequence[float],
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    data: Tensor | None = None,
    energy_cap: float = 1e3,
    grad_clip: float = 100.0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 100,
) -> Cost:
    """Train a TSF by reverse KL summed over a ladder, plus forward KL at T_0 on data.

    With s_k = T_0 / T_k (T_0 = ``energy.temperature``) each Adam step (Kingma & Ba,
    arXiv 1412.6980) minimises

        L = Σ_k E_{z ~ N(0, T_k/T_ref)}[s_k·ũ(f(z)) + log q_{T_k}(f(z))]
            − (1/B) Σ_b log q_{T_0}(x_b),

    the reverse KL(q_{T_k} ‖ p_k) up to log Z_k at every rung (ũ the soft-capped energy,
    :func:`~boltzgen.samplers.objectives.soft_cap`; Dibak et al., arXiv 2108.01590, train a TSF
    at several temperatures this way) and the negative log-likelihood of a batch of
    ``data`` drawn at T_0 (omitted if ``data`` is ``None``). An empty ``temperatures``
    with data gives pure maximum likelihood. Gradients are clipped to norm ``grad_clip``.

    Args:
        tsf: trained in place.
        energy: the target u at T_0; every evaluation is charged to its counter.
        temperatures: rungs T_k of the reverse-KL term (units of ``energy.temperature``).
        steps: total optimiser steps (a resumed run continues up to this number).
        batch_size: B, latent draws per rung and data rows per step.
        lr: Adam's learning rate.
        generator: the only source of randomness (latent draws, data batches).
        data: ``[N, *event]`` samples of p at T_0, or ``None``.
        energy_cap: where the reverse-KL energies are compressed logarithmically.
        grad_clip: maximum global gradient norm.
        checkpoint_dir: where ``tsf_checkpoint.pt`` is written every
            ``checkpoint_every`` steps and at the end; an existing one is resumed from.

    Returns:
        The training cost: ``steps·K·B`` energy evaluations and the wall time, in the
        sampling fields (pass it as ``training_cost``, or merge with
        :meth:`Cost.with_training`).
    """
    temps = [float(t) for t in temperatures]
    if steps < 0 or batch_size < 1 or not lr > 0 or not all(t > 0 for t in temps):
        raise ValueError(
            f"train_tsf needs steps ≥ 0, batch_size ≥ 1, lr > 0 and positive temperatures, "
            f"got steps={steps}, batch_size={batch_size}, lr={lr}, temperatures={temps}"
        )
    if not temps and data is None:
        raise ValueError("train_tsf needs temperatures (reverse KL) or data (forward KL)")
    if data is not None and tuple(data.shape[1:]) != energy.event_shape:
        raise ValueError(
            f"data must have shape [N, {', '.join(map(str, energy.event_shape))}], "
            f"got {list(data.shape)}"
        )
    settings = {
        "temperatures": temps,
        "batch_size": batch_size,
        "lr": lr,
        "energy_cap": energy_cap,
        "grad_clip": grad_clip,
        "data": data is not None,
    }
    history = optimise(
        Optimiser.adam(tsf, lr, grad_clip=grad_clip, hint="lower lr"),
        _LadderLoss(tsf, energy, temps, batch_size, data, energy_cap),
        generator,
        steps,
        Checkpointing.at(checkpoint_dir, CHECKPOINT_NAME, checkpoint_every, settings),
        counter=energy,
    )
    return history.cost


@dataclass
class _LadderLoss:
    """Σ_k reverse KL at T_k (+ the NLL of a data batch at T_0), a scalar; no metrics."""

    tsf: TemperatureSteerableFlow
    energy: Energy
    temperatures: list[float]
    batch_size: int
    data: Tensor | None
    energy_cap: float

    def __call__(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        tsf, energy, b = self.tsf, self.energy, self.batch_size
        terms = [
            reverse_kl(
                tsf.prior(t), tsf.flow, energy.at_temperature(t), b, generator, self.energy_cap
            )[0]
            for t in self.temperatures
        ]
        if self.data is not None:
            rows = torch.randint(
                self.data.shape[0], (b,), generator=generator, device=generator.device
            )
            batch = self.data[rows.to(self.data.device)]
            terms.append(forward_kl(tsf.prior(energy.temperature), tsf.flow, batch))
        return torch.stack(terms).sum(), {}


def tsf_training_evaluations(n_temperatures: int, train_steps: int, batch_size: int) -> int:
    """Target evaluations of :func:`train_tsf`: reverse KL at every rung, K·steps·B."""
    return train_steps * n_temperatures * batch_size
