"""The floor plan holds: imports point down and no package has an import cycle.

``make lint`` runs the import-linter contracts of ``pyproject.toml``; these tests run them
on the tree and show that they catch what they promise to catch, on a copy of the
package with one upward import (records → runner) or one cycle (two runner modules).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the package under ``root`` with the project's contracts."""
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_of_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "boltzgen", tmp_path / "boltzgen", symlinks=True)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_keeps_its_floors():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_breaks_the_floors(tmp_path: Path):
    root = copy_of_package(tmp_path)
    append(root / "boltzgen" / "records" / "cost.py", "import boltzgen.runner.tasks  # noqa")
    result = lint(root)
    assert result.returncode != 0
    assert "boltzgen.records is not allowed to import boltzgen.runner" in result.stdout


def test_an_import_cycle_is_caught(tmp_path: Path):
    root = copy_of_package(tmp_path)
    append(root / "boltzgen" / "runner" / "manifest.py", "import boltzgen.runner.report  # noqa")
    append(root / "boltzgen" / "runner" / "report.py", "import boltzgen.runner.manifest  # noqa")
    result = lint(root)
    assert result.returncode != 0
    assert "No import cycles" in result.stdout and "BROKEN" in result.stdout
