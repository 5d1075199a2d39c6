"""boltzgen: Boltzmann generators and the baselines they must beat, scored at equal cost."""

from boltzgen import energies, flows, metrics, molecules, samplers
from boltzgen.records import Cost, WeightedSamples
from boltzgen.systems import System, list_systems, load_system
from boltzgen.version import __version__

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
