"""Training a hot-to-cold flow on hot equilibrium samples (arXiv 2404.09914).

Minimises L(θ) = E_{z ~ p_hot}[u_cold(f_θ(z)) − log|det ∂f_θ/∂z|] over minibatches of the
hot samples with the one checkpointed loop (:func:`boltzgen.training.optimise.optimise`).
L(θ) = KL(q_θ ‖ p_cold) − ln Z_cold − E[u_hot] − ln Z_hot: lower is better.
Every u_cold evaluation is charged to the cold energy's counter.
"""

from __future__ import annotations

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.flows.base import Flow
from boltzgen.training.optimise import History, Optimiser, optimise


def train_temperature_map(
    flow: Flow,
    cold: Energy,
    hot_samples: Tensor,
    generator: torch.Generator,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    grad_clip: float | None = 10.0,
) -> History:
    """Train ``flow`` to push ``hot_samples: [n, *event]`` towards exp(−u_cold)."""

    def objective(step: int, generator: torch.Generator):
        index = torch.randint(hot_samples.shape[0], (batch_size,), generator=generator)
        x, logdet = flow(hot_samples[index])
        loss = (cold.energy(x) - logdet).mean()
        return loss, {"mean_logdet": float(logdet.mean().detach())}

    optimiser = Optimiser.adam(flow, lr, grad_clip=grad_clip)
    return optimise(optimiser, objective, generator, steps, metrics=("mean_logdet",), counter=cold)
