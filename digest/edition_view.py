"""What templates see as ``edition``: the Edition without empty sections, dates in site time."""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo

from markupsafe import Markup

from digest.model import Edition, Item, Section, Skip
from digest.text_format import local_time


class EditionView:
    """What templates see as ``edition``: the Edition without empty sections, dates in site time.

    Precomputed once per render, so templates read plain attributes instead of calling helpers.
    """

    __slots__ = (
        "categories",
        "first_day",
        "id",
        "items",
        "last_day",
        "note_html",
        "note_text",
        "post_count",
        "sections",
        "skipped",
        "titles",
        "window_end",
        "window_start",
    )

    def copy(self) -> EditionView:
        """A shallow copy (``copy.copy`` goes through ``__reduce_ex__``: slower, per set)."""
        twin = object.__new__(EditionView)
        for name in self.__slots__:
            object.__setattr__(twin, name, getattr(self, name))
        return twin

    def __init__(self, edition: Edition, tz: tzinfo) -> None:
        self.id: str = edition.id
        self.sections: tuple[Section, ...] = tuple(s for s in edition.sections if s.items)
        self.items: tuple[Item, ...] = tuple(i for s in self.sections for i in s.items)
        self.titles: tuple[str, ...] = tuple(i.title for i in self.items)
        self.post_count: int = len(self.items)
        self.categories: tuple[str, ...] = edition.categories
        self.skipped: tuple[Skip, ...] = edition.skipped
        self.note_html: Markup = Markup(edition.note_html)  # made safe by digest.notes
        self.note_text: str = edition.note_text
        self.window_start: datetime = local_time(edition.window_start, tz)
        self.window_end: datetime = local_time(edition.window_end, tz)
        self.first_day: date = self.window_start.date()
        # The window's end is exclusive: a window ending at midnight covers the day before.
        self.last_day: date = local_time(edition.window_end - timedelta(microseconds=1), tz).date()
