"""The simple front-matter reader must give exactly what the YAML path gives, or step aside.

posts._simple_front_matter reads the `key: value` front matter most posts have without YAML (it
makes a cold load about 40% faster). These tests hold it to the YAML path's results: on every
fixture post, and on a list of front matter chosen to tempt it into a different reading.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import digest.posts as posts

FIXTURES = Path(__file__).parent / "fixtures" / "posts"
TZ = ZoneInfo("Europe/London")


def parse_both(raw: bytes, rel: str, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    def outcome() -> object:
        try:
            return posts.parse_post(raw, rel, tz=TZ)
        except Exception as exc:  # compare failures too: the same error, the same words
            return repr(exc)

    fast = outcome()
    with monkeypatch.context() as m:
        m.setattr(posts, "_simple_front_matter", lambda fm: None)
        slow = outcome()
    return fast, slow


def fixture_files() -> list[Path]:
    return sorted(p for p in FIXTURES.rglob("*") if p.is_file())


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_fixture_reads_the_same_with_and_without_the_fast_path(path, monkeypatch):
    fast, slow = parse_both(path.read_bytes(), path.name, monkeypatch)
    assert fast == slow


TRICKY = [
    'title: "Quoted: with colon"\ndate: 2026-01-08 08:33:56',
    "title: no\ndate: 2026-01-08",
    "title: 1.10\ndate: 2026-01-08T10:00:00Z",
    "title: 12:30\ndate: 2026-01-08 10:00:00 +0000",
    "title: ~\ndate: 2026-01-08",
    "title: null\ndate: 2026-01-08",
    "title: x # a comment\ndate: 2026-01-08",
    "title: 'it''s'\ndate: 2026-01-08",
    'title: "say \\"hi\\""\ndate: 2026-01-08',
    "title: >\n  folded\n  text\ndate: 2026-01-08",
    "title: plain\n  continued\ndate: 2026-01-08",
    "categories:\n  - A\n  - B\ndate: 2026-01-08",
    "categories:\ndate: 2026-01-08",
    "categories: []\ndate: 2026-01-08",
    "categories: [A, 'B C', \"D\"]\ndate: 2026-01-08",
    "categories: [A, [B]]\ndate: 2026-01-08",
    "categories: {a: 1}\ndate: 2026-01-08",
    "category: Open Source\ndate: 2026-01-08",
    "tags:\n  - x\n  - y\ntitle: T\ndate: 2026-01-08",
    "date: 2026-01-08\npublished: false",
    "date: 2026-01-08\npublished: No",
    "date: 2026-01-08\npublished: 0",
    "date: '2026-01-08'\npublished: 'false'",
    "date: 2020",
    "date: 2026-13-45",
    "date: 2026-01-08 17:30:00 +1730",
    "date: 2026-01-08 08:33:56.123456 -0500",
    "date: &d 2026-01-08\nupdated: *d",
    "date: 2026-01-08\ndate: 2026-02-01",
    "Title: Upper\nDATE: 2026-01-08",
    "title:no-space\ndate: 2026-01-08",
    "title: a: b\ndate: 2026-01-08",
    "meta:\n  nested: value\ndate: 2026-01-08",
    "- just\n- a list",
    "date: 2026-01-08\nexcerpt: ''",
    'date: 2026-01-08\nauthor: ""',
]


@pytest.mark.parametrize("front", TRICKY)
def test_tricky_front_matter_reads_the_same(front, monkeypatch):
    raw = f"---\n{front}\n---\n\nThe first paragraph of the post.\n".encode()
    fast, slow = parse_both(raw, "2026-01-08-tricky.md", monkeypatch)
    assert fast == slow


def test_the_fast_path_is_really_taken_for_ordinary_posts():
    fm = 'layout: post\ntitle: "A title"\ncategories: [A, B]\ndate: 2026-01-08 08:33:56\nsource_site: x.org'
    assert posts._simple_front_matter(fm) == {
        "title": "A title",
        "categories": ["A", "B"],
        "date": "2026-01-08 08:33:56",
        "source_site": "x.org",
    }
    assert posts._simple_front_matter("title: >\n  folded") is None
