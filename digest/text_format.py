"""Jinja filters and plain-text tidying, shared by the renderer and the assembler.

Pure functions of their arguments (and the config's timezone and language): a send renders the
same values into thousands of category sets, so the ones that cost something are memoised.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, tzinfo
from urllib.parse import urlsplit

import jinja2
import jinja2.nodes
from markupsafe import Markup

from digest.config import Config
from digest.model import Item
from digest.typeset import nowidow, typeset

TEXT_WIDTH = 72

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def filters(config: Config) -> dict[str, Callable[..., object]]:
    tz = config.tz
    english = config.site.language.split("-")[0].lower() == "en"

    def day(value: date) -> str:
        if english:
            return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"
        return value.isoformat()

    def date_filter(value: datetime | date) -> str:
        """A post's date as readers of the site expect it: in the site's timezone."""
        return day(local_time(value, tz).date() if isinstance(value, datetime) else value)

    def isodate(value: datetime | date) -> str:
        return (local_time(value, tz).date() if isinstance(value, datetime) else value).isoformat()

    @functools.lru_cache(maxsize=64)  # one window per send, asked once per category set
    def daterange(start: datetime, end: datetime) -> str:
        """The window as days: "1–7 January 2026"; ``end`` is exclusive."""
        first = local_time(start, tz).date()
        last = local_time(end - timedelta(microseconds=1), tz).date()
        if last <= first:
            return day(first)
        if not english:
            return f"{first.isoformat()} – {last.isoformat()}"
        if (first.year, first.month) == (last.year, last.month):
            return f"{first.day}–{day(last)}"
        if first.year == last.year:
            return f"{first.day} {_MONTHS[first.month - 1]} – {day(last)}"
        return f"{day(first)} – {day(last)}"

    return {
        "credit": credit,
        "date": date_filter,
        "isodate": isodate,
        "localtime": lambda value: local_time(value, tz),
        "daterange": daterange,
        "host": host,
        "typeset": typeset,
        "nowidow": nowidow,
        # Memoised: a send renders the same leads into thousands of category sets.
        "wrap": functools.lru_cache(maxsize=4096)(wrap),
    }


@jinja2.pass_eval_context
def credit(context: jinja2.nodes.EvalContext, item: Item, prefix: str = "") -> str:
    """``prefix`` + the source a post retells, linked in HTML; "" when the post has none.

    A filter rather than a macro: it runs for every item, and a macro call costs ten times more.
    """
    url, site = item.source_url, item.source_site
    if url and not url.startswith(("https://", "http://")):
        url = None  # front matter is not trusted to supply a javascript: or relative link
    if not url and not site:
        return ""
    name = site or host(url or "")
    if not context.autoescape:
        return f"{prefix}{name} <{url}>" if url else f"{prefix}{name}"
    if url:
        return Markup('{}<a href="{}">{}</a>').format(prefix, url, name)
    return Markup("{}{}").format(prefix, name)


def host(url: str) -> str:
    """``https://www.ft.com/content/x`` -> ``ft.com``: a short, readable credit for a link."""
    netloc = urlsplit(url).netloc or url
    return netloc.removeprefix("www.")


def wrap(text: str, width: int = TEXT_WIDTH, indent: str = "", first: str | None = None) -> str:
    """Wrap each paragraph of plain text; URLs and long words are never broken.

    A regular expression does the greedy fill (textwrap.fill is about ten times slower, and
    the text part wraps every lead of every edition): the longest run of at most ``width``
    characters that ends before a space, else a whole word that is longer than that.
    """
    first = indent if first is None else first
    pattern = _LINE_PATTERNS.get(width)
    if pattern is None:
        pattern = _LINE_PATTERNS[width] = re.compile(rf"(.{{1,{width}}}|\S+)(?: +|$)")
    out: list[str] = []
    # A no-break space (digest.typeset) holds two words together on a line, then reads as a space.
    for paragraph in _PARAGRAPH_BREAK.split(str(text).strip().replace("\u00a0", "\x00")):
        flat = " ".join(paragraph.split())
        if not flat:
            continue
        if not indent and not first:
            out.append("\n".join(pattern.findall(flat)))
            continue
        lines: list[str] = []
        line = first + flat.split(" ", 1)[0]
        for word in flat.split(" ")[1:]:
            if len(line) + 1 + len(word) <= width:
                line += " " + word
            else:
                lines.append(line)
                line = indent + word
        lines.append(line)
        out.append("\n".join(lines))
    return "\n\n".join(out).replace("\x00", " ")


_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_LINE_PATTERNS: dict[int, re.Pattern[str]] = {}


def local_time(value: datetime, tz: tzinfo) -> datetime:
    return value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)


def one_line(value: str) -> str:
    return " ".join(value.split())


def tidy_text(text: str) -> str:
    """No trailing spaces, at most one blank line in a row, one newline at the end.

    Lets the text template be laid out for reading rather than for exact whitespace.
    (Line by line and str.replace: a regular expression over the whole part is slower.)
    """
    return collapse_blank_lines(strip_lines(text))


def strip_lines(text: str) -> str:
    """Trailing whitespace off every line."""
    return "\n".join(line.rstrip() for line in text.split("\n"))


def collapse_blank_lines(text: str) -> str:
    """At most one blank line in a row, one newline at the end."""
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip("\n") + "\n"
