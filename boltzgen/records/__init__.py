"""Records: what samplers produce and what result files hold, below everything else.

:class:`WeightedSamples` (configurations, log-weights, energies, cost, info),
:class:`Cost` and the :class:`CostMeter` that measures it, strict JSON result files,
and the provenance (versions, git commit) every result carries.
"""

from boltzgen.records.cost import Cost, CostMeter, EvaluationCounter
from boltzgen.records.files import write_json
from boltzgen.records.samples import WeightedSamples

__all__ = ["Cost", "CostMeter", "EvaluationCounter", "WeightedSamples", "write_json"]
