"""OpenMM's expression language and tabulated functions, against Lepton's rules and OpenMM.

Expressions are checked two ways: their values on numbers against the rules of the
language (precedence, associativity, definitions), and, through a CustomExternalForce,
their energies and autograd forces against OpenMM's Reference platform, which
differentiates the same expression symbolically.
"""

import math

import numpy as np
import openmm
import pytest
import scipy.interpolate
import torch
from openmm import unit
from openmm_reference import reference

from boltzgen.energies.forcefield import TorchForceField, unsupported_forces
from boltzgen.energies.forcefield.language import Expression, ExpressionError
from boltzgen.energies.forcefield.tabulated import natural_spline, periodic_spline, tabulated

KJ = unit.kilojoule_per_mole


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2^3^2", 512.0),
        ("-2^2", -4.0),
        ("-2*3+1", -5.0),
        ("1-2-3", -4.0),
        ("8/2/2", 2.0),
        ("2*-3", -6.0),
        ("2^-1", 0.5),
        ("(1+2)*3", 9.0),
        ("a; a=b+1; b=2", 3.0),
        ("a*b; b=3; a=2", 6.0),
        ("step(0)+step(-1e-9)+delta(0)+delta(1)", 2.0),
        ("select(0, 1, 2)+select(-3, 10, 20)", 12.0),
        ("min(1, 3)+max(2, 5)+abs(-4)", 10.0),
        ("floor(-1.5)+ceil(1.2)", 0.0),
        ("square(3)+cube(2)+recip(4)", 17.25),
        ("atan2(1, -1)", 3 * math.pi / 4),
        ("exp(-2^2)", math.exp(-4.0)),
        ("erf(0.3)+erfc(0.3)", 1.0),
        ("sec(0.2)*cos(0.2)+csc(0.3)*sin(0.3)+cot(0.4)*tan(0.4)", 3.0),
        ("1.5e-3*2E+2", 0.3),
    ],
)
def test_values_follow_the_language_rules(text, value):
    assert Expression(text)({}) == pytest.approx(value, rel=1e-14)


def test_a_definition_is_computed_once_and_may_use_later_ones_only():
    calls = []

    def count(x):
        calls.append(x)
        return x

    assert Expression("f(1)*a+a; a=f(2)")({"f": count}) == 4.0
    assert sorted(calls) == [1.0, 2.0]
    with pytest.raises(ExpressionError, match=r"undefined variable.*b"):
        Expression("a; b=1; a=b+1").check(set())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1+", "end of expression"),
        ("(1+2", "expected"),
        ("a=1", "cannot read"),
        ("2 3", "unexpected"),
    ],
)
def test_malformed_expressions_are_refused(text, message):
    with pytest.raises(ExpressionError, match=message):
        Expression(text)


def test_wrong_argument_counts_and_unknown_names_are_refused():
    with pytest.raises(ExpressionError, match="atan2 takes 2"):
        Expression("atan2(x)")
    with pytest.raises(ExpressionError, match=r"unknown function.*foo"):
        Expression("foo(x)").check({"x"})


def external_system(expression, n=6, parameters=("a",), globals_=None, seed=0, functions=()):
    """A CustomExternalForce on ``n`` particles with random per-particle parameters; with
    tabulated ``functions``, a one-particle CustomCompoundBondForce (which can hold them)
    with the coordinates renamed x1, y1, z1."""
    rng = np.random.default_rng(seed)
    if functions:
        renamed = expression.replace("x", "x1").replace("y", "y1").replace("z", "z1")
        force = openmm.CustomCompoundBondForce(1, renamed)
        add_parameter, add = force.addPerBondParameter, lambda i, p: force.addBond([i], p)
        for name, function in functions:
            force.addTabulatedFunction(name, function)
    else:
        force = openmm.CustomExternalForce(expression)
        add_parameter, add = force.addPerParticleParameter, force.addParticle
    for name in parameters:
        add_parameter(name)
    for name, value in (globals_ or {}).items():
        force.addGlobalParameter(name, value)
    system = openmm.System()
    for i in range(n):
        system.addParticle(1.0)
        add(i, list(rng.uniform(0.5, 1.5, len(parameters))))
    system.addForce(force)
    return system


def assert_matches_openmm(system, x, energy_rtol=1e-10, force_rtol=1e-9):
    assert unsupported_forces(system) == []
    energies, forces = reference(system, x)
    ff = TorchForceField.from_openmm(system, 300.0)
    u, f = ff.potential_energy_and_forces(torch.as_tensor(x))
    scale = max(np.abs(energies).max(), 1.0)
    assert np.abs(u.numpy() - energies).max() <= energy_rtol * scale
    assert np.abs(f.numpy() - forces).max() <= force_rtol * max(np.abs(forces).max(), 1.0)


EXPRESSIONS = [
    "a*x^2 + y^3 - z^4 + x*y*z",
    "sqrt(x^2+y^2+1) + exp(-a*z^2) + log(2+sin(x))",
    "sin(x)*cos(y)*tan(0.3*z) + asin(0.5*sin(x)) + acos(0.4*cos(y)) + atan(z)",
    "atan2(y, x+3) + sinh(0.5*x) + cosh(0.3*y) + tanh(z)",
    "erf(a*x) + erfc(y) + abs(z-0.2)^1.5",
    "step(x-0.3)*a*x^2 + delta(floor(y))*y + select(step(z), z^2, -z)",
    "min(x, y)^2 + max(y, z)^2 + floor(3*x) + ceil(2*y)",
    "k*(d-d0)^2; d=sqrt(x^2+y^2+z^2); d0=a*k0; k0=0.5",
    "-(x-1)^2*lambda + 2^-a*y",
    "square(x)+cube(y)+recip(2+z)+sec(0.3*x)+csc(1+0.1*y)+cot(1+0.1*z)",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_expression_energies_and_forces_agree_with_openmm(expression):
    rng = np.random.default_rng(len(expression))
    globals_ = {"k": 3.5, "lambda": 0.7}
    system = external_system(expression, globals_=globals_)
    assert_matches_openmm(system, rng.uniform(-1.2, 1.2, (3, 6, 3)))


@pytest.mark.parametrize("periodic", [False, True])
def test_splines_match_scipy(periodic):
    rng = np.random.default_rng(1)
    x = list(np.linspace(0.0, 2.0, 9))
    y = list(rng.normal(size=9))
    if periodic:
        y[-1] = y[0]
    second = (periodic_spline if periodic else natural_spline)(x, y)
    expected = scipy.interpolate.CubicSpline(x, y, bc_type="periodic" if periodic else "natural")
    assert np.allclose(second, expected(x, 2), rtol=1e-12, atol=1e-12)
    function = tabulated(openmm.Continuous1DFunction(y, 0.0, 2.0, periodic))
    t = torch.linspace(0.0, 2.0, 37, dtype=torch.float64)
    assert np.allclose(function(t).numpy(), expected(t.numpy()), rtol=1e-12, atol=1e-12)
    outside = function(torch.tensor([-0.5, 2.5], dtype=torch.float64)).numpy()
    wrapped = expected(np.array([1.5, 0.5])) if periodic else [0.0, 0.0]
    assert np.allclose(outside, wrapped, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("periodic", [False, True])
def test_continuous_tabulated_function_agrees_with_openmm(periodic):
    rng = np.random.default_rng(2)
    values = list(rng.normal(size=12))
    if periodic:
        values[-1] = values[0]
    spline = openmm.Continuous1DFunction(values, -0.8, 0.9, periodic)
    system = external_system("a*f(x)+f(y)*f(z)", functions=[("f", spline)])
    assert_matches_openmm(system, rng.uniform(-1.3, 1.3, (3, 6, 3)))


def test_discrete_tables_agree_with_openmm():
    rng = np.random.default_rng(3)
    functions = [
        ("t1", openmm.Discrete1DFunction(list(rng.normal(size=4)))),
        ("t2", openmm.Discrete2DFunction(3, 2, list(rng.normal(size=6)))),
        ("t3", openmm.Discrete3DFunction(2, 3, 2, list(rng.normal(size=12)))),
    ]
    expression = "x^2*t1(2*a) + y*t2(a+1, 1) + z^2*t3(1, 2*a, 0) + t1(7)"
    system = external_system(expression, functions=functions)
    assert_matches_openmm(system, rng.uniform(-1.0, 1.0, (3, 6, 3)))


def test_continuous_2d_functions_are_refused_by_name():
    function = openmm.Continuous2DFunction(3, 3, [0.0] * 9, 0, 1, 0, 1)
    system = external_system("f(x, y)", functions=[("f", function)])
    (problem,) = unsupported_forces(system)
    assert problem.startswith("CustomCompoundBondForce") and "Continuous2DFunction" in problem
