"""Test-suite settings: one torch thread per test process (CPU-bound, small tensors).

Statistical checks are within 4 standard errors unless a test's docstring (or its
module's) states another number; ``tests/test_tolerances.py`` holds every test to it."""

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

from boltzgen.systems import CATALOG

torch.set_num_threads(1)


@pytest.fixture
def vacuum_card(tmp_path):
    """Write the vacuum dipeptide's card with another ``reference`` entry; return its path.

    ``vacuum_card("{kind: md}")`` gives the card an MD reference, which tests of the MD route
    need (the catalog's card reads a PT set: plain MD does not cross φ ≈ 0). The copy keeps the
    card's name and its energy entry (the structure is linked beside it), so it reads and writes
    the same data directories, and reference sets made from the catalog's card fit it.
    """

    def write(reference: str) -> Path:
        text = (CATALOG / "alanine_dipeptide_vacuum.yaml").read_text()
        if not (tmp_path / "structures").exists():
            (tmp_path / "structures").symlink_to(CATALOG / "structures")
        text = re.sub(r"(?m)^reference:.*$", f"reference: {reference}", text)
        path = tmp_path / "alanine_dipeptide_vacuum.yaml"
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def run_on_debug():
    """``run(raw, root)``: run an experiment (the mapping a YAML file holds) into ``root`` on
    the debug executor, fail the test on any task's error, and return ``root``. Session
    scoped, so module-scoped fixtures can run one experiment for all their tests."""
    from boltzgen.runner.config import parse_experiment
    from boltzgen.runner.executors import run_debug
    from boltzgen.runner.tasks import plan

    def run(raw: dict, root: Path) -> Path:
        experiment = parse_experiment(raw, f"{raw['name']}.yaml")
        errors: list[object] = []
        run_debug(
            plan(experiment), root, lambda t, r, e: errors.append(e) if e else None, experiment
        )
        assert not errors, errors
        return root

    return run


@pytest.fixture
def run_experiment(tmp_path, run_on_debug):
    """``run(raw)``: :func:`run_on_debug` into the test's ``tmp_path``."""
    return lambda raw: run_on_debug(raw, tmp_path)


@pytest.fixture(scope="session")
def systems_listing() -> tuple[int, str]:
    """Exit code and standard output of ``boltzgen systems``, run once per session.

    The command builds every card of the catalog (seconds each for the particle boxes and
    the peptides); the tests that read its table share one run.
    """
    from boltzgen.runner.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["systems"])
    return code, out.getvalue()
