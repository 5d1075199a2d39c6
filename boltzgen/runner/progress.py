"""Progress bars as periodic log lines, for task output that is not a terminal.

Samplers and the training loop draw tqdm bars. On a terminal they stay bars; in a log
file, or when several tasks share one terminal, :class:`LineProgress` turns them into
one line per ``interval`` seconds, each prefixed by the task (``step/total``, elapsed
and remaining time are tqdm's own)::

      double_well_2d/hmc/seed0 | HMC sampling:  50%|█████     | 300/600 [00:30<00:30]
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

FRAGMENTS = re.compile(r"[\r\n]+")
COUNT = re.compile(r"(\d+)/(\d+)")


class LineProgress:
    """A text stream that rewrites tqdm's ``\\r`` updates as throttled, labelled lines.

    A line is written when the bar's label changes, when ``interval`` seconds have
    passed since the last line, or when the bar reaches its last step; other text passes
    through as lines.
    """

    def __init__(self, stream: TextIO, prefix: str, interval: float = 30.0):
        self.stream, self.prefix, self.interval = stream, prefix, interval
        self._label: str | None = None
        self._last_time = -float("inf")
        self._last_line = ""

    def write(self, text: str) -> int:
        for part in FRAGMENTS.split(text):
            part = part.strip()
            if part and self._due(part):
                self.stream.write(f"  {self.prefix} | {part}\n")
                self.stream.flush()
                self._label, self._last_time, self._last_line = (
                    _label(part),
                    time.monotonic(),
                    part,
                )
        return len(text)

    def _due(self, part: str) -> bool:
        if part == self._last_line:
            return False
        if _label(part) != self._label or _complete(part):
            return True
        return time.monotonic() - self._last_time >= self.interval

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


def _complete(line: str) -> bool:
    """Whether a bar line shows its last step (``n/n``)."""
    match = COUNT.search(line)
    return match is not None and match.group(1) == match.group(2)


def _label(line: str) -> str:
    """A bar's description: the text before its first ``:``."""
    return line.split(":", 1)[0]


@contextmanager
def task_output(prefix: str, lines: bool, interval: float = 30.0) -> Iterator[None]:
    """Within the block, progress bars on ``sys.stderr`` become lines (when ``lines``)."""
    if not lines:
        yield
        return
    original = sys.stderr
    sys.stderr = LineProgress(original, prefix, interval)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stderr = original
