"""Where a result came from: package versions, the machine and the git commit of the code."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy
import openmm
import torch

from boltzgen.version import __version__

REPOSITORY = Path(__file__).resolve().parent.parent.parent


def versions() -> dict[str, str]:
    """Versions of Python and the libraries results depend on."""
    return {
        "boltzgen": __version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": numpy.__version__,
        "openmm": openmm.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": str(torch.get_num_threads()),
    }


def git_commit() -> str | None:
    """The commit of the boltzgen checkout (with ``-dirty`` if modified), if it is one."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
