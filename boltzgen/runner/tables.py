"""Text tables of the run reports: aligned plain text or Markdown, from rows of strings."""

from __future__ import annotations

from collections.abc import Sequence


def render(header: Sequence[str], body: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """``body`` (one list of cells per row, in ``header``'s order) as a Markdown table, or
    as plain text with every column padded to its widest cell."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(line) + " |" for line in body])
    widths = [max([len(h), *(len(b[i]) for b in body)]) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*line) for line in body])
