"""Statistical tests say what they check: every ``< k * se`` tolerance in a test is the
number of standard errors its docstring (or its module's) promises; a test that promises
nothing uses the suite's convention, :data:`DEFAULT_SE` (see ``tests/conftest.py``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DEFAULT_SE = "4"
CHECK = re.compile(r"<\s*(\d+)\s*\*\s*(?:float\()?\s*[\w.\[\]]*(?:se|stderr|std_err)\b")
PROMISE = re.compile(r"(\d+)\s*(?:standard errors|se\b|stderr\b)")


def _functions(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            yield node


def _mismatches(path: Path) -> list[str]:
    source = path.read_text()
    tree = ast.parse(source)
    module = set(PROMISE.findall(ast.get_docstring(tree) or ""))
    out = []
    for node in _functions(tree):
        body = ast.get_source_segment(source, node) or ""
        checked = set(CHECK.findall(body))
        own = set(PROMISE.findall(ast.get_docstring(node) or ""))
        promised = own or module or {DEFAULT_SE}
        if checked - promised or (own and checked and own - checked):
            out.append(f"{path.name}::{node.name} checks {checked}, promises {promised}")
    return out


@pytest.mark.parametrize(
    "path", sorted(set(TESTS.rglob("test_*.py")) - {Path(__file__)}), ids=lambda p: p.name
)
def test_docstrings_promise_the_tolerance_they_check(path):
    assert not _mismatches(path)


@pytest.mark.parametrize(
    ("doc", "k", "agree"),
    [
        ("Within 4 standard errors.", 5, False),
        ("Within 5 se.", 5, True),
        ("", 5, False),
        ("", 4, True),
        ("Within 6 standard errors.", 4, False),
    ],
)
def test_the_checker_catches_a_mismatch(tmp_path, doc, k, agree):
    test = tmp_path / "test_case.py"
    test.write_text(f'def test_x():\n    """{doc}"""\n    assert 1 < {k} * se\n')
    assert (not _mismatches(test)) == agree
