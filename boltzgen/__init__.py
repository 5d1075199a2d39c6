"""boltzgen: Boltzmann generators and the baselines they must beat, scored at equal cost."""

from boltzgen import energies, flows, metrics, molecules, samplers
from boltzgen.samplers.base import Cost, WeightedSamples
from boltzgen.systems import System, list_systems, load_system

__version__ = "0.1.0"

__all__ = [
    "Cost",
    "System",
    "WeightedSamples",
    "__version__",
    "energies",
    "flows",
    "list_systems",
    "load_system",
    "metrics",
    "molecules",
    "samplers",
]
