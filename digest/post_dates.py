"""Dates as real front matter spells them, read once into aware datetimes in the site zone.

Front matter first, else the ``YYYY-MM-DD-`` file name; offsets that exist nowhere (a tool wrote
the hour as the offset) are read as site-local time with a note.
"""

from __future__ import annotations

import functools
import logging
import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from digest.errors import PostError

Notice = tuple[int, str]  # (logging level, message): what the loader tells the site owner

_DATE_TEXT = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:(?:[Tt]|\s+)(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|z|UTC|GMT|[+-]\d{1,2}(?::?\d{2})?)?$"
)
_MAX_OFFSET = timedelta(hours=14)
_MIN_OFFSET = timedelta(hours=-12)


def file_date(match: re.Match[str] | None, tz: ZoneInfo) -> datetime | None:
    if match is None:
        return None
    try:
        return datetime(int(match.group(1)), int(match.group(2)), int(match.group(3)), tzinfo=tz)
    except ValueError:
        return None


def post_date(
    value: Any, name_date: datetime | None, tz: ZoneInfo, rel: str, warnings: list[Notice]
) -> datetime:
    """The post's date in the site time zone: front matter first, then the file name."""
    if value is not None and value != "":
        try:
            return _to_datetime(value, tz, warnings)
        except ValueError:
            shown = repr(value) if not isinstance(value, str) else f"'{value}'"
            if name_date is not None:
                warnings.append(
                    (
                        logging.WARNING,
                        f"date {shown} is not a date that can be read; using the date in the file "
                        f"name ({name_date.date().isoformat()}). Write it as YYYY-MM-DD HH:MM:SS +0000.",
                    )
                )
                return name_date
            raise PostError(
                rel,
                f"date {shown} is not a date that can be read and the file name has no date; "
                "write it as YYYY-MM-DD HH:MM:SS +0000",
            ) from None
    if name_date is not None:
        return name_date
    raise PostError(
        rel, "no date: no `date` in the front matter and no YYYY-MM-DD- at the start of the file name"
    )


def _to_datetime(value: Any, tz: ZoneInfo, warnings: list[Notice]) -> datetime:
    """Any date spelling found in real front matter, as an aware datetime in the site zone."""
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, date):
        result = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        result = parse_date_text(value)
    else:
        raise ValueError(f"not a date: {value!r}")
    if result.tzinfo is not None:
        offset = result.utcoffset()
        if offset is not None and not (_MIN_OFFSET <= offset <= _MAX_OFFSET):
            # Common in real sites (a tool wrote the hour as the offset); the day is still right,
            # so this is a note, not a warning on every run.
            warnings.append(
                (
                    logging.INFO,
                    f"date {value} has a UTC offset that does not exist anywhere; "
                    f"reading the time as {tz.key} time instead.",
                )
            )
            result = result.replace(tzinfo=None)
    if result.tzinfo is None:
        return result.replace(tzinfo=tz)
    return result.astimezone(tz)


@functools.lru_cache(maxsize=8192)  # the fast path checks a date, then the post reads it
def parse_date_text(text: str) -> datetime:
    """``2026-01-08``, ``2026-01-08 08:33:56 +0000`` (Jekyll), ISO 8601 with ``Z``; naive if no zone."""
    match = _DATE_TEXT.match(text.strip())
    if match is None:
        raise ValueError(f"not a date: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    result = datetime(
        int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro
    )
    if zone is None:
        return result
    if zone.upper() in ("Z", "UTC", "GMT"):
        return result.replace(tzinfo=UTC)
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = (int(digits[:-2]), int(digits[-2:])) if len(digits) > 2 else (int(digits), 0)
    if minutes >= 60 or hours >= 24:
        raise ValueError(f"not a UTC offset: {zone!r}")
    return result.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))
