"""Shared by the fault tests: the kill harness of ``benchmarks/fault_injection.py``."""

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="session")
def harness():
    """``benchmarks/fault_injection.py`` imported as a module (it is not a package's)."""
    return load_benchmark("fault_injection")
