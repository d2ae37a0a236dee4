"""Choose the posts for one edition: a time window, a category set, sections in config order.

Pure: no disk, no clock. The window is half-open, ``start <= post.date < end``, so consecutive
editions (each ending where the next starts) neither miss nor repeat a post, and a post dated
exactly at ``as_of`` belongs to the next edition. Posts dated at or after ``end`` (future-dated)
and unpublished posts never appear.

Choices where the issue is silent:
- Each post appears once, in the first of its categories by section order (config order, then
  the rest alphabetically); when that section is full the post is skipped, not moved on, so where
  a post shows up does not depend on what else was published that week.
- A post without categories goes to an "Uncategorized" section, last, when all categories are
  asked for; it is never shown to a reader who picked categories.
- A section not named in config takes the spelling most posts use (ties: alphabetical first).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from digest.config import category_key
from digest.errors import DigestError
from digest.model import Post, Skip

UNCATEGORIZED = "Uncategorized"


@dataclass(frozen=True)
class Selection:
    """The posts of one edition, grouped: ``(section name, posts newest first)`` in order."""

    sections: tuple[tuple[str, tuple[Post, ...]], ...]
    skipped: tuple[Skip, ...] = ()

    @property
    def posts(self) -> tuple[Post, ...]:
        return tuple(post for _, posts in self.sections for post in posts)


def choose(
    posts: Iterable[Post],
    *,
    start: datetime,
    end: datetime,
    categories: Sequence[str] | None,
    order: Sequence[str],
    cap: int,
) -> Selection:
    """Posts with ``start <= date < end`` in the categories asked for (None or empty: all).

    ``order`` is the configured category order (display names); ``cap`` is the most posts a
    section shows. Unpublished posts and posts over a section's cap in the window come back in
    ``skipped`` with the reason.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("choose() needs timezone-aware start and end")
    everything = list(posts)
    wanted = {category_key(c) for c in categories or () if category_key(c)}
    names = _display_names(everything, order)
    rank = _section_rank(names, order)

    skipped: list[Skip] = []
    sections: dict[str, list[Post]] = {}
    in_window = [p for p in everything if start <= p.date < end]  # sort only what can be chosen
    for post in sorted(in_window, key=lambda p: (-p.date.timestamp(), p.path)):
        if not (start <= post.date < end):
            continue
        keys = [category_key(c) for c in post.categories if category_key(c)] or [category_key(UNCATEGORIZED)]
        if wanted:
            keys = [k for k in keys if k in wanted]
            if not keys:
                continue
        if not post.published:
            skipped.append(Skip(post.path, "unpublished (published: false in its front matter)"))
            continue
        home = min(keys, key=lambda k: rank[k])
        section = sections.setdefault(home, [])
        if len(section) >= cap:
            skipped.append(
                Skip(
                    post.path,
                    f"over the limit of {cap} posts in the {names[home]} section (edition.section_cap)",
                )
            )
            continue
        section.append(post)

    ordered = sorted(sections, key=lambda k: rank[k])
    return Selection(
        sections=tuple((names[k], tuple(sections[k])) for k in ordered if sections[k]),
        skipped=tuple(skipped),
    )


def _display_names(posts: list[Post], order: Sequence[str]) -> dict[str, str]:
    """key -> display name: config's spelling, else the spelling most posts use."""
    counts: dict[str, Counter[str]] = {}
    for post in posts:
        for name in post.categories:
            key = category_key(name)
            counter = counts.get(key)
            if counter is None:  # not setdefault: that built a Counter per call, 78% of choose()
                counter = counts[key] = Counter()
            counter[name] += 1
    names = {key: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for key, c in counts.items()}
    names.setdefault(category_key(UNCATEGORIZED), UNCATEGORIZED)
    for name in order:
        names[category_key(name)] = name
    return names


def _section_rank(names: dict[str, str], order: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Config order first, then alphabetical (case-insensitive), then Uncategorized."""
    rank: dict[str, tuple[int, str]] = {}
    for i, name in enumerate(order):
        rank.setdefault(category_key(name), (0, f"{i:06d}"))
    for key in names:
        rank.setdefault(key, (2, key) if key == category_key(UNCATEGORIZED) else (1, key))
    return rank


def window_for(as_of: datetime, days: int) -> tuple[datetime, datetime]:
    """The ``days`` before ``as_of``: ``(as_of - days, as_of)``, counted in wall-clock days.

    Aware arithmetic in Python keeps the wall-clock time, so a window that crosses a daylight-
    saving change still runs midnight to midnight.
    """
    if days <= 0:
        raise ValueError("window_for() needs a positive number of days")
    if as_of.tzinfo is None:
        raise ValueError("window_for() needs a timezone-aware as_of")
    return as_of - timedelta(days=days), as_of


_AS_OF = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")


def parse_as_of(text: str, tz: ZoneInfo) -> datetime:
    """``2026-01-09`` is the start of that day in the site zone; a date-time without offset is
    site time; one with an offset (or ``Z``) is that instant, shown in the site zone."""
    value = text.strip()
    if not _AS_OF.match(value):
        raise DigestError(
            f"--as-of {text!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM (optionally with +HH:MM)."
        )
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=tz)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise DigestError(f"--as-of {text!r} is not a real date or time (check the day and month).") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=tz)
    return moment.astimezone(tz)
