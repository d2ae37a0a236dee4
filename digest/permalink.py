"""A post's address on the site, built the way Jekyll builds it, so the email links where the site is.

Placeholders follow Jekyll 4 (``:categories`` lower-cased, ``:title`` keeps case, ``:slug``
slugified); the named styles ``date``, ``pretty``, ``ordinal``, ``weekdate`` and ``none`` are
expanded first. A post's own ``permalink`` front matter wins (and may use placeholders too).
"""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

from digest.model import Post

STYLES = {
    "date": "/:categories/:year/:month/:day/:title:output_ext",
    "pretty": "/:categories/:year/:month/:day/:title/",
    "ordinal": "/:categories/:year/:y_day/:title:output_ext",
    "weekdate": "/:categories/:year/W:week/:short_day/:title:output_ext",
    "none": "/:categories/:title:output_ext",
}
_PLACEHOLDER = re.compile(r":([a-z_]+)")
_SAFE = "!$&'()*+,;=:@~-._"
_DEFAULT_SLUG = re.compile(r"(?:[^\w]|_)+")  # Jekyll's "default" slugify: letters and digits only
_PRETTY_SLUG = re.compile(r"(?:[^\w._~!$&'()+,;=@]|_)+")


def slugify(text: str, *, pretty: bool = False, cased: bool = False) -> str:
    """Jekyll's ``Utils.slugify``: runs of other characters become one hyphen."""
    pattern = _PRETTY_SLUG if pretty else _DEFAULT_SLUG
    slug = pattern.sub("-", text).strip("-")
    return slug if cased else slug.lower()


def post_url(post: Post, *, base_url: str, pattern: str, tz: ZoneInfo) -> str:
    """The absolute URL of ``post``: ``base_url`` plus its permalink (own, named style or pattern)."""
    template = (post.permalink or pattern or "date").strip()
    if re.match(r"^https?://", template, re.IGNORECASE):
        return template
    template = STYLES.get(template, template)
    values = _values(post, post.date.astimezone(tz))

    path = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    path = "/" + re.sub(r"/{2,}", "/", path).lstrip("/")
    return base_url.rstrip("/") + path


def _values(post: Post, when: datetime) -> dict[str, str]:
    """Every placeholder, already URL-quoted (so a category with a space becomes %20)."""
    categories = []
    for name in post.categories:
        lowered = name.lower()
        if lowered not in categories:
            categories.append(lowered)
    iso_year, iso_week, iso_day = when.isocalendar()
    title = slugify(post.slug, pretty=True, cased=True) or "untitled"
    return {
        "categories": "/".join(quote(c, safe=_SAFE) for c in categories),
        "slugified_categories": "/".join(slugify(c) for c in categories if slugify(c)),
        "year": f"{when.year:04d}",
        "short_year": f"{when.year % 100:02d}",
        "month": f"{when.month:02d}",
        "i_month": str(when.month),
        "short_month": when.strftime("%b"),
        "long_month": when.strftime("%B"),
        "day": f"{when.day:02d}",
        "i_day": str(when.day),
        "y_day": f"{when.timetuple().tm_yday:03d}",
        "w_year": str(iso_year),
        "week": f"{iso_week:02d}",
        "w_day": str(iso_day),
        "short_day": when.strftime("%a"),
        "long_day": when.strftime("%A"),
        "hour": f"{when.hour:02d}",
        "minute": f"{when.minute:02d}",
        "second": f"{when.second:02d}",
        "title": quote(title, safe=_SAFE),
        "slug": quote(slugify(post.slug) or "untitled", safe=_SAFE),
        "name": quote(slugify(post.slug) or "untitled", safe=_SAFE),
        "path": quote(post.path.rsplit(".", 1)[0], safe=_SAFE + "/"),
        "output_ext": ".html",
    }
