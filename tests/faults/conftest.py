"""Shared by the fault tests: the kill harness of ``benchmarks/fault_injection.py``."""

import importlib.util
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "fault_injection.py"


@pytest.fixture(scope="session")
def harness():
    """``benchmarks/fault_injection.py`` imported as a module (it is not a package's)."""
    spec = importlib.util.spec_from_file_location("fault_injection", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fault_injection"] = module
    spec.loader.exec_module(module)
    return module
