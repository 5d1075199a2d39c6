"""OpenMM's custom-force expression language, parsed once into a batched torch function.

An expression is ``main; name1=expr1; name2=expr2; ...`` (OpenMM user guide, "Writing
Custom Expressions"; the Lepton parser). Grammar and semantics, as Lepton has them:

* numbers (``1``, ``.5``, ``2.5e-3``), variables, and the binary operators ``+ - * / ^``
  with precedence ``+ -`` < ``* /`` < unary minus < ``^``; ``^`` is right-associative
  (``2^3^2 = 2^9``), the others left-associative; ``-x^2 = -(x^2)``;
* the functions sqrt, exp, log, sin, cos, sec, csc, tan, cot, asin, acos, atan, atan2,
  sinh, cosh, tanh, erf, erfc, step (``x ≥ 0 ? 1 : 0``), delta (``x = 0 ? 1 : 0``),
  square, cube, recip, min, max, abs, floor, ceil, select (``x ≠ 0 ? a : b``);
* intermediate definitions after ``;``. They are read from the last to the first, so a
  definition may use those written after it (and the main expression all of them); a
  name that no later definition gives is a free variable (a parameter, ``r``, ...).

:func:`parse` builds a tree whose shared definitions are shared nodes;
:class:`Expression` evaluates it on an environment of torch tensors (or plain
numbers), computing each shared node once. Everything is differentiable by autograd
except step, delta, floor, ceil and the index of a discrete table, which are piecewise
constant (zero derivative, as OpenMM takes it). Constant sub-expressions fold to Python
floats. Functions of the environment (tabulated functions, ``distance(p1, p2)`` of a
compound bond) are callables found in the environment under their name.

Example:
    >>> f = Expression("k*(r-r0)^2; r0=0.1")
    >>> f({"k": 2.0, "r": torch.tensor([0.3])})
    tensor([0.0800])
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Value = Tensor | float


class ExpressionError(ValueError):
    """An expression that cannot be read, or that uses what its force does not define."""


@dataclass(frozen=True, eq=False)
class Number:
    value: float


@dataclass(frozen=True, eq=False)
class Variable:
    name: str


@dataclass(frozen=True, eq=False)
class Negate:
    operand: Node


@dataclass(frozen=True, eq=False)
class Binary:
    operator: str
    left: Node
    right: Node


@dataclass(frozen=True, eq=False)
class Call:
    name: str
    arguments: tuple[Node, ...]


Node = Number | Variable | Negate | Binary | Call

_OPERATORS = {"+": (0, True), "-": (0, True), "*": (1, True), "/": (1, True), "^": (3, False)}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<function>[A-Za-z_][\w.]*\()|(?P<name>[A-Za-z_][\w.]*)|(?P<symbol>[-+*/^(),]))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None or found.end() == position:
            raise ExpressionError(f"cannot read {text!r} at position {position}")
        position = found.end()
        tokens.append((found.lastgroup or "", found.group(found.lastgroup or "")))
    return tokens


class _Parser:
    """Lepton's precedence climbing over one part of an expression."""

    def __init__(self, text: str, definitions: Mapping[str, Node]):
        self.tokens, self.position, self.definitions = _tokens(text), 0, definitions
        if not self.tokens:
            raise ExpressionError(f"empty expression in {text!r}")

    def next(self) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise ExpressionError("unexpected end of expression")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def expect(self, symbol: str) -> None:
        _, text = self.next()
        if text != symbol:
            raise ExpressionError(f"expected {symbol!r}, got {text!r}")

    def primary(self) -> Node:
        kind, text = self.next()
        if kind == "number":
            return Number(float(text))
        if kind == "name":
            return self.definitions.get(text) or Variable(text)
        if kind == "function":
            arguments = [self.climb(0)]
            while self.peek() == ("symbol", ","):
                self.next()
                arguments.append(self.climb(0))
            self.expect(")")
            return Call(text[:-1], tuple(arguments))
        if text == "(":
            node = self.climb(0)
            self.expect(")")
            return node
        if text == "-":
            return Negate(self.climb(2))
        raise ExpressionError(f"unexpected {text!r}")

    def climb(self, precedence: int) -> Node:
        node = self.primary()
        while (token := self.peek()) is not None and token[1] in _OPERATORS:
            level, left_associative = _OPERATORS[token[1]]
            if level < precedence:
                break
            self.next()
            right = self.climb(level + 1 if left_associative else level)
            node = Binary(token[1], node, right)
        return node

    def whole(self) -> Node:
        node = self.climb(0)
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} after the expression")
        return node


def parse(text: str) -> Node:
    """The tree of ``text`` with its definitions inlined as shared nodes (Lepton's rules)."""
    parts = text.split(";")
    definitions: dict[str, Node] = {}
    try:
        for part in reversed(parts[1:]):
            if not part.strip():
                continue
            name, equals, body = part.partition("=")
            if not equals or not name.strip():
                raise ExpressionError(f"definition {part.strip()!r} does not name a value")
            definitions[name.strip()] = _Parser(body, definitions).whole()
        return _Parser(parts[0], definitions).whole()
    except ExpressionError as error:
        raise ExpressionError(f"in expression {text!r}: {error}") from None


_UNARY_NAMES = (
    "sqrt exp log sin cos sec csc tan cot asin acos atan sinh cosh tanh erf erfc "
    "step delta square cube recip abs floor ceil"
)
BUILTINS: dict[str, int] = {
    **dict.fromkeys(_UNARY_NAMES.split(" "), 1),
    "atan2": 2,
    "min": 2,
    "max": 2,
    "select": 3,
}
"""Built-in functions and their numbers of arguments."""


def free_names(node: Node) -> tuple[set[str], set[str]]:
    """(free variables, called non-built-in functions) of a tree."""
    variables: set[str] = set()
    functions: set[str] = set()
    seen: set[int] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, Variable):
            variables.add(item.name)
        elif isinstance(item, Negate):
            stack.append(item.operand)
        elif isinstance(item, Binary):
            stack.extend((item.left, item.right))
        elif isinstance(item, Call):
            if item.name in BUILTINS:
                if len(item.arguments) != BUILTINS[item.name]:
                    raise ExpressionError(
                        f"{item.name} takes {BUILTINS[item.name]} argument(s), "
                        f"got {len(item.arguments)}"
                    )
            else:
                functions.add(item.name)
            stack.extend(item.arguments)
    return variables, functions


def _like(value: Value, other: Value) -> Tensor:
    if isinstance(value, Tensor):
        return value
    reference = other if isinstance(other, Tensor) else None
    if reference is None:
        return torch.tensor(value, dtype=torch.float64)
    return torch.tensor(value, dtype=reference.dtype, device=reference.device)


def _power(base: Value, exponent: Value) -> Value:
    if isinstance(exponent, float) and not isinstance(base, Tensor):
        try:
            return math.pow(base, exponent)
        except (ValueError, OverflowError):
            return math.nan
    if isinstance(exponent, float) and exponent.is_integer() and abs(exponent) <= 4:
        n = int(abs(exponent))
        if n == 0:
            return torch.ones_like(base)
        result = base
        for _ in range(n - 1):
            result = result * base
        return result if exponent > 0 else 1.0 / result
    if isinstance(exponent, float) and exponent == 0.5:
        return torch.sqrt(base)
    return torch.pow(base, exponent)


def _unary(torch_function: Callable[[Tensor], Tensor], scalar: Callable[[float], float]):
    def apply(x: Value) -> Value:
        if isinstance(x, Tensor):
            return torch_function(x)
        try:
            return float(scalar(x))
        except (ValueError, OverflowError, ZeroDivisionError):
            return math.nan

    return apply


def _indicator(condition: Callable[[Any], Any]) -> Callable[[Value], Value]:
    def apply(x: Value) -> Value:
        if isinstance(x, Tensor):
            return condition(x).to(x.dtype)
        return 1.0 if condition(x) else 0.0

    return apply


def _select(condition: Value, a: Value, b: Value) -> Value:
    if not isinstance(condition, Tensor):
        return a if condition != 0 else b
    return torch.where(condition != 0, _like(a, condition), _like(b, condition))


def _extremum(pick: Callable[[Tensor, Tensor], Tensor], scalar: Callable[[float, float], float]):
    def apply(a: Value, b: Value) -> Value:
        if not isinstance(a, Tensor) and not isinstance(b, Tensor):
            return scalar(a, b)
        return pick(_like(a, b), _like(b, a))

    return apply


def _atan2(y: Value, x: Value) -> Value:
    if not isinstance(y, Tensor) and not isinstance(x, Tensor):
        return math.atan2(y, x)
    return torch.atan2(_like(y, x), _like(x, y))


FUNCTIONS: dict[str, Callable[..., Value]] = {
    "sqrt": _unary(torch.sqrt, math.sqrt),
    "exp": _unary(torch.exp, math.exp),
    "log": _unary(torch.log, math.log),
    "sin": _unary(torch.sin, math.sin),
    "cos": _unary(torch.cos, math.cos),
    "sec": _unary(lambda x: 1.0 / torch.cos(x), lambda x: 1.0 / math.cos(x)),
    "csc": _unary(lambda x: 1.0 / torch.sin(x), lambda x: 1.0 / math.sin(x)),
    "tan": _unary(torch.tan, math.tan),
    "cot": _unary(lambda x: 1.0 / torch.tan(x), lambda x: 1.0 / math.tan(x)),
    "asin": _unary(torch.asin, math.asin),
    "acos": _unary(torch.acos, math.acos),
    "atan": _unary(torch.atan, math.atan),
    "sinh": _unary(torch.sinh, math.sinh),
    "cosh": _unary(torch.cosh, math.cosh),
    "tanh": _unary(torch.tanh, math.tanh),
    "erf": _unary(torch.special.erf, math.erf),
    "erfc": _unary(torch.special.erfc, math.erfc),
    "square": _unary(lambda x: x * x, lambda x: x * x),
    "cube": _unary(lambda x: x * x * x, lambda x: x * x * x),
    "recip": _unary(lambda x: 1.0 / x, lambda x: 1.0 / x),
    "abs": _unary(torch.abs, abs),
    "floor": _unary(torch.floor, math.floor),
    "ceil": _unary(torch.ceil, math.ceil),
    "step": _indicator(lambda x: x >= 0),
    "delta": _indicator(lambda x: x == 0),
    "select": _select,
    "min": _extremum(torch.minimum, min),
    "max": _extremum(torch.maximum, max),
    "atan2": _atan2,
}


def _divide(a: Value, b: Value) -> Value:
    if isinstance(a, Tensor) or isinstance(b, Tensor) or b != 0:
        return a / b
    return math.copysign(math.inf, a) if a else math.nan


_BINARY: dict[str, Callable[[Value, Value], Value]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: _divide(a, b),
    "^": _power,
}


class Expression:
    """A parsed expression, evaluated on environments of tensors or numbers.

    Args:
        text: the expression (see the module docstring).

    Attributes:
        tree: the parsed tree.
        variables: the free variable names.
        functions: the non-built-in functions it calls (tabulated functions, geometry).
    """

    def __init__(self, text: str):
        self.text = text
        self.tree = parse(text)
        self.variables, self.functions = free_names(self.tree)

    def check(self, variables: set[str], functions: set[str] = frozenset()) -> None:
        """Raise :class:`ExpressionError` naming any variable or function it may not use."""
        unknown = sorted(self.variables - variables)
        if unknown:
            raise ExpressionError(
                f"expression {self.text!r} uses undefined variable(s) {', '.join(unknown)}"
            )
        unknown = sorted(self.functions - functions)
        if unknown:
            raise ExpressionError(
                f"expression {self.text!r} calls unknown function(s) {', '.join(unknown)}"
            )

    def __call__(self, environment: Mapping[str, Any]) -> Value:
        """The value on ``environment`` (names → tensors, numbers or callables)."""
        memo: dict[int, Value] = {}
        return _evaluate(self.tree, environment, memo)


def _evaluate(node: Node, environment: Mapping[str, Any], memo: dict[int, Value]) -> Value:
    key = id(node)
    if key in memo:
        return memo[key]
    if isinstance(node, Number):
        value: Value = node.value
    elif isinstance(node, Variable):
        value = environment[node.name]
    elif isinstance(node, Negate):
        value = -_evaluate(node.operand, environment, memo)
    elif isinstance(node, Binary):
        left = _evaluate(node.left, environment, memo)
        value = _BINARY[node.operator](left, _evaluate(node.right, environment, memo))
    else:
        arguments = [_evaluate(a, environment, memo) for a in node.arguments]
        function = FUNCTIONS.get(node.name) or environment[node.name]
        value = function(*arguments)
    memo[key] = value
    return value
