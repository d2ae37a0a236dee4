"""The web archive in a real browser: a sent email's "view in browser" link, the archive list
and the Atom feed, with `digest send` and `digest serve` run as a user runs them.

Skipped, with the reason, when chromium or Playwright is missing; with
DIGEST_TEST_REQUIRE_BROWSER=1 (CI) that is a failure instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest

from digest.archive import ATOM
from digest.browser import chromium_path, launch_chromium
from digest.send.outbox import read_outbox

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PHONE = {"width": 375, "height": 667}


def _need_browser() -> Any:
    problem = None
    if chromium_path() is None:
        problem = "Debian's chromium is not installed (apt-get install chromium, or run scripts/test.sh)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright Python package is not installed (pip install -e '.[test]')"
    if problem:
        if os.environ.get("DIGEST_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    return sync_playwright


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _digest(root: Path, *args: str) -> str:
    env = {**os.environ, "DIGEST_SECRET": "archive-browser-secret-0123456789abcdef"}
    env.pop("DIGEST_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(root / "config.toml"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"digest {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def sent_site(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The sample posts sent to two readers (outbox), then `digest serve` on the same database."""
    sync_playwright = _need_browser()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "posts").symlink_to(ROOT / "posts")
    (tmp_path / "editions").mkdir()
    (tmp_path / "editions" / "2026-W02.md").write_text(
        "Good morning. A calmer week for **markets**.\n", encoding="utf-8"
    )
    (tmp_path / "config.toml").write_text(
        (ROOT / "config.toml")
        .read_text(encoding="utf-8")
        .replace('base_url = "http://127.0.0.1:8000"', f'base_url = "{base}"')
        .replace('cache = ".digest-cache"', 'cache = ".cache"'),
        encoding="utf-8",
    )
    (tmp_path / "readers.csv").write_text(
        "email,name,categories,status\nana@example.com,Ana,US;Markets,active\nben@example.org,Ben,Europe,active\n",
        encoding="utf-8",
    )
    _digest(tmp_path, "subscribers", "import", "readers.csv")
    _digest(tmp_path, "send", "--as-of", "2026-01-09")
    env = {**os.environ, "DIGEST_SECRET": "archive-browser-secret-0123456789abcdef"}
    env.pop("DIGEST_DATABASE_URL", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digest",
            "--config",
            str(tmp_path / "config.toml"),
            "serve",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"digest serve exited:\n{(tmp_path / 'serve.log').read_text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"digest serve did not answer in 30 s:\n{(tmp_path / 'serve.log').read_text()}")
            time.sleep(0.1)
        yield {"base": base, "root": tmp_path, "playwright": sync_playwright}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_view_in_browser_reaches_the_archive_page_list_and_feed(sent_site: dict[str, Any]) -> None:
    base, root = sent_site["base"], sent_site["root"]
    messages = read_outbox(root / "build" / "outbox")
    assert len(messages) == 2
    links = set()
    for message in messages:
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        found = re.search(r'<a href="([^"]+)">View in browser</a>', html)
        assert found, "no view-in-browser link in the HTML part"
        assert f"View in your browser: {found.group(1)}" in text
        links.add(found.group(1))
    assert links == {f"{base}/archive/2026-W02"}  # one page for every reader's email
    ARTIFACTS.mkdir(exist_ok=True)
    with sent_site["playwright"]() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport=PHONE)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            response = page.goto(links.pop())
            assert response is not None and response.status == 200
            assert page.title() == "The Weekly Brief · 2–8 January 2026"
            # The all-categories edition: every section, headlines as links, the note, no personal links.
            headings = page.locator("h2").all_inner_texts()
            assert headings == ["US", "Europe", "Asia", "Technology", "Climate"]
            headline_links = page.locator("h3 a")
            assert headline_links.count() == 9
            assert headline_links.first.evaluate("a => getComputedStyle(a).textDecorationLine") == "underline"
            assert "A calmer week for markets." in page.inner_text("body")
            assert "__DIGEST_" not in page.content() and "View in browser" not in page.inner_text("body")
            # Above the fold on a phone: what this is, and the first three headlines.
            for locator in (page.locator("h1"), *(page.locator(".t li a").nth(i) for i in range(3))):
                box = locator.bounding_box()
                assert box is not None and box["y"] + box["height"] <= PHONE["height"], locator
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            page.screenshot(path=str(ARTIFACTS / "archive-edition-375.png"))
            # Inline styles are allowed by the page's policy: the masthead really is large serif.
            assert page.locator("h1").evaluate("h => getComputedStyle(h).fontSize") == "28px"
            page.get_by_role("link", name="All editions").first.click()
            page.wait_for_url(f"{base}/archive")
            assert page.locator("li h2 a").all_inner_texts() == ["2–8 January 2026"]
            feed_href = page.locator('link[rel="alternate"][type="application/atom+xml"]').get_attribute(
                "href"
            )
            assert feed_href == f"{base}/archive/feed.xml"
            page.screenshot(path=str(ARTIFACTS / "archive-list-375.png"))
            page.locator("li h2 a").first.click()
            page.wait_for_url(f"{base}/archive/2026-W02")
            feed = page.request.get(feed_href)
            assert feed.status == 200 and feed.headers["content-type"].startswith("application/atom+xml")
            atom = ET.fromstring(feed.body())
            entries = atom.findall(f"{{{ATOM}}}entry")
            assert [e.find(f"{{{ATOM}}}link").get("href") for e in entries] == [f"{base}/archive/2026-W02"]
            assert errors == [], errors  # no CSP violations or script errors
        finally:
            browser.close()
