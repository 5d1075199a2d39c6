"""The catalog ships with the package: installed outside the checkout, every system loads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from boltzgen.systems import CATALOG, list_systems

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "boltzgen", "systems")
LOAD_ALL = """
import boltzgen, boltzgen.systems as catalog
assert boltzgen.__file__.startswith({target!r}), boltzgen.__file__
assert str(catalog.CATALOG).startswith({target!r}), catalog.CATALOG
for name in catalog.list_systems():
    system = boltzgen.load_system(name)
    system.energy.close()
    print(name, tuple(system.energy.event_shape))
"""


def test_the_checkout_reads_the_cards_of_its_systems_folder():
    assert (ROOT / "systems").resolve() == CATALOG
    assert {"double_well_2d", "alanine_dipeptide_vacuum"} <= set(list_systems())


def _copy_sources(destination: Path) -> None:
    """The files a build needs, symlinks kept (``boltzgen/catalog`` links to ``systems``)."""
    destination.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(ROOT / name, destination / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy(ROOT / name, destination / name)


@pytest.mark.slow
def test_an_installed_copy_loads_every_system_from_elsewhere(tmp_path):
    source, target, elsewhere = tmp_path / "src", tmp_path / "site", tmp_path / "elsewhere"
    _copy_sources(source)
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "--target", str(target), str(source)], check=True, timeout=300)
    elsewhere.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", LOAD_ALL.format(target=str(target))],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert sorted(line.split()[0] for line in out.stdout.splitlines()) == list_systems()
