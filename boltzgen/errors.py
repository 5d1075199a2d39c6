"""User-facing errors: what was wrong, where, and what to do about it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A bad value in a system card or experiment file.

    The message names the file, the field (a dotted path), the bad value and, when
    the field takes one of a fixed set of values, the valid choices. The command
    line prints it without a traceback and exits with status 2.
    """

    def __init__(
        self,
        source: str | Path,
        field: str,
        message: str,
        value: Any = None,
        choices: Iterable[str] | None = None,
    ):
        self.source, self.field, self.value = str(source), field, value
        self.choices = sorted(choices) if choices is not None else None
        text = f"{source}: field `{field}` {message}"
        if value is not None:
            text += f", got {value!r}"
        if self.choices is not None:
            text += f" (valid: {', '.join(self.choices)})"
        super().__init__(text)
