"""The umbrella settings the double-well tests share: nine windows across the barrier."""

from boltzgen.reference.umbrella import UmbrellaSettings

DOUBLE_WELL = UmbrellaSettings(
    n_windows=9,
    spring=24.0,
    cv_range=(-2.5, 2.5),
    n_chains=8,
    n_iterations=240,
    n_discard=100,
    n_leapfrog=5,
    step_size=0.1,
)
