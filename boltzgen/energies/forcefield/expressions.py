"""Matching OpenMM custom-force expressions against known templates.

An OpenMM expression is ``main; name1=expr1; name2=expr2; ...``. We compare one with a
template written the same way, token by token (identifiers, operators, numbers), with

* numbers compared as numbers (``0.009`` equals ``0.008999999999999999``),
* ``{name}`` in the template matching any number and binding it to ``name``,
* definitions compared as a set (in any order), and
* definitions that are plain numbers (``solventDielectric=78.5``) read as constants:
  those the template lists must be present and are returned; others are allowed only
  if nothing refers to them.

Two expressions that match compute the same function, so a matched force can be
evaluated by the hand-written torch code for its template.

Example:
    >>> match("k*r^2; k=2.5", Template("k*r^2", constants=("k",)))
    {'k': 2.5}
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"\s*(?:(?P<placeholder>\{[A-Za-z_]\w*\})|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<op>[-+*/^(),<>=!]))"
)
Token = str | float


def tokenize(text: str) -> list[Token]:
    """Identifiers, operators and placeholders as strings; numbers as floats."""
    tokens: list[Token] = []
    position, text = 0, text.strip()
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None or found.end() == position:
            raise ValueError(f"cannot read expression {text!r} at position {position}")
        position = found.end()
        number = found.group("number")
        tokens.append(float(number) if number is not None else found.group(found.lastgroup))
    return tokens


@dataclass(frozen=True)
class Parsed:
    """An expression split into its main part, its definitions and its numeric constants."""

    main: list[Token]
    definitions: dict[str, list[Token]]
    constants: dict[str, float]


def parse(text: str) -> Parsed:
    """Split ``main; a=...; b=...`` into tokens, definitions and numeric constants."""
    parts = [p.strip() for p in text.split(";") if p.strip()]
    if not parts:
        raise ValueError("empty expression")
    definitions: dict[str, list[Token]] = {}
    constants: dict[str, float] = {}
    for part in parts[1:]:
        name, _, body = part.partition("=")
        tokens = tokenize(body)
        if len(tokens) == 2 and tokens[0] == "-" and isinstance(tokens[1], float):
            tokens = [-tokens[1]]
        if len(tokens) == 1 and isinstance(tokens[0], float):
            constants[name.strip()] = tokens[0]
        else:
            definitions[name.strip()] = tokens
    return Parsed(tokenize(parts[0]), definitions, constants)


@dataclass(frozen=True)
class Template:
    """An expression template: ``{name}`` placeholders bind numbers, ``constants`` names
    the numeric definitions the expression must make."""

    text: str
    constants: tuple[str, ...] = ()


def _same_number(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


def _match_tokens(got: list[Token], want: list[Token], bound: dict[str, float]) -> bool:
    if len(got) != len(want):
        return False
    for g, w in zip(got, want, strict=True):
        if isinstance(w, str) and w.startswith("{"):
            if not isinstance(g, float):
                return False
            key = w[1:-1]
            if key in bound and not _same_number(bound[key], g):
                return False
            bound[key] = g
        elif isinstance(w, float):
            if not (isinstance(g, float) and _same_number(g, w)):
                return False
        elif g != w:
            return False
    return True


def _names(tokens: list[Token]) -> set[str]:
    return {t for t in tokens if isinstance(t, str) and (t[0].isalpha() or t[0] == "_")}


def match(expression: str, template: Template) -> dict[str, float] | None:
    """The bound placeholders and constants if ``expression`` matches ``template``, else None."""
    try:
        got = parse(expression)
    except ValueError:
        return None
    want = parse(template.text)
    if set(got.definitions) != set(want.definitions) or want.constants:
        return None
    bound: dict[str, float] = {}
    if not _match_tokens(got.main, want.main, bound):
        return None
    for name, tokens in want.definitions.items():
        if not _match_tokens(got.definitions[name], tokens, bound):
            return None
    used = _names(got.main).union(*(_names(t) for t in got.definitions.values()))
    referenced_constants = used & set(got.constants)
    if referenced_constants != set(template.constants) or set(template.constants) & set(bound):
        return None
    return {**bound, **{name: got.constants[name] for name in template.constants}}
