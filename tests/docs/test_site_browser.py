"""The built site in a real headless browser: pages load, headings show, equations render.

Uses the site that ``make docs`` wrote to ``site/`` (``make docs-test`` builds it first),
served over HTTP on the loopback interface, and Debian's Chromium driven by Playwright.
Skipped, saying why, when the site, Playwright or a Chromium binary is missing.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

SITE = Path(__file__).resolve().parents[2] / "site"
CHROMIUM = next(
    (shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)),
    None,
)
PAGES = ["", "methods/hmc/"]


def _skip_reason() -> str | None:
    if not (SITE / "index.html").exists():
        return "no built site: run `make docs` (or `make docs-test`, which builds it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: `pip install -e .[docs]` (or `make docs-test`)"
    if CHROMIUM is None:
        return "no Chromium binary on PATH: `apt-get install chromium` (or `make docs-test`)"
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    handler = functools.partial(QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No request log on stderr."""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.mark.parametrize("path", PAGES, ids=["landing", "method-hmc"])
def test_page_shows_its_heading_and_renders_an_equation(browser, base_url: str, path: str):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    response = page.goto(base_url + path)
    assert response is not None and response.ok
    heading = page.locator("article h1").first
    heading.wait_for()
    assert heading.inner_text().strip()
    page.wait_for_selector(".arithmatex .katex", timeout=10_000)
    rendered = page.locator(".arithmatex .katex-html")
    assert rendered.count() >= 1
    assert rendered.first.bounding_box()["width"] > 0
    raw = page.locator(".arithmatex").first.inner_text()
    assert "\\(" not in raw and "$$" not in raw, f"math left as source: {raw[:80]}"
    assert page.locator(".katex-error").count() == 0
    assert not errors, errors
    page.close()


def test_no_internal_link_is_broken(browser, base_url: str):
    """Follow every same-site link from every page in the nav; each must load (and anchor)."""
    page = browser.new_page()
    page.goto(base_url)
    pages = {urljoin(base_url, a) for a in _hrefs(page, "nav.md-nav a[href]")}
    pages = {urldefrag(u)[0] for u in pages if urlparse(u).netloc == urlparse(base_url).netloc}
    broken = []
    checked: set[str] = set()
    for url in sorted(pages):
        response = page.goto(url)
        if response is None or not response.ok:
            broken.append(f"nav → {url}")
            continue
        for href in _hrefs(page, "article a[href]"):
            target = urljoin(url, href)
            if urlparse(target).netloc != urlparse(base_url).netloc or target in checked:
                continue
            checked.add(target)
            broken += _check_target(browser, target, url)
    page.close()
    assert len(pages) >= 20
    assert not broken, "\n".join(broken)


def _hrefs(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.getAttribute('href'))")


def _check_target(browser, target: str, source: str) -> list[str]:
    """The target answers over HTTP and, for an anchor, holds an element with that id."""
    address, anchor = urldefrag(target)
    if address not in _PAGES:
        try:
            with urllib.request.urlopen(address) as response:
                _PAGES[address] = response.read().decode("utf-8", "replace")
        except OSError as error:
            return [f"{source} → {target}: {error}"]
    if anchor and f'id="{anchor}"' not in _PAGES[address]:
        return [f"{source} → {target}: no element with id {anchor!r}"]
    return []


_PAGES: dict[str, str] = {}
