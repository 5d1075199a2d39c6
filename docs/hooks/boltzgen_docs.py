"""MkDocs hooks: pages generated from the code, so that they cannot drift from it.

* ``systems.md`` is generated from the cards of the catalog (``systems/*.yaml``): every
  card is built with :func:`boltzgen.load_system`, and its energy, size, temperature,
  states, free energies, reference route and exact answers are read from the result.
* ``<!-- checks: FILE[::TEST] ... -->`` in a page becomes the list of the tests that check
  what the page describes, read from the test files (a missing file or test stops the
  build), so a renamed test cannot leave a page pointing at nothing.
"""

from __future__ import annotations

import ast
import math
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]
CATALOG_PAGE = "systems.md"
CHECKS = re.compile(r"<!--\s*checks:(.*?)-->", re.DOTALL)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated catalog page."""
    files.append(File.generated(config, CATALOG_PAGE, content=catalog_markdown()))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replace every ``checks`` marker by the tests it names."""
    return CHECKS.sub(lambda m: checks_markdown(m.group(1).split(), page), markdown)


# ---------------------------------------------------------------- the systems catalog


def catalog_markdown() -> str:
    """The catalog page: a table of every card, then one section per system."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import boltzgen as bg

    systems = [bg.load_system(name) for name in bg.list_systems()]
    try:
        rows = [_row(system) for system in systems]
        sections = [_section(system) for system in systems]
    finally:
        for system in systems:
            system.energy.close()
    head = [
        "# Systems catalog",
        "",
        "Generated from the cards in `systems/` each time the documentation is built (the",
        "`boltzgen systems` command prints the same catalog in a terminal). A card is one YAML",
        "file; `bg.load_system(name)` builds it. [Adding your own system](extending.md)",
        "explains the fields.",
        "",
        "| system | energy | size | temperature | states | free energies | reference |",
        "|---|---|---|---|---|---|---|",
    ]
    lines = [line for section in sections for line in section]
    return "\n".join([*head, *rows, "", *lines]) + "\n"


def _row(system: Any) -> str:
    pairs = ", ".join(f"`{b}_vs_{a}`" for a, b in system.free_energy_pairs) or "–"
    states = ", ".join(f"`{s}`" for s in system.states) or "–"
    cells = [
        f"[`{system.name}`](#{system.name})",
        _energy(system),
        _size(system),
        _temperature(system),
        states,
        pairs,
        _route(system),
    ]
    return "| " + " | ".join(cells) + " |"


def _energy(system: Any) -> str:
    spec = system.card.get("energy", {})
    kind = spec.get("kind", "?") if isinstance(spec, dict) else "?"
    if kind == "openmm":
        fields = spec.get("forcefield", [])
        names = " + ".join(f"`{f}`" for f in fields) if fields else "OpenMM"
        return f"OpenMM: {names} (`{type(system.energy).__name__}`)"
    return f"`{kind}` (`{type(system.energy).__name__}`)"


def _size(system: Any) -> str:
    shape = tuple(system.energy.event_shape)
    text = " × ".join(map(str, shape))
    if system.topology is not None:
        return f"{shape[0]} atoms ({text})"
    return f"{math.prod(shape)} dims ({text})" if len(shape) > 1 else f"{text} dims"


def _temperature(system: Any) -> str:
    if system.openmm_system is not None:
        return f"{system.temperature:g} K"
    return f"{system.temperature:g} (reduced)"


def _route(system: Any) -> str:
    if system.has_exact_reference:
        return "exact"
    return {
        "md": "MD reference set",
        "pt": "parallel-tempering reference set",
        "none": "none",
    }.get(system.reference_kind, system.reference_kind)


def _section(system: Any) -> list[str]:
    lines = [
        f"## `{system.name}` {{#{system.name}}}",
        "",
        " ".join(system.description.split()),
        "",
        f"- **card**: `systems/{system.card_path.name}`",
        f"- **energy**: {_energy(system)}; **size**: {_size(system)}; "
        f"**temperature**: {_temperature(system)}",
    ]
    for name, spec in system.card.get("states", {}).items():
        lines.append(f"- **state** `{name}`: `{_flow_yaml(spec)}`")
    lines += _reference_lines(system)
    return [*lines, ""]


def _flow_yaml(spec: Any) -> str:
    if isinstance(spec, dict):
        return "{" + ", ".join(f"{k}: {_flow_yaml(v)}" for k, v in spec.items()) + "}"
    return str(spec)


def _reference_lines(system: Any) -> list[str]:
    if system.has_exact_reference:
        values = system.reference_free_energies()
        lines = [f"- **exact** ΔF `{name}` = {value:.4f} kT" for name, value in values.items()]
        log_z = system.reference_log_z()
        if log_z is not None:
            lines.append(f"- **exact** log Z = {log_z:.4f}")
        return lines
    if system.reference_kind in ("md", "pt"):
        command = f"boltzgen reference {system.name} --method {system.reference_kind}"
        return [
            f"- **reference**: a generated {system.reference_kind.upper()} reference set: "
            f"`{command}` (see [Peptides](peptides.md#md-baseline-and-reference-data))"
        ]
    return ["- **reference**: none (estimates are reported without a reference)"]


# ---------------------------------------------------------------- the tests behind a page


def checks_markdown(targets: list[str], page: Page) -> str:
    """A list of the named tests (a file means all its tests), grouped by file."""
    lines = []
    for target in targets:
        path, _, wanted = target.partition("::")
        tests = _tests_of(ROOT / path)
        if not tests:
            raise PluginError(f"{page.file.src_uri}: checks names {path}, which has no tests")
        if wanted:
            if wanted not in tests:
                raise PluginError(f"{page.file.src_uri}: checks names {target}: no such test")
            tests = {wanted: tests[wanted]}
        lines.append(f"- `{path}`")
        lines += [f"    - `{name}`{' (slow)' * slow}" for name, slow in tests.items()]
    return "\n".join(lines) + "\n"


def _tests_of(path: Path) -> dict[str, bool]:
    """Test functions of a file (module level and in classes) → marked slow or not."""
    if not path.exists():
        return {}
    tree = ast.parse(path.read_text())
    file_slow = any(
        isinstance(node, ast.Assign)
        and any(getattr(t, "id", "") == "pytestmark" for t in node.targets)
        and "slow" in ast.unparse(node.value)
        for node in tree.body
    )
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            marks = [ast.unparse(d) for d in node.decorator_list]
            found[node.name] = file_slow or any("slow" in m for m in marks)
    return found
