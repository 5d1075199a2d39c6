"""Every method an experiment can name: ``METHODS[name]`` → parameters, run, budget rule."""

from __future__ import annotations

from boltzgen.runner.flow_methods import (
    FlowHMCParams,
    FlowMCMCParams,
    SMCParams,
    fit_flow_hmc,
    fit_flow_mcmc,
    fit_smc,
    run_flow_hmc,
    run_flow_mcmc,
    run_smc,
)
from boltzgen.runner.methods import (
    BoltzmannGeneratorParams,
    HMCParams,
    MDParams,
    Method,
    fit_boltzmann_generator,
    fit_hmc,
    fit_md,
    run_boltzmann_generator,
    run_hmc,
    run_md,
)
from boltzgen.runner.path_methods import (
    FlowPerturbationParams,
    SNFParams,
    fit_flow_perturbation,
    fit_snf,
    run_flow_perturbation,
    run_snf,
)
from boltzgen.runner.pt_method import (
    PTParams,
    TSFExchangeParams,
    fit_pt,
    fit_tsf_exchange,
    run_pt,
    run_tsf_exchange,
)

METHODS: dict[str, Method] = {
    "hmc": Method(HMCParams, run_hmc, fit_hmc),
    "md": Method(MDParams, run_md, fit_md),
    "parallel_tempering": Method(PTParams, run_pt, fit_pt),
    "tsf_replica_exchange": Method(TSFExchangeParams, run_tsf_exchange, fit_tsf_exchange),
    "boltzmann_generator": Method(
        BoltzmannGeneratorParams, run_boltzmann_generator, fit_boltzmann_generator
    ),
    "smc": Method(SMCParams, run_smc, fit_smc),
    "flow_mcmc": Method(FlowMCMCParams, run_flow_mcmc, fit_flow_mcmc),
    "flow_hmc": Method(FlowHMCParams, run_flow_hmc, fit_flow_hmc),
    "snf": Method(SNFParams, run_snf, fit_snf),
    "flow_perturbation": Method(
        FlowPerturbationParams, run_flow_perturbation, fit_flow_perturbation
    ),
}
