"""Every method an experiment can name, one module each: ``METHODS[name]``.

Each method module holds its parameter dataclass (what the YAML may set), its
``run(system, params, generator, context)`` and its budget rule ``fit_budget``, which
inverts the cost formula its sampler exports. Shared pieces: :mod:`.base` (the
:class:`MethodContext` a task hands in), :mod:`.budget`, :mod:`.flows` (generators
built from :class:`FlowParams`), :mod:`.training` (training stages and their data's
charge) and :mod:`.ladder` (what the ladder methods add to their output); the trained
generator shared between methods lives in :mod:`.boltzmann_generator`.
"""

from __future__ import annotations

from boltzgen.runner.methods import (
    boltzmann_generator,
    flow_hmc,
    flow_mcmc,
    flow_perturbation,
    hmc,
    ising_spins,
    local_metropolis,
    md,
    parallel_tempering,
    population_annealing,
    smc,
    snf,
    swap_mc,
    temperature_map,
    tsf_replica_exchange,
)
from boltzgen.runner.methods.base import Method, MethodContext

METHODS: dict[str, Method] = {
    "hmc": Method(hmc.HMCParams, hmc.run, hmc.fit_budget),
    "md": Method(md.MDParams, md.run, md.fit_budget),
    "local_metropolis": Method(
        local_metropolis.LocalMetropolisParams, local_metropolis.run, local_metropolis.fit_budget
    ),
    "ising_spins": Method(ising_spins.IsingSpinParams, ising_spins.run, ising_spins.fit_budget),
    "parallel_tempering": Method(
        parallel_tempering.PTParams, parallel_tempering.run, parallel_tempering.fit_budget
    ),
    "tsf_replica_exchange": Method(
        tsf_replica_exchange.TSFExchangeParams,
        tsf_replica_exchange.run,
        tsf_replica_exchange.fit_budget,
    ),
    "boltzmann_generator": Method(
        boltzmann_generator.BoltzmannGeneratorParams,
        boltzmann_generator.run,
        boltzmann_generator.fit_budget,
        boltzmann_generator.log_density,
    ),
    "population_annealing": Method(
        population_annealing.PAParams, population_annealing.run, population_annealing.fit_budget
    ),
    "swap_mc": Method(swap_mc.SwapMCParams, swap_mc.run, swap_mc.fit_budget),
    "temperature_map": Method(
        temperature_map.TemperatureMapParams, temperature_map.run, temperature_map.fit_budget
    ),
    "smc": Method(smc.SMCParams, smc.run, smc.fit_budget),
    "flow_mcmc": Method(flow_mcmc.FlowMCMCParams, flow_mcmc.run, flow_mcmc.fit_budget),
    "flow_hmc": Method(flow_hmc.FlowHMCParams, flow_hmc.run, flow_hmc.fit_budget),
    "snf": Method(snf.SNFParams, snf.run, snf.fit_budget),
    "flow_perturbation": Method(
        flow_perturbation.FlowPerturbationParams,
        flow_perturbation.run,
        flow_perturbation.fit_budget,
    ),
}

__all__ = ["METHODS", "Method", "MethodContext"]
