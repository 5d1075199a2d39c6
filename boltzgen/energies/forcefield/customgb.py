"""The CustomGBForce forms that openmm.app creates for implicit/obc2.xml and implicit/gbn2.xml.

``openmm.app.ForceField(..., "implicit/obc2.xml")`` builds a CustomGBForce with
per-particle parameters ``charge, or, sr`` (offset radius ρ and scaled offset radius
s = S ρ), computed values ``I`` (the descreening integral) and ``B`` (the Born
radius), and energy terms: the self energy, optionally the ACE surface term, and the
pair energy (with a ``1/f - 1/r_c`` shift when a cutoff is given and
``exp(-κ·)`` screening when salt is given). implicit/gbn2.xml adds per-particle
``alpha, beta, gamma, radindex`` and the neck correction with its tables ``getd0``
and ``getm0`` (``Discrete2DFunction``, ``f(x, y) = values[x + size_x·y]``).

A force whose every expression matches one of the templates below
(:mod:`boltzgen.energies.forcefield.expressions`) is evaluated by the hand-written
:class:`~boltzgen.energies.forcefield.gbsa.GeneralizedBorn` (analytic gradients, fused
kernels). Anything else — HCT, OBC1, GBn, global parameters, exclusions that matter —
is not a template match (:func:`recognise` says why) and is compiled from its
expressions by :mod:`~boltzgen.energies.forcefield.generalgb`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import openmm
import torch

from boltzgen.energies.forcefield.expressions import Template, match
from boltzgen.energies.forcefield.gbsa import Dielectrics, GeneralizedBorn, Neck, generalized_born
from boltzgen.energies.forcefield.geometry import PairList
from boltzgen.energies.forcefield.terms import Term

_HCT = "select(step(r+sr2-or1), 0.5*(1/L-1/U+0.25*(r-sr2^2/r)*(1/(U^2)-1/(L^2))+0.5*log(L/U)/r), 0)"
_HCT_PARTS = "U=r+sr2; L=max(or1, D); D=abs(r-sr2)"
_NECK = (
    "step(radius1+radius2+neckCut-r)*getm0(radindex1,radindex2)/(1+100*(r-getd0(radindex1,"
    "radindex2))^2+0.3*1000000*(r-getd0(radindex1,radindex2))^6)"
)
_DIELECTRICS = ("soluteDielectric", "solventDielectric")
_F = "f=sqrt(r^2+B1*B2*exp(-r^2/(4*B1*B2)))"

INTEGRALS = {
    "obc2": Template(f"{_HCT}; {_HCT_PARTS}"),
    "gbn2": Template(
        f"Ivdw+neckScale*Ineck; Ineck={_NECK}; Ivdw={_HCT}; {_HCT_PARTS}; "
        "radius1=or1+offset; radius2=or2+offset",
        constants=("neckScale", "neckCut", "offset"),
    ),
}
RADII = {
    "obc2": Template(
        "1/(1/or-tanh(psi-0.8*psi^2+4.85*psi^3)/radius); psi=I*or; radius=or+offset",
        constants=("offset",),
    ),
    "gbn2": Template(
        "1/(1/or-tanh(alpha*psi-beta*psi^2+gamma*psi^3)/radius); psi=I*or; radius=or+offset",
        constants=("offset",),
    ),
}
SELF_TERMS = {
    False: Template(
        "-0.5*{coulomb}*(1/soluteDielectric-1/solventDielectric)*charge^2/B",
        constants=_DIELECTRICS,
    ),
    True: Template(
        "-0.5*{coulomb}*(1/soluteDielectric-exp(-kappa*B)/solventDielectric)*charge^2/B",
        constants=(*_DIELECTRICS, "kappa"),
    ),
}
SURFACE_TERM = Template(
    "{surface}*(radius+{probe})^2*(radius/B)^6; radius=or+offset", constants=("offset",)
)
PAIR_TERMS = {
    (False, False): Template(
        f"-{{coulomb}}*(1/soluteDielectric-1/solventDielectric)*charge1*charge2/f; {_F}",
        constants=_DIELECTRICS,
    ),
    (True, False): Template(
        f"-{{coulomb}}*(1/soluteDielectric-exp(-kappa*f)/solventDielectric)*charge1*charge2/f;"
        f" {_F}",
        constants=(*_DIELECTRICS, "kappa"),
    ),
    (False, True): Template(
        "-{coulomb}*(1/soluteDielectric-1/solventDielectric)*charge1*charge2*(1/f-{shift});"
        f" {_F}",
        constants=_DIELECTRICS,
    ),
    (True, True): Template(
        "-{coulomb}*(1/soluteDielectric-exp(-kappa*f)/solventDielectric)*charge1*charge2"
        f"*(1/f-{{shift}}); {_F}",
        constants=(*_DIELECTRICS, "kappa"),
    ),
}
PARAMETERS = {
    "obc2": ("charge", "or", "sr"),
    "gbn2": ("charge", "or", "sr", "alpha", "beta", "gamma", "radindex"),
}
_SINGLE = openmm.CustomGBForce.SingleParticle
_PAIR_TYPES = (openmm.CustomGBForce.ParticlePair, openmm.CustomGBForce.ParticlePairNoExclusions)


class UnrecognisedForm(ValueError):
    """A CustomGBForce that is not one of the supported openmm.app forms."""


@dataclass(frozen=True)
class Form:
    """A recognised CustomGBForce: its model, constants and energy terms."""

    model: str
    offset: float
    neck: dict[str, float] | None
    self_term: Dielectrics
    pair_term: Dielectrics
    shift: float
    surface: tuple[float, float] | None


def _check_pair_type(force: openmm.CustomGBForce, kind: int, what: str) -> None:
    if kind not in _PAIR_TYPES:
        raise UnrecognisedForm(f"{what} must be a particle-pair computation")
    if kind == openmm.CustomGBForce.ParticlePair and force.getNumExclusions():
        raise UnrecognisedForm(f"{what} is a ParticlePair computation with exclusions")


def _model(force: openmm.CustomGBForce) -> tuple[str, dict[str, float]]:
    """Which model the computed values I and B are, and their constants."""
    if force.getNumComputedValues() != 2:
        raise UnrecognisedForm("expected two computed values, I and B")
    name_i, text_i, kind_i = force.getComputedValueParameters(0)
    name_b, text_b, kind_b = force.getComputedValueParameters(1)
    if (name_i, name_b) != ("I", "B") or kind_b != _SINGLE:
        raise UnrecognisedForm("expected the computed values I (pairs) and B (single particle)")
    _check_pair_type(force, kind_i, "computed value I")
    for model in INTEGRALS:
        integral, radii = match(text_i, INTEGRALS[model]), match(text_b, RADII[model])
        if integral is not None and radii is not None:
            if "offset" in integral and integral["offset"] != radii["offset"]:
                raise UnrecognisedForm("I and B use different radius offsets")
            return model, {**integral, **radii}
    raise UnrecognisedForm(
        "the computed values I and B are not openmm.app's OBC2 or GBn2 expressions "
        "(HCT, OBC1 and GBn are not supported)"
    )


def _dielectrics(bound: dict[str, float], salt: bool) -> Dielectrics:
    return Dielectrics(
        bound["coulomb"],
        bound["soluteDielectric"],
        bound["solventDielectric"],
        bound["kappa"] if salt else 0.0,
    )


def _energy_terms(force: openmm.CustomGBForce, offset: float) -> dict[str, object]:
    """The self, pair and (optional) surface terms, each matched once."""
    found: dict[str, object] = {}
    for index in range(force.getNumEnergyTerms()):
        text, kind = force.getEnergyTermParameters(index)
        key, value = _energy_term(force, text, kind, offset)
        if key in found:
            raise UnrecognisedForm(f"more than one {key} energy term")
        found[key] = value
    if "self" not in found or "pair" not in found:
        raise UnrecognisedForm("expected a self energy term and a pair energy term")
    return found


def _energy_term(
    force: openmm.CustomGBForce, text: str, kind: int, offset: float
) -> tuple[str, object]:
    if kind == _SINGLE:
        for salt, template in SELF_TERMS.items():
            bound = match(text, template)
            if bound is not None:
                return "self", _dielectrics(bound, salt)
        bound = match(text, SURFACE_TERM)
        if bound is not None:
            if bound["offset"] != offset:
                raise UnrecognisedForm("the surface term uses another radius offset")
            return "surface", (bound["surface"], bound["probe"])
    else:
        _check_pair_type(force, kind, "the pair energy term")
        for (salt, shifted), template in PAIR_TERMS.items():
            bound = match(text, template)
            if bound is not None:
                return "pair", (_dielectrics(bound, salt), bound["shift"] if shifted else 0.0)
    raise UnrecognisedForm(f"energy term {text!r} is not one of openmm.app's GB terms")


def recognise(force: openmm.CustomGBForce) -> Form:
    """The :class:`Form` of ``force``; raises :class:`UnrecognisedForm` with the reason."""
    if force.getNumGlobalParameters():
        raise UnrecognisedForm("global parameters are not supported")
    model, constants = _model(force)
    names = tuple(
        force.getPerParticleParameterName(k) for k in range(force.getNumPerParticleParameters())
    )
    if names != PARAMETERS[model]:
        raise UnrecognisedForm(f"per-particle parameters {names}, expected {PARAMETERS[model]}")
    terms = _energy_terms(force, constants["offset"])
    pair, shift = terms["pair"]
    neck = None
    if model == "gbn2":
        neck = {"scale": constants["neckScale"], "cut": constants["neckCut"]}
    return Form(model, constants["offset"], neck, terms["self"], pair, shift, terms.get("surface"))


def unsupported_reason(force: openmm.CustomGBForce) -> str | None:
    """Why ``force`` cannot be compiled, or None if it can."""
    try:
        form = recognise(force)
        if form.model == "gbn2":
            _tables(force)
    except UnrecognisedForm as error:
        return str(error)
    return None


def _tables(force: openmm.CustomGBForce) -> dict[str, np.ndarray]:
    """The GBn2 tables ``getd0`` and ``getm0`` as arrays ``table[x, y]``."""
    tables = {}
    for k in range(force.getNumTabulatedFunctions()):
        function = force.getTabulatedFunction(k)
        if not isinstance(function, openmm.Discrete2DFunction):
            continue
        size_x, size_y, values = function.getFunctionParameters()
        tables[force.getTabulatedFunctionName(k)] = np.asarray(values).reshape(size_y, size_x).T
    if not {"getd0", "getm0"} <= tables.keys():
        raise UnrecognisedForm("GBn2 needs the Discrete2DFunction tables getd0 and getm0")
    return tables


def _neck(
    force: openmm.CustomGBForce, form: Form, radius: np.ndarray, index: np.ndarray, pairs: PairList
) -> Neck:
    assert form.neck is not None
    tables = _tables(force)
    i, j = pairs.i.numpy(), pairs.j.numpy()
    k = np.rint(index).astype(np.int64)
    d0, m0 = tables["getd0"], tables["getm0"]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float64)

    return Neck(
        scale=form.neck["scale"],
        reach=t(radius[i] + radius[j] + form.neck["cut"]),
        m0_ij=t(m0[k[i], k[j]]),
        d0_ij=t(d0[k[i], k[j]]),
        m0_ji=t(m0[k[j], k[i]]),
        d0_ji=t(d0[k[j], k[i]]),
    )


def custom_gb(force: openmm.CustomGBForce, pairs: PairList) -> list[Term]:
    """Compile an openmm.app OBC2 or GBn2 CustomGBForce (see :func:`recognise`)."""
    form = recognise(force)
    rows = np.array(
        [force.getParticleParameters(a) for a in range(force.getNumParticles())], dtype=np.float64
    )
    charge, rho, scaled = rows[:, 0], rows[:, 1], rows[:, 2]
    radius = rho + form.offset
    n = len(rows)
    if form.model == "gbn2":
        obc = (rows[:, 3], rows[:, 4], rows[:, 5])
        neck = _neck(force, form, radius, rows[:, 6], pairs)
    else:
        obc = (np.full(n, 1.0), np.full(n, 0.8), np.full(n, 4.85))
        neck = None
    method = force.getNonbondedMethod()
    cutoff = None
    if method != openmm.CustomGBForce.NoCutoff:
        cutoff = force.getCutoffDistance().value_in_unit(openmm.unit.nanometer)
    term: GeneralizedBorn = generalized_born(
        charge,
        rho,
        scaled,
        radius,
        obc,
        form.self_term,
        form.pair_term,
        form.surface,
        pairs,
        (cutoff, method == openmm.CustomGBForce.CutoffPeriodic, form.shift),
        inside=False,
        neck=neck,
    )
    return [term]
