"""Recognising openmm.app's CustomGBForce forms by their expressions, and nothing else."""

import copy

import openmm
import pytest
from openmm import app, unit

from boltzgen.energies.forcefield import unsupported_forces
from boltzgen.energies.forcefield.customgb import UnrecognisedForm, recognise
from boltzgen.energies.forcefield.expressions import Template, match, parse, tokenize
from boltzgen.molecules import build_peptide


def test_tokenize_reads_numbers_names_and_operators():
    assert tokenize("0.5*or1^2-1e-3/B") == [0.5, "*", "or1", "^", 2.0, "-", 0.001, "/", "B"]


def test_parse_splits_definitions_and_numeric_constants():
    parsed = parse("a*x; x=r+1; a=-2.5")
    assert parsed.main == ["a", "*", "x"]
    assert parsed.definitions == {"x": ["r", "+", 1.0]}
    assert parsed.constants == {"a": -2.5}


def test_match_binds_placeholders_and_constants_in_any_order():
    template = Template("{c}*k*x; x=r^2; y=2*r", constants=("k",))
    assert match("3.5*k*x; y=2*r; k=0.008999999999999999; x=r^2", template) == {
        "c": 3.5,
        "k": 0.009,
    }


@pytest.mark.parametrize(
    "expression",
    [
        "3.5*k*x; x=r^3; y=2*r; k=1",  # another exponent
        "3.5*k*x; x=r^2; k=1",  # a definition missing
        "3.5*k*x; x=r^2; y=2*r; z=r; k=1",  # an extra definition
        "3.5*k*x; x=r^2; y=2*r",  # the constant missing
        "3.5*k*x; x=r^2; y=2*r; k=1; r=0.3",  # a constant shadowing the distance
        "3.5*k+x; x=r^2; y=2*r; k=1",  # another operator
    ],
)
def test_match_refuses_anything_else(expression):
    assert match(expression, Template("{c}*k*x; x=r^2; y=2*r", constants=("k",))) is None


def test_a_repeated_placeholder_must_bind_one_number():
    template = Template("{a}*x+{a}")
    assert match("2*x+2", template) == {"a": 2.0}
    assert match("2*x+3", template) is None


def _gb_force(implicit, **options):
    peptide = build_peptide("A")
    files = ["amber99sbildn.xml", f"implicit/{implicit}.xml"]
    system = app.ForceField(*files).createSystem(peptide.topology, **options)
    (force,) = (f for f in system.getForces() if isinstance(f, openmm.CustomGBForce))
    return system, force


@pytest.mark.parametrize("model", ["obc2", "gbn2"])
def test_openmm_app_forms_are_recognised_with_their_constants(model):
    _, force = _gb_force(
        model,
        nonbondedMethod=app.CutoffNonPeriodic,
        nonbondedCutoff=1.2 * unit.nanometer,
        implicitSolventKappa=0.7 / unit.nanometer,
        solventDielectric=60.0,
    )
    form = recognise(force)
    assert form.model == model
    assert form.offset == pytest.approx(0.009 if model == "obc2" else 0.0195141)
    assert form.pair_term.solvent == 60.0 and form.pair_term.kappa == pytest.approx(0.7)
    assert form.shift == pytest.approx(1 / 1.2)
    assert form.surface == pytest.approx((28.3919551, 0.14))
    assert (form.neck is not None) == (model == "gbn2")


def test_forms_without_the_surface_term_are_recognised():
    _, force = _gb_force("obc2", sasaMethod=None)
    assert recognise(force).surface is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f.setComputedValueParameters(1, "B", _edit(f, 1, "4.85", "4.86"), 0), "I and B"),
        (lambda f: f.addGlobalParameter("lambda", 1.0), "global parameters"),
        (lambda f: f.addEnergyTerm("0.1*charge", 0), "energy term"),
        (lambda f: f.setEnergyTermParameters(2, *_pair_term_as_single(f)), "energy term"),
    ],
    ids=["edited-constant", "global-parameter", "extra-term", "pair-term-type"],
)
def test_edited_forms_are_not_taken_for_the_template(change, reason):
    """An edited form is not the template's; the general compiler takes it (see
    test_forcefield_custom) unless it is ill-formed, like a pair term typed as single."""
    system, force = _gb_force("obc2")
    edited = copy.deepcopy(force)
    change(edited)
    with pytest.raises(UnrecognisedForm, match=reason):
        recognise(edited)
    kinds = [isinstance(f, openmm.CustomGBForce) for f in system.getForces()]
    system.removeForce(kinds.index(True))
    system.addForce(edited)
    problems = unsupported_forces(system)
    text, kind = edited.getEnergyTermParameters(2)
    if kind == openmm.CustomGBForce.SingleParticle and "charge1" in text:
        (problem,) = problems
        assert problem.startswith("CustomGBForce") and "undefined variable" in problem
    else:
        assert problems == []


def _edit(force, index, old, new):
    _, expression, _ = force.getComputedValueParameters(index)
    assert old in expression
    return expression.replace(old, new)


def _pair_term_as_single(force):
    expression, _ = force.getEnergyTermParameters(2)
    return expression, openmm.CustomGBForce.SingleParticle
