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


class YAMLSyntaxError(ConfigError):
    """A YAML file that does not parse: the message names ``file:line:column``."""

    def __init__(self, source: str | Path, line: int, column: int, problem: str):
        ValueError.__init__(self, f"{source}:{line}:{column}: YAML syntax error: {problem}")
        self.source, self.field, self.value, self.choices = str(source), "(syntax)", None, None


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a syntax error becomes a :class:`YAMLSyntaxError` naming its line."""
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        raise YAMLSyntaxError(path, line, column, str(error.problem or error.context)) from None
    except yaml.YAMLError as error:
        raise YAMLSyntaxError(path, 0, 0, str(error)) from None
