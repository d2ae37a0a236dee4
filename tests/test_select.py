"""The selector: window edges, categories, section order, caps, unpublished and future posts."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from digest.errors import DigestError
from digest.model import Post
from digest.select import Selection, choose, parse_as_of, window_for

TZ = ZoneInfo("Europe/London")
START = datetime(2026, 1, 2, tzinfo=TZ)
END = datetime(2026, 1, 9, tzinfo=TZ)


def post(path: str, when: datetime, *categories: str, published: bool = True) -> Post:
    return Post(
        path=path,
        title=path,
        date=when,
        categories=categories,
        body="Body.",
        slug=path,
        published=published,
    )


def day(d: int, hour: int = 12) -> datetime:
    return datetime(2026, 1, d, hour, tzinfo=TZ)


def names(selection: Selection) -> list[tuple[str, list[str]]]:
    return [(name, [p.path for p in posts]) for name, posts in selection.sections]


def pick(posts: list[Post], categories: list[str] | None = None, order: tuple[str, ...] = (), cap: int = 10):
    return choose(posts, start=START, end=END, categories=categories, order=order, cap=cap)


def test_window_is_half_open() -> None:
    posts = [
        post("at-start", START, "News"),
        post("before-start", datetime(2026, 1, 1, 23, 59, 59, tzinfo=TZ), "News"),
        post("just-before-end", datetime(2026, 1, 8, 23, 59, 59, tzinfo=TZ), "News"),
        post("at-end", END, "News"),
        post("future", day(20), "News"),
    ]
    assert names(pick(posts)) == [("News", ["just-before-end", "at-start"])]


def test_window_compares_instants_not_wall_clocks() -> None:
    # 23:30 in New York on the 8th is 04:30 on the 9th in London: outside the window.
    late = post("late", datetime(2026, 1, 8, 23, 30, tzinfo=ZoneInfo("America/New_York")), "News")
    assert pick([late]).sections == ()


def test_sections_follow_config_order_then_alphabetical_and_newest_first() -> None:
    posts = [
        post("a", day(3), "zebra"),
        post("b", day(4), "Apple"),
        post("c", day(5), "Tech"),
        post("d", day(6), "News"),
        post("e", day(7), "news"),
    ]
    result = pick(posts, order=("News", "Tech"))
    assert names(result) == [("News", ["e", "d"]), ("Tech", ["c"]), ("Apple", ["b"]), ("zebra", ["a"])]


def test_categories_match_case_insensitively_and_keep_config_spelling() -> None:
    posts = [post("a", day(3), "us"), post("b", day(4), "Europe"), post("c", day(5), "Asia")]
    result = pick(posts, categories=["US ", "EUROPE"], order=("US", "Europe"))
    assert names(result) == [("US", ["a"]), ("Europe", ["b"])]


def test_unconfigured_section_uses_the_most_common_spelling() -> None:
    posts = [post("a", day(3), "openSUSE"), post("b", day(4), "opensuse"), post("c", day(5), "openSUSE")]
    assert names(pick(posts))[0][0] == "openSUSE"


def test_post_in_two_requested_categories_appears_once_in_the_first_section() -> None:
    both = post("both", day(5), "Tech", "News")
    result = pick([both, post("news", day(4), "News")], categories=["news", "tech"], order=("News", "Tech"))
    assert names(result) == [("News", ["both", "news"])]
    assert len(result.posts) == 2


def test_none_or_empty_categories_mean_all_and_uncategorized_comes_last() -> None:
    posts = [post("plain", day(3)), post("tech", day(4), "Tech")]
    assert names(pick(posts, None)) == [("Tech", ["tech"]), ("Uncategorized", ["plain"])]
    assert names(pick(posts, [])) == names(pick(posts, None))
    assert names(pick(posts, ["Tech"])) == [("Tech", ["tech"])]


def test_unpublished_never_appears_and_is_reported_when_in_window() -> None:
    posts = [
        post("draft", day(5), "News", published=False),
        post("old-draft", day(1), "News", published=False),
        post("ok", day(4), "News"),
    ]
    result = pick(posts)
    assert names(result) == [("News", ["ok"])]
    assert [(s.path, "unpublished" in s.reason) for s in result.skipped] == [("draft", True)]


def test_section_cap_skips_the_oldest_with_a_reason() -> None:
    posts = [post(f"p{d}", day(d), "News") for d in range(2, 9)]
    result = pick(posts, cap=3)
    assert names(result) == [("News", ["p8", "p7", "p6"])]
    assert [s.path for s in result.skipped] == ["p5", "p4", "p3", "p2"]
    assert all("limit of 3" in s.reason and "News" in s.reason for s in result.skipped)


def test_choose_is_pure_and_accepts_any_iterable() -> None:
    posts = [post("a", day(3), "News")]
    assert pick(iter(posts)) == pick(posts)


def test_naive_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        choose([], start=datetime(2026, 1, 1), end=END, categories=None, order=(), cap=1)


def test_window_for_counts_wall_clock_days_across_dst() -> None:
    as_of = datetime(2026, 4, 2, tzinfo=TZ)  # London moved to BST on 29 March
    start, end = window_for(as_of, 7)
    assert end == as_of
    assert (start.year, start.month, start.day, start.hour) == (2026, 3, 26, 0)
    assert start.utcoffset() != end.utcoffset()


def test_window_for_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        window_for(datetime(2026, 1, 1), 7)
    with pytest.raises(ValueError):
        window_for(END, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-09", datetime(2026, 1, 9, tzinfo=TZ)),
        ("2026-07-09", datetime(2026, 7, 9, tzinfo=TZ)),
        ("2026-01-09T10:30", datetime(2026, 1, 9, 10, 30, tzinfo=TZ)),
        ("2026-01-09 10:30:15", datetime(2026, 1, 9, 10, 30, 15, tzinfo=TZ)),
        ("2026-07-09T10:30+02:00", datetime(2026, 7, 9, 9, 30, tzinfo=TZ)),
        ("2026-01-09T10:30Z", datetime(2026, 1, 9, 10, 30, tzinfo=TZ)),
    ],
)
def test_parse_as_of(text: str, expected: datetime) -> None:
    parsed = parse_as_of(text, TZ)
    assert parsed == expected
    assert parsed.tzinfo == TZ


def test_parse_as_of_date_is_start_of_day_in_site_zone() -> None:
    parsed = parse_as_of("2026-07-09", TZ)
    assert (parsed.hour, parsed.minute) == (0, 0)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 3600


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "09/01/2026", "2026-02-30"])
def test_parse_as_of_rejects_with_a_digest_error(text: str) -> None:
    with pytest.raises(DigestError, match="--as-of"):
        parse_as_of(text, TZ)
