"""Post URLs the way Jekyll builds them."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from digest.model import Post
from digest.permalink import post_url, slugify

UTC = ZoneInfo("UTC")
POST = Post(
    path="2026/2026-01-08-trump-to-meet-petro.md",
    title="Trump to meet Petro",
    date=datetime(2026, 1, 8, 23, 30, tzinfo=UTC),
    categories=("US", "Board Elections"),
    body="",
    slug="trump-to-meet-petro",
)


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("date", "/us/board%20elections/2026/01/08/trump-to-meet-petro.html"),
        ("pretty", "/us/board%20elections/2026/01/08/trump-to-meet-petro/"),
        ("ordinal", "/us/board%20elections/2026/008/trump-to-meet-petro.html"),
        ("none", "/us/board%20elections/trump-to-meet-petro.html"),
        (
            "/:categories/:year/:month/:day/:title.html",
            "/us/board%20elections/2026/01/08/trump-to-meet-petro.html",
        ),
        ("/:short_year/:i_month/:i_day/:slug", "/26/1/8/trump-to-meet-petro"),
        ("/:slugified_categories/:title/", "/us/board-elections/trump-to-meet-petro/"),
        ("/blog/:year/:unknown/:title", "/blog/2026/:unknown/trump-to-meet-petro"),
    ],
)
def test_patterns_and_named_styles(pattern: str, path: str) -> None:
    assert (
        post_url(POST, base_url="https://example.com/", pattern=pattern, tz=UTC)
        == "https://example.com" + path
    )


def test_date_parts_use_the_site_time_zone() -> None:
    url = post_url(
        POST, base_url="https://example.com", pattern="/:year/:month/:day/:hour/", tz=ZoneInfo("Asia/Tokyo")
    )
    assert url == "https://example.com/2026/01/09/08/"


def test_own_permalink_wins_and_may_use_placeholders() -> None:
    own = replace(POST, permalink="/special/:title/")
    assert post_url(own, base_url="https://example.com", pattern="date", tz=UTC) == (
        "https://example.com/special/trump-to-meet-petro/"
    )
    absolute = replace(POST, permalink="https://elsewhere.example/x")
    assert (
        post_url(absolute, base_url="https://example.com", pattern="date", tz=UTC)
        == "https://elsewhere.example/x"
    )


def test_no_categories_leave_no_double_slash() -> None:
    bare = replace(POST, categories=())
    assert post_url(bare, base_url="https://example.com", pattern="date", tz=UTC) == (
        "https://example.com/2026/01/08/trump-to-meet-petro.html"
    )


def test_title_keeps_case_slug_is_lower_and_odd_characters_are_quoted() -> None:
    odd = replace(POST, slug="Héllo World?&x")
    assert (
        post_url(odd, base_url="https://e.com", pattern="/:title", tz=UTC)
        == "https://e.com/H%C3%A9llo-World-&x"
    )
    assert (
        post_url(odd, base_url="https://e.com", pattern="/:slug", tz=UTC)
        == "https://e.com/h%C3%A9llo-world-x"
    )


def test_slugify_like_jekyll() -> None:
    assert slugify("The _config.yml file?") == "the-config-yml-file"
    assert slugify("The _config.yml file?", pretty=True) == "the-config.yml-file"
    assert slugify("Hello World", cased=True) == "Hello-World"
