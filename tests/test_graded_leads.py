"""The graded set: 169 real posts (tests/fixtures/graded, sources and licences in SOURCES.md)
and the lead an editor would pick for each. Every expected lead must be met."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.lead.rubric import problems
from digest.model import Item
from digest.posts import load_posts
from digest.summarize import summarize

GRADED = Path(__file__).parent / "fixtures" / "graded"
EXPECTED: dict[str, dict[str, str | None]] = json.loads((GRADED / "expected.json").read_text("utf-8"))
CORPORA = ("hugo-news", "nodejs-blog", "opensuse-news")


def _items() -> dict[str, Item]:
    items = {}
    for corpus in CORPORA:
        for post in load_posts(GRADED / corpus, tz=ZoneInfo("UTC")).posts:
            items[f"{corpus}/{post.path}"] = summarize(post, url="https://example.com/post/")
    return items


ITEMS = _items()


def test_the_set_is_large_enough_and_complete() -> None:
    assert len(EXPECTED) >= 150
    assert set(ITEMS) == set(EXPECTED)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_expected_lead(key: str) -> None:
    item = ITEMS[key]
    assert item.lead_text == EXPECTED[key]["lead"]
    assert item.author == EXPECTED[key]["author"]


def test_no_bad_leads_and_at_least_nine_in_ten_clean() -> None:
    found = {key: [name for name, _ in problems(item)] for key, item in ITEMS.items()}
    bad = {k: p for k, p in found.items() if {"empty", "markup leaked", "credit line first"} & set(p)}
    assert not bad
    clean = sum(1 for p in found.values() if not p)
    assert clean / len(found) >= 0.9, {k: p for k, p in found.items() if p}
