"""Keep third-party chatter out of run output.

pymbar prints a banner about JAX (and a warning about its timeseries module) when it is
first imported. :func:`quiet_imports` imports it once with its output discarded, so
later imports anywhere in the process are silent. openmmtools' citation block is
switched off on each sampler (:mod:`boltzgen.samplers.openmm_replica_exchange`), and
the loggers in ``QUIET_LOGGERS`` report errors only.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging

CHATTY = ("pymbar",)
QUIET_LOGGERS = ("openmmtools.multistate", "pymbar")
"""Loggers that warn about their own API on every object made: errors only."""


def quiet_imports() -> None:
    """Import the chatty libraries with their stdout, stderr and log output discarded."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    sink = io.StringIO()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            for name in CHATTY:
                with contextlib.suppress(ImportError):
                    importlib.import_module(name)
    finally:
        root.setLevel(level)
