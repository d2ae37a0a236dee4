"""End to end in a real browser: `digest serve` as a subprocess, Debian's chromium via Playwright.

subscribe -> the confirmation .eml in the outbox -> confirm -> change topics in the preference
centre -> RFC 8058 one-click unsubscribe (POSTed as a mail provider would), checking the
database after every step. Screenshots at phone width (375 px) go to tests/artifacts/.

Skipped, with the reason, when chromium or Playwright is missing; with
DIGEST_TEST_REQUIRE_BROWSER=1 (CI) that is a failure instead.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import chromium_path, launch_chromium

from digest import subscribers as subs
from digest.config import Config, load_config
from digest.links import LinkMaker, Signer
from digest.send.outbox import read_outbox
from digest.store import Store, open_store

pytestmark = pytest.mark.browser

REQUIRE_ENV = "DIGEST_TEST_REQUIRE_BROWSER"
SECRET = "browser-test-secret-0123456789-abcdefghijkl"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PHONE = {"width": 375, "height": 740}


def _skip_or_fail(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright_api() -> Any:
    """Playwright's sync API, or a skip that says what is missing."""
    if chromium_path() is None:
        _skip_or_fail("Debian's chromium is not installed (apt-get install chromium, or run scripts/test.sh)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("the playwright Python package is not installed (pip install -e '.[test]')")
    return sync_playwright


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A config in tmp_path (SQLite and outbox there too) and `digest serve` running on it."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f"""
[site]
name = "The Weekly Brief"
[web]
base_url = "{base}"
subscribe_per_hour = 20
[database]
url = "sqlite:///digest.db"
[sender]
backend = "outbox"
outbox = "outbox"
from_email = "brief@example.com"

[[categories]]
name = "News"
description = "What happened this week, in five minutes."
[[categories]]
name = "Data Science"
description = "Notebooks, models and charts."
[[categories]]
name = "Tech"
description = "Tools, how-tos and the rules around them."
""",
        encoding="utf-8",
    )
    env = {**os.environ, "DIGEST_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
    env.pop("DIGEST_DATABASE_URL", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digest",
            "--config",
            str(config_file),
            "serve",
            "--host",
            "127.0.0.1",
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
                pytest.fail(
                    f"digest serve exited with {proc.returncode}:\n{(tmp_path / 'serve.log').read_text()}"
                )
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"digest serve did not answer in 30 s:\n{(tmp_path / 'serve.log').read_text()}")
            time.sleep(0.1)
        yield {"base": base, "config_file": config_file, "root": tmp_path, "log": tmp_path / "serve.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _status(store: Store, email: str) -> tuple[str, tuple[str, ...]] | None:
    sub = subs.get(store, email)
    return None if sub is None else (sub.status, sub.categories)


def _wait_for_mail(folder: Path, count: int) -> list[Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        messages = read_outbox(folder) if folder.exists() else []
        if len(messages) >= count:
            return messages
        time.sleep(0.1)
    pytest.fail(
        f"expected {count} message(s) in {folder}, found {len(read_outbox(folder)) if folder.exists() else 0}"
    )


def test_subscribe_confirm_preferences_one_click_in_chromium(
    site: dict[str, Any], playwright_api: Any
) -> None:
    sync_playwright = playwright_api
    ARTIFACTS.mkdir(exist_ok=True)
    base = site["base"]
    config: Config = load_config(site["config_file"])
    store = open_store(config)
    email = "reader@example.com"
    problems: list[str] = []

    def shot(page: Any, name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            context = browser.new_context(viewport=PHONE, device_scale_factor=1, java_script_enabled=False)
            page = context.new_page()
            # CSP violations, missing files, script errors; the 400 pages asked for below are expected.
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}")
                    if m.type == "error" and "status of 400" not in m.text
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            # 1. The subscribe page, then a mistake, then the real thing.
            response = page.goto(f"{base}/")
            assert response is not None and response.status == 200
            assert page.locator("html").get_attribute("lang") == "en"
            shot(page, "01-subscribe")
            page.get_by_label("Email address").fill("not an address")
            page.get_by_role("button", name="Subscribe").click()
            assert page.get_by_role("alert").is_visible()
            assert "not a valid email address" in page.locator("#email-error").inner_text()
            shot(page, "02-subscribe-error")
            assert _status(store, email) is None

            page.get_by_label("Email address").fill(email)
            page.get_by_label("Name (optional)").fill("Ana")
            page.get_by_label("Data Science").uncheck()
            page.get_by_label("Tech").uncheck()
            page.get_by_role("button", name="Subscribe").click()
            page.get_by_role("heading", name="Check your inbox").wait_for()
            shot(page, "03-check-inbox")
            assert _status(store, email) == ("pending", ("news",))

            # 2. The confirmation email, as the outbox received it.
            (message,) = _wait_for_mail(site["root"] / "outbox", 1)
            assert message["To"] == email
            body = message.get_body(("plain",)).get_content()
            confirm_url = re.search(rf"{re.escape(base)}/confirm/\S+", body).group(0)  # type: ignore[union-attr]
            html_part = message.get_body(("html",)).get_content()
            assert confirm_url in html_part.replace("&amp;", "&")
            mail_view = context.new_page()  # about:blank, so our pages' CSP does not apply to the email
            mail_view.set_content(html_part)
            shot(mail_view, "03b-confirmation-email")
            mail_view.close()

            # 3. Following the link only shows a button; pressing it confirms.
            page.goto(confirm_url)
            page.get_by_role("button", name="Yes, subscribe me").wait_for()
            shot(page, "04-confirm")
            assert _status(store, email) == ("pending", ("news",))
            page.get_by_role("button", name="Yes, subscribe me").click()
            page.get_by_role("heading", name="You're subscribed").wait_for()
            shot(page, "05-confirmed")
            assert _status(store, email) == ("active", ("news",))

            # 4. The preference centre: change topics.
            page.get_by_role("link", name="Manage your topics").click()
            page.get_by_role("heading", name="Your email preferences").wait_for()
            assert page.get_by_label("News").is_checked()
            shot(page, "06-preferences")
            page.get_by_label("News").uncheck()
            page.get_by_label("Data Science").check()
            page.get_by_label("Tech").check()
            page.get_by_role("button", name="Save topics").click()
            page.get_by_text("Your topics are saved.").wait_for()
            shot(page, "07-preferences-saved")
            assert _status(store, email) == ("active", ("data science", "tech"))

            # 5. One-click unsubscribe, POSTed the way a mail provider does it: no cookies, no page.
            links = LinkMaker(base, Signer(SECRET))
            unsubscribe_url = links.unsubscribe_url(email)
            page.goto(unsubscribe_url)
            page.get_by_role("button", name="Unsubscribe").wait_for()
            shot(page, "08-unsubscribe-ask")
            assert _status(store, email) == ("active", ("data science", "tech"))
            one_click = httpx.post(
                unsubscribe_url,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=10,
            )
            assert one_click.status_code == 200
            assert _status(store, email) == ("unsubscribed", ("data science", "tech"))
            page.goto(unsubscribe_url)
            page.get_by_role("heading", name="You're unsubscribed").wait_for()
            shot(page, "09-unsubscribed")

            # 6. A tampered link gets a clear page, in the browser too.
            response = page.goto(unsubscribe_url[:-4] + "AAAA")
            assert response is not None and response.status == 400
            page.get_by_role("heading", name="This link doesn't work").wait_for()
            shot(page, "10-bad-link")

            # 7. Keyboard users see where they are.
            page.goto(f"{base}/")
            page.keyboard.press("Tab")
            page.keyboard.press("Tab")
            page.keyboard.press("Tab")
            focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert focused == "solid"
            shot(page, "11-focus")
            browser.close()
    finally:
        store.dispose()
    kinds = [(e["kind"], e["source"]) for e in subs.events_for(open_store(config), email)]
    assert kinds == [
        ("subscribe", "web"),
        ("confirm", "web"),
        ("categories", "preferences"),
        ("unsubscribe", "one-click"),
    ]
    assert problems == [], problems
    assert "/preferences/…" in site["log"].read_text() or "/unsubscribe/…" in site["log"].read_text()
