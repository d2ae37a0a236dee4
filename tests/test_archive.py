"""Every edition on the web: the archive list, an edition's page, the Atom feed, `digest archive`.

Run on SQLite and PostgreSQL (the ``store`` fixture); the web routes through Starlette's
TestClient. The real-browser test is tests/test_archive_browser.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from digest import editions, pipeline
from digest.archive import (
    ATOM,
    Archive,
    ArchiveError,
    build_archived,
    find_edition,
    published_editions,
    write_static,
)
from digest.cli import cli as cli_main
from digest.config import Config, config_from_dict
from digest.errors import ConfigError
from digest.schedule import Window
from digest.store import open_store

AS_OF = datetime(2026, 1, 9, tzinfo=UTC)
POSTS = {
    "2026-01-05-fed.md": ("Fed minutes show a split", "US", "Minutes show officials divided."),
    "2026-01-06-orders.md": ("German orders rise", "Europe", "Orders rose for a third month."),
    "2026-01-07-yen.md": ("Asian markets rally", "Asia", "The yen steadied; stocks rose."),
}


def make_site(root: Path, **web: str) -> Config:
    posts = root / "posts"
    posts.mkdir(parents=True, exist_ok=True)
    for name, (title, category, body) in POSTS.items():
        (posts / name).write_text(
            f"---\ntitle: {title}\ncategory: {category}\n---\n{body}\n", encoding="utf-8"
        )
    return config_from_dict(
        {
            "site": {"name": "The Weekly Brief", "base_url": "https://brief.example.com"},
            "web": {"base_url": "https://news.example.com", **web},
            "posts": {"folder": "posts", "cache": ".cache"},
            "categories": ["US", "Europe", "Asia"],
        },
        root=root,
    )


def publish(store: Any, config: Config, edition_id: str = "2026-W02", status: str = "sent") -> None:
    """What a send leaves behind: the edition's row with its window and manifest."""
    loaded = pipeline.load(config, use_cache=False)
    edition = pipeline.build_edition(config, as_of=AS_OF, edition_id=edition_id, posts=loaded)
    window = Window(edition.window_start, edition.window_end)
    manifest = pipeline.manifest(edition, None, config)
    editions.record_edition(store, edition_id=edition_id, window=window, manifest=manifest)
    editions.set_status(store, edition_id, status, sent_at=AS_OF if status == "sent" else None)


def test_only_editions_that_went_out_are_published(store: Any, tmp_path: Path) -> None:
    config = make_site(tmp_path)
    publish(store, config, "2026-W02")
    publish(store, config, "2026-W03", status="building")
    publish(store, config, "2026-W04", status="cancelled")
    entries = published_editions(store)
    assert [e.id for e in entries] == ["2026-W02"]
    assert entries[0].post_count == 3
    assert entries[0].titles == ("Fed minutes show a split", "German orders rise", "Asian markets rally")
    with pytest.raises(ArchiveError, match="2026-W04"):
        find_edition(entries, "2026-W04")


def test_archived_edition_is_the_all_categories_edition_and_survives_a_deleted_post(
    store: Any, tmp_path: Path
) -> None:
    config = make_site(tmp_path)
    publish(store, config)
    # A post written later, in the same window, was not in the edition: it stays out.
    (tmp_path / "posts" / "2026-01-08-late.md").write_text("---\ntitle: Late\ncategory: US\n---\nLate.\n")
    (tmp_path / "posts" / "2026-01-06-orders.md").unlink()
    entry = published_editions(store)[0]
    edition = build_archived(config, entry, pipeline.load(config, use_cache=False))
    assert [s.name for s in edition.sections] == ["US", "Europe", "Asia"]
    assert [i.title for i in edition.items] == [
        "Fed minutes show a split",
        "German orders rise",
        "Asian markets rally",
    ]
    gone = edition.items[1]
    assert gone.url.startswith("https://brief.example.com/") and gone.lead_html == ""
    html = Archive(config).edition_page(entry, pipeline.load(config, use_cache=False))
    assert "Minutes show officials divided." in html and "Late" not in html
    assert "__DIGEST_" not in html and "View in browser" not in html


def test_feed_is_valid_atom_with_one_entry_per_edition(store: Any, tmp_path: Path) -> None:
    config = make_site(tmp_path)
    publish(store, config, "2026-W02")
    body = Archive(config).feed(published_editions(store), pipeline.load(config, use_cache=False))
    assert body.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(body)
    ns = {"a": ATOM}
    assert root.tag == f"{{{ATOM}}}feed"
    assert root.findtext("a:title", namespaces=ns) == "The Weekly Brief"
    assert root.find("a:link[@rel='self']", ns).get("href") == "https://news.example.com/archive/feed.xml"
    (entry,) = root.findall("a:entry", ns)
    assert entry.findtext("a:id", namespaces=ns) == "https://news.example.com/archive/2026-W02"
    assert entry.findtext("a:title", namespaces=ns) == "The Weekly Brief: 2–8 January 2026"
    assert entry.findtext("a:published", namespaces=ns) == "2026-01-09T00:00:00Z"
    content = entry.findtext("a:content", namespaces=ns)
    assert '<a href="https://brief.example.com/' in content and "German orders rise" in content


def test_routes_serve_the_list_the_page_and_the_feed(store: Any, tmp_path: Path) -> None:
    from digest.web.app import create_app

    config = make_site(tmp_path)
    publish(store, config)
    with TestClient(create_app(config, store=store)) as client:
        listing = client.get("/archive")
        assert listing.status_code == 200
        assert 'href="https://news.example.com/archive/2026-W02"' in listing.text
        assert 'type="application/atom+xml"' in listing.text
        page = client.get("/archive/2026-W02")
        assert page.status_code == 200 and "German orders rise" in page.text
        assert "style-src 'unsafe-inline'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "public, max-age=300"
        feed = client.get("/archive/feed.xml")
        assert feed.headers["content-type"].startswith("application/atom+xml")
        ET.fromstring(feed.content)
        assert client.get("/archive/2099-W01").status_code == 404
        assert client.get("/archive/..%2Fetc").status_code == 404
        # the email's "view in browser" link is exactly this page
        rendered = pipeline.render(config, pipeline.build_edition(config, as_of=AS_OF))
        link = re.search(r'<a href="([^"]+)">View in browser</a>', rendered.html).group(1)
        assert link == "https://news.example.com/archive/2026-W02"
        assert client.get(link.removeprefix("https://news.example.com")).status_code == 200


def test_empty_archive_says_so(store: Any, tmp_path: Path) -> None:
    html = Archive(make_site(tmp_path)).list_page(published_editions(store))
    assert "No edition has gone out yet" in html


def test_digest_archive_writes_static_files(tmp_path: Path) -> None:
    config = make_site(tmp_path, archive_url="https://static.example.com/letters")
    (tmp_path / "config.toml").write_text(
        'categories = ["US", "Europe", "Asia"]\n'
        '[site]\nname = "The Weekly Brief"\nbase_url = "https://brief.example.com"\n'
        '[web]\nbase_url = "https://news.example.com"\narchive_url = "https://static.example.com/letters"\n'
        '[posts]\nfolder = "posts"\ncache = ".cache"\n[database]\nurl = "sqlite:///digest.db"\n',
        encoding="utf-8",
    )
    store = open_store(config)
    try:
        publish(store, config)
    finally:
        store.dispose()
    out = tmp_path / "site"
    result = CliRunner().invoke(
        cli_main, ["--config", str(tmp_path / "config.toml"), "archive", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "Wrote 1 edition(s)" in result.output
    assert (out / "2026-W02" / "index.html").read_text(encoding="utf-8").count("Asian markets rally") >= 1
    assert 'href="https://static.example.com/letters/2026-W02"' in (out / "index.html").read_text(
        encoding="utf-8"
    )
    ET.fromstring((out / "feed.xml").read_bytes())


def test_write_static_with_no_editions(tmp_path: Path) -> None:
    config = make_site(tmp_path)
    written = write_static(config, [], pipeline.load(config, use_cache=False), tmp_path / "out")
    assert sorted(p.name for p in written) == ["feed.xml", "index.html"]


def test_hostile_titles_are_escaped_in_the_list_page_and_the_feed(store: Any, tmp_path: Path) -> None:
    config = make_site(tmp_path)
    (tmp_path / "posts" / "2026-01-05-fed.md").write_text(
        '---\ntitle: "<script>alert(1)</script> & co"\ncategory: US\n---\nText.\n', encoding="utf-8"
    )
    publish(store, config)
    archive = Archive(config)
    entries = published_editions(store)
    listing = archive.list_page(entries)
    assert "<script>alert" not in listing and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in listing
    body = archive.feed(entries, pipeline.load(config, use_cache=False))
    assert b"<script>" not in body
    content = ET.fromstring(body).find(f"{{{ATOM}}}entry/{{{ATOM}}}content").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</a>" in content  # escaped HTML, inside the XML


def test_digest_archive_does_not_create_a_database(tmp_path: Path) -> None:
    make_site(tmp_path)
    (tmp_path / "config.toml").write_text(
        '[posts]\nfolder = "posts"\ncache = ".cache"\n[database]\nurl = "sqlite:///digest.db"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli_main, ["--config", str(tmp_path / "config.toml"), "archive", "--out", str(tmp_path / "site")]
    )
    assert result.exit_code == 1
    assert "there is no database at" in result.output and "digest.db" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "digest.db").exists() and not (tmp_path / "site").exists()


def test_routes_without_the_posts_folder_keep_headlines_from_the_manifest(store: Any, tmp_path: Path) -> None:
    from digest.web.app import create_app

    config = make_site(tmp_path)
    publish(store, config)
    for post in (tmp_path / "posts").iterdir():
        post.unlink()
    (tmp_path / "posts").rmdir()
    with TestClient(create_app(config, store=store), raise_server_exceptions=False) as client:
        assert client.get("/archive").status_code == 200
        page = client.get("/archive/2026-W02")
        assert page.status_code == 200, page.text
        assert "German orders rise" in page.text and "Minutes show officials divided." not in page.text
        feed = client.get("/archive/feed.xml")
        assert feed.status_code == 200
        titles = [e.text for e in ET.fromstring(feed.content).iter(f"{{{ATOM}}}title")]
        assert "The Weekly Brief: 2–8 January 2026" in titles
        assert client.get("/archive/2099-W01").status_code == 404


def test_archive_switched_off(store: Any, tmp_path: Path) -> None:
    from digest.web.app import create_app

    config = config_from_dict(
        {"web": {"base_url": "https://news.example.com", "archive": False}, "posts": {"folder": "posts"}},
        root=tmp_path,
    )
    make_site(tmp_path)
    publish(store, config)
    with TestClient(create_app(config, store=store)) as client:
        for path in ("/archive", "/archive/2026-W02", "/archive/feed.xml"):
            assert client.get(path).status_code == 404, path
    rendered = pipeline.render(config, pipeline.build_edition(config, as_of=AS_OF))
    for part in (rendered.html, rendered.text):
        assert "View in browser" not in part and "View in your browser" not in part
        assert "/archive" not in part and "Past editions" not in part
    assert "Unsubscribe" in rendered.html and "https://news.example.com/unsubscribe" not in rendered.html
    (tmp_path / "config.toml").write_text("[web]\narchive = false\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli_main, ["--config", str(tmp_path / "config.toml"), "archive", "--out", str(tmp_path / "site")]
    )
    assert result.exit_code == 1 and "web.archive is false" in result.output
    assert not (tmp_path / "site").exists()
    with pytest.raises(ConfigError, match=r"web\.archive has the wrong type .*true or false"):
        config_from_dict({"web": {"archive": "no"}}, root=tmp_path)


def test_archive_on_by_default_links_the_page(tmp_path: Path) -> None:
    config = make_site(tmp_path)
    assert config.web.archive is True
    rendered = pipeline.render(config, pipeline.build_edition(config, as_of=AS_OF))
    assert "View in your browser: https://news.example.com/archive/2026-W02" in rendered.text
    assert "Past editions: https://news.example.com/archive" in rendered.text


def test_an_edition_sent_to_nobody_has_no_page_and_does_not_stop_the_archive(tmp_path: Path) -> None:
    """A run in a week with nothing new records its edition as sent with no posts (found by
    running the README's commands on a fresh clone: `digest archive` then failed outright)."""
    config = make_site(tmp_path)
    (tmp_path / "config.toml").write_text(
        '[posts]\nfolder = "posts"\ncache = ".cache"\n[database]\nurl = "sqlite:///digest.db"\n',
        encoding="utf-8",
    )
    store = open_store(config)
    try:
        publish(store, config, "2026-W02")
        empty = pipeline.manifest(
            pipeline.build_edition(config, as_of=datetime(2026, 11, 29, tzinfo=UTC)), None, config
        )
        assert empty["post_count"] == 0
        window = Window(datetime(2026, 11, 22, tzinfo=UTC), datetime(2026, 11, 29, tzinfo=UTC))
        editions.record_edition(store, edition_id="2026-W48", window=window, manifest=empty)
        editions.set_status(store, "2026-W48", "sent", sent_at=datetime(2026, 11, 29, tzinfo=UTC))
        assert [e.id for e in published_editions(store)] == ["2026-W02"]
        with pytest.raises(ArchiveError, match="had no posts"):
            find_edition(published_editions(store), "2026-W48")
    finally:
        store.dispose()
    out = tmp_path / "site"
    result = CliRunner().invoke(
        cli_main, ["--config", str(tmp_path / "config.toml"), "archive", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "Wrote 1 edition(s)" in result.output
    assert "2026-W48" not in (out / "index.html").read_text(encoding="utf-8")
    assert not (out / "2026-W48").exists()
