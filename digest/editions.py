"""The store-facing side of scheduling: editions rows in, ``schedule.EditionRecord`` out.

``digest.schedule`` decides what is due from plain records; this module is the only place that
reads or writes the ``editions`` table for it, so the rules stay testable without a database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from digest.schedule import EditionRecord, Window
from digest.store import Store, editions

# Post ids a run decided not to send (edition.backdated = "skip"), kept in the manifest so the
# next run does not report them again.
BACKDATED_SKIPPED = "backdated_skipped"


def post_ids_from_manifest(manifest: str | Mapping[str, Any] | None) -> frozenset[str]:
    """Every post id an edition carried (or deliberately passed over), from its JSON manifest."""
    if not manifest:
        return frozenset()
    try:
        data = json.loads(manifest) if isinstance(manifest, str) else manifest
    except json.JSONDecodeError:
        return frozenset()
    if not isinstance(data, Mapping):
        return frozenset()
    ids = {
        str(post.get("path") or post.get("id"))
        for section in data.get("sections") or ()
        if isinstance(section, Mapping)
        for post in section.get("posts") or ()
        if isinstance(post, Mapping) and (post.get("path") or post.get("id"))
    }
    ids.update(str(p) for p in data.get("posts") or () if isinstance(p, str))
    ids.update(str(p) for p in data.get(BACKDATED_SKIPPED) or ())
    return frozenset(ids)


def _record(row: Any) -> EditionRecord:
    return EditionRecord(
        id=row.id,
        window_start=row.window_start,
        window_end=row.window_end,
        status=row.status,
        sent_at=row.sent_at,
        post_ids=post_ids_from_manifest(row.manifest),
    )


def get_edition(store: Store, edition_id: str) -> EditionRecord | None:
    with store.session() as s:
        row = s.execute(select(editions).where(editions.c.id == edition_id)).first()
    return _record(row) if row else None


def edition_records(store: Store) -> list[EditionRecord]:
    """Every edition the store knows, oldest window first (small: one row a week)."""
    with store.session() as s:
        rows = s.execute(select(editions).order_by(editions.c.window_end, editions.c.id)).all()
    return [_record(r) for r in rows]


def last_sent_edition(store: Store, *, exclude: str | None = None) -> EditionRecord | None:
    """The edition that went out with the latest window end: where the next window starts."""
    query = select(editions).where(editions.c.status == "sent")
    if exclude is not None:
        query = query.where(editions.c.id != exclude)
    with store.session() as s:
        row = s.execute(query.order_by(editions.c.window_end.desc(), editions.c.id.desc()).limit(1)).first()
    return _record(row) if row else None


def covered_since(records: Iterable[EditionRecord]) -> datetime | None:
    """Where the first edition that went out began: older posts are the archive, not news."""
    starts = [r.window_start for r in records if r.status in ("sending", "sent")]
    return min(starts) if starts else None


def record_edition(
    store: Store,
    *,
    edition_id: str,
    window: Window,
    manifest: Mapping[str, Any] | None = None,
    status: str = "building",
) -> EditionRecord:
    """Create the edition's row, or return the one already there (first writer wins).

    Two runs racing for one edition both end up with the same row; the delivery engine's lock
    decides which one sends. A manifest given for a row still ``building`` replaces the old one.
    """
    text = json.dumps(manifest, ensure_ascii=False, sort_keys=True) if manifest is not None else None
    try:
        with store.session() as s:
            s.execute(
                insert(editions).values(
                    id=edition_id,
                    window_start=window.start,
                    window_end=window.end,
                    status=status,
                    manifest=text,
                )
            )
    except IntegrityError:
        if text is not None:
            with store.session() as s:
                s.execute(
                    update(editions)
                    .where(editions.c.id == edition_id, editions.c.status == "building")
                    .values(manifest=text)
                )
    record = get_edition(store, edition_id)
    assert record is not None  # just written, or there already
    return record


def set_status(store: Store, edition_id: str, status: str, *, sent_at: datetime | None = None) -> None:
    """Move an edition on (the delivery engine normally does this itself)."""
    values: dict[str, Any] = {"status": status}
    if sent_at is not None:
        values["sent_at"] = sent_at
    with store.session() as s:
        s.execute(update(editions).where(editions.c.id == edition_id).values(**values))
