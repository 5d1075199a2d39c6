"""Training: one checkpointed, resumable optimisation loop and the trainers built on it.

:func:`optimise` (in :mod:`boltzgen.training.optimise`) trains every model: the
Boltzmann generator (:func:`train`), the stochastic normalizing flow
(:func:`train_snf`), the temperature-steerable flow (:func:`train_tsf`), a CNF's
vector field by flow matching (:func:`train_flow_matching`) and the flow-perturbation
scale (:func:`train_perturbation_scale`). The KL objectives of Boltzmann generators
live with the model in :mod:`boltzgen.samplers.objectives` and are re-exported here.
"""

from boltzgen.samplers.objectives import (
    forward_kl,
    log_variance,
    mixed_kl,
    reverse_kl,
    soft_cap,
)
from boltzgen.training.flow_matching import train_flow_matching
from boltzgen.training.generator import TrainConfig, TrainResult, train
from boltzgen.training.optimise import Checkpointing, History, Optimiser, optimise
from boltzgen.training.perturbation import train_perturbation_scale
from boltzgen.training.snf import SNFTrainResult, train_snf
from boltzgen.training.tsf import train_tsf

__all__ = [
    "Checkpointing",
    "History",
    "Optimiser",
    "SNFTrainResult",
    "TrainConfig",
    "TrainResult",
    "forward_kl",
    "log_variance",
    "mixed_kl",
    "optimise",
    "reverse_kl",
    "soft_cap",
    "train",
    "train_flow_matching",
    "train_perturbation_scale",
    "train_snf",
    "train_tsf",
]
