"""The preview page: in-process (Starlette TestClient) and in real headless Chromium.

In-process tests cover what the page shows and does (inbox row, both widths, dark rules, text,
checks, picker, subscriber lookup, send test, errors with file and line). Browser tests start
`digest preview --serve` as a real subprocess on 127.0.0.1, change files on disk and watch the
page follow; they save screenshots to tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2; httpx is what the test extra installs
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from starlette.testclient import TestClient

from browser import CHROMIUM, chromium_path, launch_chromium

from digest.preview.app import PreviewSettings, create_app
from digest.preview.build import frame_html

REQUIRE_BROWSER_ENV = "DIGEST_TEST_REQUIRE_BROWSER"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
AS_OF = "2026-01-09"

BROKEN_TEXT_TEMPLATE = """\
Plain text of {{ site.name }}
{% for section in edition.sections %}
{{ section.name | upper }
{% endfor %}
"""


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "preview-test-secret")


def client_for(site: Any, **overrides: Any) -> TestClient:
    settings = PreviewSettings(
        config=site.config(),
        config_path=site.config_path,
        as_of=AS_OF,
        watch=False,
        **overrides,
    )
    return TestClient(create_app(settings), base_url="http://127.0.0.1:8025")


def token_of(client: TestClient) -> str:
    """The page's form token, as the editor's browser has it."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    assert match, "the page carries its form token"
    return match.group(1)


# -- in-process ---------------------------------------------------------------------------------


def test_page_shows_inbox_row_both_widths_text_and_checks(preview_site):
    with client_for(preview_site) as client:
        page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert 'id="subject">Test Brief: 4 new posts<' in html
    assert 'id="preheader">' in html and "Council passes the budget" in html
    assert 'width="375"' in html and 'width="600"' in html
    assert html.count('src="/frame?c="') == 2  # "all categories", said explicitly
    assert 'id="text-part"' in html and "HARBOUR" not in html  # text part as rendered, not shouted
    assert "Harbour reopens after the storm" in html
    assert 'id="checks"' in html and 'class="finding ' in html  # digest check ran
    assert 'data-token="' in html and "/static/preview.js" in html
    for name in ("News", "Tech", "Data Science"):
        assert f'value="{name}"' in html  # the category picker lists config categories


def test_viewing_writes_nothing(preview_site):
    """Issue 14: every page view used to overwrite build/ (even for a category that does not exist)."""
    out = preview_site.out
    with client_for(preview_site) as client:
        for url in ("/", "/?c=Tech", "/?c=Nonexistent", "/frame?c=Tech", "/text?c=News", "/manifest.json"):
            assert client.get(url).status_code in (200, 409)
    assert not (out / "digest.html").exists() and not (out / "manifest.json").exists()


def test_save_writes_html_text_and_manifest_side_by_side(preview_site):
    with client_for(preview_site) as client:
        token = token_of(client)
        response = client.post(
            "/save", data={"csrf_token": token, "c": ["Tech"], "as_of": ""}, follow_redirects=False
        )
        assert response.status_code == 303
        assert "Saved digest.html, digest.txt, manifest.json" in client.get(response.headers["location"]).text
        served = client.get("/manifest.json?c=Tech").json()
    out = preview_site.out
    assert (out / "digest.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert "A faster compiler lands" in (out / "digest.txt").read_text(encoding="utf-8")
    written = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert written == served
    assert written["categories"] == ["Tech"]
    post = written["sections"][0]["posts"][0]
    assert post["path"] == "2026-01-06-compiler.md" and len(post["content_hash"]) == 64
    assert written["counts"] == {"(all)": 4, "News": 2, "Tech": 1, "Data Science": 1}
    html = (out / "digest.html").read_text(encoding="utf-8")
    text = (out / "digest.txt").read_text(encoding="utf-8")
    assert "__DIGEST_" not in html and "__DIGEST_" not in text  # issue 14: no raw placeholders
    assert "/unsubscribe/each-reader-gets-their-own-link" in html and "/preferences/each-reader" in text


def test_out_saves_every_build_as_asked(preview_site, tmp_path):
    with client_for(preview_site, out_dir=tmp_path / "every") as client:
        client.get("/?c=Tech")
    assert (tmp_path / "every" / "digest.html").exists() and (tmp_path / "every" / "manifest.json").exists()


@pytest.mark.parametrize("route", ["/send-test", "/save"])
def test_state_changing_routes_need_the_token_and_the_same_origin(preview_site, route):
    form = {"address": "editor@example.com", "c": ["Tech"]}
    with client_for(preview_site) as client:
        token = token_of(client)
        no_token = client.post(route, data=form, follow_redirects=False)
        wrong = client.post(route, data={**form, "csrf_token": "x" * 32}, follow_redirects=False)
        foreign = client.post(
            route,
            data={**form, "csrf_token": token},
            headers={"Origin": "https://evil.example"},
            follow_redirects=False,
        )
        cross = client.post(
            route,
            data={**form, "csrf_token": token},
            headers={"Sec-Fetch-Site": "cross-site"},
            follow_redirects=False,
        )
        own = client.post(
            route,
            data={**form, "csrf_token": token},
            headers={"Origin": "http://127.0.0.1:8025"},
            follow_redirects=False,
        )
    assert [r.status_code for r in (no_token, wrong, foreign, cross)] == [403, 403, 403, 403]
    assert "token" in no_token.text and "evil.example" in foreign.text
    assert own.status_code == 303
    sent = preview_site.out / "outbox"
    saved = preview_site.out / "manifest.json"
    assert (sent.exists() and len(list(sent.glob("*.eml"))) == 1) if route == "/send-test" else saved.exists()


def test_the_page_answers_only_to_its_own_host_names(preview_site):
    """A site that rebinds its name to 127.0.0.1 sends its own Host: no page, so no token."""
    with client_for(preview_site) as client:
        assert client.get("/", headers={"Host": "attacker.example:8025"}).status_code == 400
        assert client.get("/", headers={"Host": "localhost:8025"}).status_code == 200


def test_the_frames_and_text_show_links_not_placeholders(preview_site):
    with client_for(preview_site) as client:
        frame = client.get("/frame?c=Tech").text
        text = client.get("/text?c=Tech").text
        page = client.get("/?c=Tech").text
    for body in (frame, text, page):
        assert "__DIGEST_" not in body
    assert "each-reader-gets-their-own-link" in frame and "each-reader-gets-their-own-link" in text
    assert "each reader gets their own signed preference and unsubscribe links" in page


def test_picking_categories_changes_the_sections(preview_site):
    with client_for(preview_site) as client:
        tech = client.get("/?c=Tech").text
        both = client.get("/?c=News&c=Data+Science").text
        frame = client.get("/frame?c=Tech").text
    assert "A faster compiler lands" in tech and "Harbour reopens" not in tech
    assert 'value="Tech" checked' in tech and 'value="News" checked' not in tech
    assert "Harbour reopens" in both and "Notebooks that explain" in both and "faster compiler" not in both
    assert "A faster compiler lands" in frame and "Harbour" not in frame


def test_dark_frame_applies_the_emails_dark_rules(preview_site):
    with client_for(preview_site) as client:
        light = client.get("/frame").text
        dark = client.get("/frame?scheme=dark").text
        page = client.get("/?scheme=dark").text
    assert "prefers-color-scheme" not in light and "prefers-color-scheme" not in dark
    assert "@media (max-width:0px)" in light  # dark rules never apply in light view
    assert "@media (min-width:0px)" in dark  # ... and always in dark view
    assert "color-scheme:dark !important" in dark and '<base target="_blank">' in dark
    assert "__DIGEST_UNSUBSCRIBE_URL__" not in dark
    assert 'class="view dark"' in page and "scheme=dark" in page


def test_frame_html_rewrites_both_queries_and_keeps_others():
    html = (
        "<html><head><style>@media (prefers-color-scheme: dark){a{}}"
        "@media screen and (prefers-color-scheme:light){b{}}@media (max-width:479px){c{}}</style></head></html>"
    )
    dark = frame_html(html, scheme="dark")
    assert "@media (min-width:0px){a{}}" in dark
    assert "screen and (max-width:0px){b{}}" in dark
    assert "@media (max-width:479px){c{}}" in dark
    light = frame_html(html, scheme="light")
    assert "@media (max-width:0px){a{}}" in light and "screen and (min-width:0px){b{}}" in light


def test_broken_template_shows_file_line_and_source(preview_site):
    broken = preview_site.templates / "edition.txt.j2"
    broken.write_text(BROKEN_TEXT_TEMPLATE, encoding="utf-8")
    with client_for(preview_site) as client:
        page = client.get("/")
        frame = client.get("/frame")
    assert page.status_code == 200
    html = page.text
    assert "The template is broken" in html
    assert f"{broken}, line 3" in html
    assert '<span class="bad"><b>   3</b> {{ section.name | upper }</span>' in html
    assert frame.status_code == 200 and "line 3" in frame.text


def test_broken_post_is_named_and_the_rest_still_shows(preview_site):
    (preview_site.posts / "2026-01-07-bad.md").write_text(
        '---\ntitle: "Unclosed\ncategories: [News\n---\n\nBody\n', encoding="utf-8"
    )
    with client_for(preview_site) as client:
        html = client.get("/").text
    assert "2026-01-07-bad.md" in html
    assert "not read" in html
    assert 'id="subject">Test Brief: 4 new posts<' in html


def test_empty_edition_says_why_instead_of_failing(preview_site):
    with client_for(preview_site) as client:
        html = client.get("/?as_of=2025-06-01").text
        frame = client.get("/frame?as_of=2025-06-01").text
    assert "Nothing to send" in html and "has no posts" in html
    assert "has no posts" in frame


def test_bad_as_of_is_shown_not_raised(preview_site):
    with client_for(preview_site) as client:
        page = client.get("/?as_of=next+tuesday")
    assert page.status_code == 200
    assert "next tuesday" in page.text


def test_subscriber_address_uses_their_categories(preview_site):
    from digest import subscribers
    from digest.store import open_store

    config = preview_site.config()
    store = open_store(config)
    try:
        subscribers.subscribe(store, config, "ada@example.com", ["Data Science"], confirmed=True)
    finally:
        store.dispose()
    with client_for(preview_site) as client:
        html = client.get("/?email=Ada@Example.com").text
        unknown = client.get("/?email=nobody@example.com").text
    assert 'id="reader-note">ada@example.com reads Data Science<' in html
    assert "Notebooks that explain themselves" in html and "Harbour reopens" not in html
    assert 'value="Data Science" checked' in html
    assert "No subscriber" in unknown and "nobody@example.com" in unknown


def test_send_test_goes_through_the_outbox(preview_site):
    from digest.send.outbox import read_outbox

    with client_for(preview_site) as client:
        response = client.post(
            "/send-test",
            data={
                "address": "editor@example.com",
                "c": ["Tech"],
                "as_of": "",
                "csrf_token": token_of(client),
            },
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert response.headers["location"].startswith("/?c=Tech&flash=")
        page = client.get(response.headers["location"]).text
        again = client.get(response.headers["location"]).text
    assert 'class="flash ok"' in page and "Sent a test to editor@example.com via outbox" in page
    assert 'class="flash' not in again  # a notice shows once, not after every live reload
    messages = read_outbox(preview_site.out / "outbox")
    assert len(messages) == 1
    message = messages[0]
    assert message["To"] == "editor@example.com"
    assert message["Subject"] == "[TEST] Test Brief: 1 new post"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://" in message["List-Unsubscribe"] or "http://" in message["List-Unsubscribe"]
    html = message.get_body(("html",)).get_content()
    assert "A faster compiler lands" in html and "__DIGEST_" not in html


def test_send_test_refuses_a_bad_address(preview_site):
    with client_for(preview_site) as client:
        page = client.post(
            "/send-test", data={"address": "not an address", "csrf_token": token_of(client)}
        ).text
    assert 'class="flash error"' in page and "not an email address" in page
    assert not (preview_site.out / "outbox").exists()


def test_a_change_bumps_the_token_and_rebuilds(preview_site):
    with client_for(preview_site) as client:
        server = client.app.state.preview  # type: ignore[attr-defined]
        before = client.get("/state").json()["token"]
        assert "A faster compiler lands" in client.get("/").text
        preview_site.write_post(
            "2026-01-06-compiler.md", "A much faster compiler", "Tech", "2026-01-06 10:30"
        )
        assert len(server.renderers) == 1  # the server holds its built templates...
        server.bump("posts/2026-01-06-compiler.md changed")
        assert len(server.renderers) == 0  # ... and forgets them on a change
        state = client.get("/state").json()
        html = client.get("/").text
    assert state["token"] != before and state["last_change"] == "posts/2026-01-06-compiler.md changed"
    assert "A much faster compiler" in html and f'data-token="{state["token"]}"' in html


def test_broken_config_is_shown_and_the_last_good_one_kept(preview_site):
    with client_for(preview_site) as client:
        server = client.app.state.preview  # type: ignore[attr-defined]
        preview_site.config_path.write_text("[site\nname = 1\n", encoding="utf-8")
        server.reload_config()
        server.bump("config.toml changed")
        html = client.get("/").text
    assert "config.toml is broken" in html and "not valid TOML" in html
    assert 'id="subject">Test Brief: 4 new posts<' in html


def test_against_shows_the_diff_in_the_page(preview_site, tmp_path):
    with client_for(preview_site) as client:
        saved = client.get("/manifest.json").json()
    saved["sections"][0]["posts"][0]["content_hash"] = "0" * 64
    saved["subject"] = "Old subject"
    path = tmp_path / "old.json"
    path.write_text(json.dumps(saved), encoding="utf-8")
    with client_for(preview_site, against=path) as client:
        html = client.get("/").text
    assert 'id="diff"' in html and "1 changed" in html and "Old subject" in html


# -- the real server, in headless Chromium ------------------------------------------------------


@pytest.fixture
def server(preview_site: Any, preview_servers: Any) -> Iterator[tuple[Any, str]]:
    proc, url = preview_servers.start()
    yield preview_site, url
    assert preview_servers.stop(proc) == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    required = os.environ.get(REQUIRE_BROWSER_ENV) == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - playwright is in the test extra
        if required:
            pytest.fail(f"{REQUIRE_BROWSER_ENV}=1 but playwright is missing ({exc})", pytrace=False)
        pytest.skip(f"playwright is not installed ({exc})")
    if chromium_path() is None:
        reason = f"no chromium at {CHROMIUM} or on PATH (apt-get install chromium, or run scripts/test.sh)"
        if required:
            pytest.fail(f"{REQUIRE_BROWSER_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    with sync_playwright() as p:
        launched = launch_chromium(p)
        try:
            yield launched
        finally:
            launched.close()


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def frame_text(page: Any, width: int) -> str:
    frame = page.frame_locator(f"#frame-{width}")
    return str(frame.locator("body").inner_text(timeout=10_000))


def expect_frame_has(page: Any, width: int, text: str) -> None:
    """Retrying: the page may reload itself at any moment (that is its job)."""
    from playwright.sync_api import expect

    expect(page.frame_locator(f"#frame-{width}").locator("body")).to_contain_text(text, timeout=15_000)


@pytest.mark.browser
def test_browser_page_at_two_widths_light_and_dark(browser, server):
    from playwright.sync_api import expect

    _site, url = server
    for width, height in ((1920, 1080), (1280, 800)):
        page = browser.new_page(viewport={"width": width, "height": height})
        try:
            page.goto(url + "/", wait_until="load")
            expect(page.locator("#subject")).to_have_text("Test Brief: 4 new posts")
            expect_frame_has(page, 375, "Harbour reopens after the storm")
            expect_frame_has(page, 600, "Harbour reopens after the storm")
            page.wait_for_selector("#live.on", timeout=10_000)  # the event stream is connected
            # the email itself is 375 / 600 CSS px wide inside its frames
            assert page.locator("#frame-375").bounding_box()["width"] == pytest.approx(375, abs=1)
            assert page.locator("#frame-600").bounding_box()["width"] == pytest.approx(600, abs=1)
            shot(page, f"preview-{width}-light.png")
            page.click("#scheme-dark")
            page.wait_for_url(re.compile(r"scheme=dark"))
            background = (
                page.frame_locator("#frame-600")
                .locator("body")
                .evaluate("el => getComputedStyle(el).backgroundColor")
            )
            assert background == "rgb(17, 19, 21)"  # the template's dark rule, #111315
            shot(page, f"preview-{width}-dark.png")
        finally:
            page.close()


@pytest.mark.browser
def test_browser_picking_another_category_set_shows_other_sections(browser, server):
    from playwright.sync_api import expect

    _site, url = server
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(url + "/", wait_until="load")
        expect(page.locator("h3.section-name")).to_have_text(["News 2", "Tech 1", "Data Science 1"])
        page.uncheck("input[name=c][value=News]")  # nothing ticked yet means all: tick Tech only
        page.check("input[name=c][value=Tech]")
        page.click("#show")
        page.wait_for_url(re.compile(r"c=Tech"))
        expect(page.locator("h3.section-name")).to_have_text(["Tech 1"])
        expect(page.locator("#subject")).to_have_text("Test Brief: 1 new post")
        expect_frame_has(page, 600, "A faster compiler lands")
        assert "Harbour" not in frame_text(page, 600)
        expect(page.locator("#text-part")).to_contain_text("A faster compiler lands")
    finally:
        page.close()


@pytest.mark.browser
def test_browser_reloads_when_a_post_or_template_changes(browser, server):
    from playwright.sync_api import expect

    site, url = server
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(url + "/?c=Tech", wait_until="load")
        page.wait_for_selector("#live.on", timeout=10_000)
        expect_frame_has(page, 375, "A faster compiler lands")

        # a post changes on disk: the page reloads by itself and shows the new title
        site.write_post("2026-01-06-compiler.md", "A much faster compiler", "Tech", "2026-01-06 10:30")
        page.wait_for_function(
            "() => document.querySelector('.contents') && "
            "document.querySelector('.contents').innerText.includes('A much faster compiler')",
            timeout=15_000,
        )
        expect_frame_has(page, 375, "A much faster compiler")
        assert "c=Tech" in page.url  # the reader picked stays picked
        assert "2026-01-06-compiler.md" in page.locator("#last-change").inner_text()

        # a new post in the set appears
        site.write_post("2026-01-08-chips.md", "New chips ship", "Tech", "2026-01-08 08:00")
        page.wait_for_function("() => document.body.innerText.includes('New chips ship')", timeout=15_000)
        expect(page.locator("#subject")).to_have_text("Test Brief: 2 new posts")

        # a broken template shows its file and line in the page; the server keeps running
        broken = site.templates / "edition.txt.j2"
        broken.write_text(BROKEN_TEXT_TEMPLATE, encoding="utf-8")
        page.wait_for_selector(".problem.error", timeout=15_000)
        problem = page.locator(".problem.error").inner_text()
        assert "the template is broken" in problem.casefold() and "edition.txt.j2, line 3" in problem
        shot(page, "preview-broken-template.png")

        # fixing it brings the email back
        broken.unlink()
        page.wait_for_selector("#frame-600", timeout=15_000)
        expect(page.locator(".problem.error")).to_have_count(0)
        expect_frame_has(page, 600, "New chips ship")
    finally:
        page.close()


def test_send_test_with_a_posts_override_sends_what_the_page_shows(preview_site, tmp_path):
    from digest.send.outbox import read_outbox

    other = tmp_path / "other-posts"
    other.mkdir()
    shutil.copy(preview_site.posts / "2026-01-07-notebooks.md", other)
    with client_for(preview_site, posts_dir=other) as client:
        assert 'id="subject">Test Brief: 1 new post<' in client.get("/").text
        client.post("/send-test", data={"address": "editor@example.com", "csrf_token": token_of(client)})
    (message,) = read_outbox(preview_site.out / "outbox")
    assert message["Subject"] == "[TEST] Test Brief: 1 new post"
    assert message["List-Unsubscribe"].startswith("<http")
    assert "Notebooks that explain themselves" in message.get_body(("html",)).get_content()


def test_categories_from_the_command_line_are_only_the_starting_point(preview_site):
    with client_for(preview_site, categories=("Tech",)) as client:
        first = client.get("/").text
        everything = client.get("/?c=").text
        frame = client.get("/frame?c=").text
    assert 'value="Tech" checked' in first and "Harbour reopens" not in first
    assert 'src="/frame?c=Tech"' in first
    assert "Harbour reopens" in everything and 'value="Tech" checked' not in everything
    assert "Harbour reopens" in frame


def _with_greeting(site: Any) -> None:
    text = site.config_path.read_text(encoding="utf-8")
    site.config_path.write_text(
        text.replace('templates = "templates"\n', 'templates = "templates"\nreader_fields = ["greeting"]\n'),
        encoding="utf-8",
    )
    assert site.config().edition.reader_fields == ("greeting",)


def test_reader_fields_show_a_sample_or_the_picked_readers_never_a_placeholder(preview_site):
    from digest import subscribers
    from digest.store import open_store

    _with_greeting(preview_site)
    config = preview_site.config()
    store = open_store(config)
    try:
        subscribers.subscribe(store, config, "ada@example.com", ["Tech"], name="Grace Hopper", confirmed=True)
    finally:
        store.dispose()
    with client_for(preview_site) as client:
        sample = [client.get(p).text for p in ("/?c=Tech", "/frame?c=Tech", "/text?c=Tech")]
        page = client.get("/?email=ada@example.com").text
        frame_src = re.search(r'src="/frame\?([^"]+)"', page).group(1).replace("&amp;", "&")
        picked = [page, client.get("/frame?" + frame_src).text, client.get("/text?" + frame_src).text]
    for body in (*sample, *picked):
        assert "__DIGEST_" not in body
    assert all("Hello Ada," in body for body in sample)
    assert all("Hello Grace Hopper," in body for body in picked)


def test_preview_out_shows_a_sample_greeting_in_html_and_text(preview_site):
    from click.testing import CliRunner

    from digest.cli import cli

    _with_greeting(preview_site)
    out = preview_site.root / "out"
    result = CliRunner().invoke(
        cli, ["--config", str(preview_site.config_path), "preview", "--as-of", AS_OF, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    for name in ("digest.html", "digest.txt"):
        body = (out / name).read_text(encoding="utf-8")
        assert "__DIGEST_" not in body, name
        assert "Hello Ada," in body, name


def test_page_lists_weak_leads_beside_the_other_checks(preview_site):
    preview_site.write_post(
        "2026-01-07-agenda.md",
        "Agenda for the week",
        "Tech",
        "2026-01-07 10:00",
        body="Our plans for the harbour include:\n",  # no prose: the lead is empty
    )
    with client_for(preview_site) as client:
        weak = client.get("/?c=Tech").text
        fine = client.get("/?c=News").text
    checks = weak[weak.index('id="checks"') : weak.index("</section>", weak.index('id="checks"'))]
    assert re.search(
        r'class="finding warning"><span class="level">warning</span><span><code>lead</code> '
        r"lead of 2026-01-07-agenda\.md ",
        checks,
    ), checks
    assert "no prose found: add an `excerpt:`" in checks
    assert "<code>lead</code> Every lead reads as prose (2 posts)" not in checks
    assert "<code>lead</code> Every lead reads as prose" in fine
