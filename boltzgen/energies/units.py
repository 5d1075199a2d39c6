"""The one place where OpenMM's units meet boltzgen's reduced units.

Inside boltzgen every energy is reduced, u = U / kT, at an explicit temperature;
OpenMM works in kJ/mol and nm. kT = R·T with R the molar gas constant.
"""

from __future__ import annotations

from openmm import unit

MOLAR_GAS_CONSTANT = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


def kt_kj_per_mol(temperature: float) -> float:
    """kT in kJ/mol at ``temperature`` kelvin."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive kelvin, got {temperature}")
    return MOLAR_GAS_CONSTANT * float(temperature)
