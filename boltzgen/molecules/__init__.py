"""Molecules from scratch: capped peptides built from residue templates by NeRF.

`build_peptide` returns a `Peptide` (OpenMM topology, positions in nm); `make_system`
and `minimize` turn it into a relaxed OpenMM system; `alanine_peptide` does all three
for Ace-(Ala)n-Nme. The names load on first use (PEP 562), so that
``python -m boltzgen.molecules.builder`` runs the module only once.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "IMPLICIT_SOLVENTS": "builder",
    "Peptide": "builder",
    "alanine_peptide": "builder",
    "backbone_torsion_atoms": "builder",
    "build_peptide": "builder",
    "make_system": "builder",
    "minimize": "builder",
    "potential_energy": "builder",
    "write_pdb": "builder",
    "AMINO_ACIDS": "templates",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return __all__
