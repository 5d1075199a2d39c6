"""Metrics: pure functions of :class:`~boltzgen.samplers.base.WeightedSamples` and tensors.

Importance weights (ESS, log Z), autocorrelation of chains, free-energy differences
with standard errors (importance weights or blocks of a trajectory), energy and torsion
Wasserstein distances, the Ramachandran KL, efficiency per unit cost, and the per-state BAR
check of a generator against held-out equilibrium frames.
"""

from boltzgen.metrics.autocorrelation import (
    autocorrelation,
    autocovariance,
    integrated_time,
    mcmc_ess,
)
from boltzgen.metrics.blocks import block_average, block_free_energy_difference
from boltzgen.metrics.distances import energy_w2, wasserstein_2_1d
from boltzgen.metrics.efficiency import ess_per_energy_eval, ess_per_second, sample_ess
from boltzgen.metrics.estimate import Estimate
from boltzgen.metrics.free_energy import (
    State,
    free_energy_difference,
    log_partition_function,
    state_mask,
    state_probabilities,
)
from boltzgen.metrics.held_out import HeldOutCheck, StateCheck, held_out_check
from boltzgen.metrics.kinetics import (
    ResidenceTime,
    residence_time,
    two_state_length,
    two_state_stderr,
)
from boltzgen.metrics.observables import ObservableEstimate, observable_estimate
from boltzgen.metrics.runs import (
    runs_free_energy_difference,
    runs_log_z,
    samples_runs_log_z,
    t_factor,
)
from boltzgen.metrics.torsions import (
    ramachandran_histogram,
    ramachandran_kl,
    torus_cost_matrix,
    torus_w2,
)
from boltzgen.metrics.weights import ess_fraction, kish_ess, log_z, normalized_weights

__all__ = [
    "Estimate",
    "HeldOutCheck",
    "ObservableEstimate",
    "ResidenceTime",
    "State",
    "StateCheck",
    "autocorrelation",
    "autocovariance",
    "block_average",
    "block_free_energy_difference",
    "energy_w2",
    "ess_fraction",
    "ess_per_energy_eval",
    "ess_per_second",
    "free_energy_difference",
    "held_out_check",
    "integrated_time",
    "kish_ess",
    "log_partition_function",
    "log_z",
    "mcmc_ess",
    "normalized_weights",
    "observable_estimate",
    "ramachandran_histogram",
    "ramachandran_kl",
    "residence_time",
    "runs_free_energy_difference",
    "runs_log_z",
    "sample_ess",
    "samples_runs_log_z",
    "state_mask",
    "state_probabilities",
    "t_factor",
    "torus_cost_matrix",
    "torus_w2",
    "two_state_length",
    "two_state_stderr",
    "wasserstein_2_1d",
]
