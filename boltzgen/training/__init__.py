"""Training Boltzmann generators: KL objectives and a checkpointed, resumable loop."""

from boltzgen.training.loop import TrainConfig, TrainResult, train
from boltzgen.training.losses import forward_kl, mixed_kl, reverse_kl, soft_cap

__all__ = [
    "TrainConfig",
    "TrainResult",
    "forward_kl",
    "mixed_kl",
    "reverse_kl",
    "soft_cap",
    "train",
]
