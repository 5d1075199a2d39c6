"""Training: one checkpointed, resumable optimisation loop and the trainers built on it.

The KL objectives of Boltzmann generators live with the model in
:mod:`boltzgen.samplers.objectives` and are re-exported here.
"""

from boltzgen.samplers.objectives import forward_kl, mixed_kl, reverse_kl, soft_cap
from boltzgen.training.generator import TrainConfig, TrainResult, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "forward_kl",
    "mixed_kl",
    "reverse_kl",
    "soft_cap",
    "train",
]
