"""The recipes of docs/architecture.md run as written: a new system family and a new sampler.

Every fenced block with a ``title="file"`` is written to a fresh folder; the untitled
``python`` blocks then run in order in that folder (as a user would run them), and their
assertions — exact reference by capability, the new sampler's free energy within five
standard errors of the exact value, its budget spent — must hold.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from boltzgen.energies.registry import ENERGY_KINDS
from boltzgen.runner.methods import METHODS

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
BLOCK = re.compile(r'^```(\w+)(?: title="([^"]+)")?\n(.*?)^```$', re.M | re.S)
USER_MODULES = ("harmonic_trap", "random_walk", "random_walk_method")


def blocks() -> list[tuple[str, str | None, str]]:
    """``(language, title, text)`` of every fenced block of the architecture page."""
    return [(m.group(1), m.group(2), m.group(3)) for m in BLOCK.finditer(DOC.read_text())]


@pytest.fixture
def recipe_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    ENERGY_KINDS.pop("harmonic_trap", None)
    METHODS.pop("random_walk", None)
    for name in USER_MODULES:
        sys.modules.pop(name, None)


def test_the_page_has_both_recipes():
    titles = {title for _, title, _ in blocks() if title}
    assert {"harmonic_trap.py", "harmonic_trap_3d.yaml", "random_walk.py"} <= titles
    assert {"random_walk_method.py", "trap_experiment.yaml"} <= titles


def test_recipes_run_as_written(recipe_folder: Path):
    for _, title, text in blocks():
        if title:
            (recipe_folder / title).write_text(text)
    scripts = [text for language, title, text in blocks() if language == "python" and not title]
    assert len(scripts) == 2
    for script in scripts:
        exec(compile(script, str(DOC), "exec"), {"__name__": "__recipe__"})
