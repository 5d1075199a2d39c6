"""A batched torch force field compiled from an ``openmm.System``.

``TorchForceField.from_openmm(system, temperature)`` gives an :class:`Energy` that
agrees with OpenMM's Reference platform (float64) and evaluates whole batches
``[B, N, 3]`` at once on CPU or CUDA. ``unsupported_forces(system)`` says, without
raising, whether a System can be compiled; otherwise ``from_openmm`` raises
:class:`UnsupportedForceError` naming the forces, and the caller falls back to
:class:`~boltzgen.energies.openmm.OpenMMEnergy`.

Modules: ``geometry`` (layout, boxes, pair lists, frames), ``terms`` (the Term
contract), ``kernels`` (eager or ``torch.compile``-fused kernels), ``bonded``,
``nonbonded``, ``gbsa`` (GBSAOBCForce and the shared GB energy), ``customgb`` +
``expressions`` (the openmm.app OBC2/GBn2 CustomGBForce forms, recognised by template),
``language`` (OpenMM's expression language as torch functions), ``tabulated`` (splines
and tables), ``custom`` (custom bonded, external and compound forces), ``customnonbonded``,
``generalgb`` (any CustomGBForce), ``cmap``, ``compile`` (reading the System), ``energy``
(TorchForceField).
"""

from boltzgen.energies.forcefield.compile import (
    SUPPORTED,
    UnsupportedForceError,
    unsupported_forces,
)
from boltzgen.energies.forcefield.energy import TorchForceField

__all__ = ["SUPPORTED", "TorchForceField", "UnsupportedForceError", "unsupported_forces"]
