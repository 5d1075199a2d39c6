"""Test-suite settings: one torch thread per test process (CPU-bound, small tensors).

Statistical checks are within 4 standard errors unless a test's docstring (or its
module's) states another number; ``tests/test_tolerances.py`` holds every test to it."""

import contextlib
import io

import pytest
import torch

torch.set_num_threads(1)


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
