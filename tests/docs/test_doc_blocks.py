"""Every code block of the documentation runs, so the pages cannot drift from the code.

For each page of ``docs/`` (one test per page, in a fresh folder as working directory):

* a block with ``title="NAME"`` is written to the file ``NAME`` first (experiment files,
  cards, modules that the page's Python then uses);
* fenced ``python`` blocks run in order in one namespace; ``pycon`` blocks run through
  doctest in the same namespace, so their printed output must match;
* ``yaml`` blocks must parse, and every ``boltzgen ...`` line of a ``bash`` block must be
  accepted by the command-line parser (commands are not run: they need a cluster, data or
  hours);
* a block that must not run is preceded by ``<!-- not run: REASON -->``.

``docs/architecture.md`` is run by its own test (``tests/test_architecture_doc.py``).
"""

from __future__ import annotations

import doctest
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from boltzgen.runner.cli import _parser

DOCS = Path(__file__).resolve().parents[2] / "docs"
OWN_TEST = {"architecture.md"}
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>\S[^>]*?)\s*-->\s*$")
LANGUAGES = {"python", "pycon", "bash", "yaml", "text", "json"}


@dataclass(frozen=True)
class Block:
    language: str
    title: str | None
    body: str
    line: int
    skipped: bool


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, with their language, title and skip marker."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        info = match.group("info").strip()
        language = info.split()[0] if info else ""
        title = re.search(r'title="([^"]+)"', info)
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        found.append(
            Block(
                language,
                title.group(1) if title else None,
                match.group("body"),
                text[: match.start()].count("\n") + 1,
                bool(NOT_RUN.search(before)),
            )
        )
    return found


PAGES = sorted(p for p in DOCS.rglob("*.md") if p.name not in OWN_TEST and "hooks" not in p.parts)
SLOW_PAGES = {"getting-started.md", "extending.md"}  # run an experiment / build a peptide


def test_every_page_is_collected_and_every_block_has_a_known_language() -> None:
    assert len(PAGES) >= 20
    for page in PAGES:
        for block in blocks(page):
            where = f"{page.relative_to(DOCS)}:{block.line}"
            assert block.language in LANGUAGES, f"{where}: fence language {block.language!r}"


def test_indented_fences_are_not_left_unrun() -> None:
    """Blocks are found at the start of a line only; an indented ``` python fence would hide."""
    for page in PAGES:
        assert not re.search(r"^[ \t]+```(python|pycon)", page.read_text(), re.MULTILINE), page


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, marks=[pytest.mark.slow] if p.name in SLOW_PAGES else []) for p in PAGES],
    ids=lambda p: str(p.relative_to(DOCS)),
)
def test_page_blocks_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path / "data"))
    page_blocks = [b for b in blocks(page) if not b.skipped]
    for block in page_blocks:
        if block.title is not None:
            (tmp_path / block.title).write_text(block.body)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for block in page_blocks:
        where = f"{page.relative_to(DOCS)}:{block.line}"
        if block.language == "python" and block.title is None:
            source = "\n" * block.line + block.body  # tracebacks give the page's line
            exec(compile(source, str(page), "exec"), namespace)
        elif block.language == "pycon":
            _run_pycon(block.body, namespace, where)
        elif block.language == "yaml":
            yaml.safe_load(block.body)
        elif block.language == "bash":
            _check_commands(block.body, where)
    capsys.readouterr()


def _run_pycon(body: str, namespace: dict, where: str) -> None:
    test = doctest.DocTestParser().get_doctest(body, namespace, where, where, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out: list[str] = []
    runner.run(test, out=out.append, clear_globs=False)
    assert runner.failures == 0, "".join(out)


def _check_commands(body: str, where: str) -> None:
    """``boltzgen`` command lines must parse (argparse exits on an unknown option)."""
    for line in body.replace("\\\n", " ").splitlines():
        command = line.split("#", 1)[0].strip()
        if not command.startswith("boltzgen "):
            continue
        try:
            _parser().parse_args(shlex.split(command)[1:])
        except SystemExit as exit_:
            if exit_.code:
                raise AssertionError(f"{where}: `{command}` is not a valid command") from None


def test_skip_markers_give_a_reason() -> None:
    for page in PAGES:
        for marker in re.findall(r"<!--\s*not run:(.*?)-->", page.read_text()):
            assert marker.strip(), f"{page}: a `not run` marker without a reason"
