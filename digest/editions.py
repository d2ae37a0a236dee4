"""The ``editions`` table: its rows as ``schedule.EditionRecord``, the send lock, and the status.

``digest.schedule`` decides what is due from plain records; this module is the only place that
reads or writes the ``editions`` table, so the rules stay testable without a database. It is
the one writer of an edition's status: ``building`` (recorded) -> ``sending`` (a run holds the
lock) -> ``sent`` (every reader looked at), or ``cancelled`` (a scheduled send called off).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.exc import IntegrityError

from digest.errors import SendError
from digest.schedule import EditionRecord, Window
from digest.store import DatabaseBusyError, Store, editions, utcnow

LOCK_SECONDS = 300

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


def latest_edition_id(store: Store) -> str | None:
    """The edition with the latest window (what `digest status` and `digest cancel` default to)."""
    with store.session() as s:
        return s.execute(
            select(editions.c.id).order_by(editions.c.window_end.desc(), editions.c.id.desc()).limit(1)
        ).scalar()


# -- status: this module is its only writer ---------------------------------------------------


def set_status(store: Store, edition_id: str, status: str, *, sent_at: datetime | None = None) -> None:
    """Move an edition on unconditionally (tests and repairs; a send uses the steps below)."""
    values: dict[str, Any] = {"status": status}
    if sent_at is not None:
        values["sent_at"] = sent_at
    with store.session() as s:
        s.execute(update(editions).where(editions.c.id == edition_id).values(**values))


def mark_sending(
    store: Store, edition_id: str, *, sendgrid_batch_id: str | None = None, send_at: datetime | None = None
) -> None:
    """A run holds the lock and starts sending (a scheduled send also records its SendGrid batch)."""
    with store.session() as s:
        s.execute(
            update(editions)
            .where(editions.c.id == edition_id, editions.c.status == "building")
            .values(status="sending")
        )
        if sendgrid_batch_id is not None:
            s.execute(
                update(editions)
                .where(editions.c.id == edition_id)
                .values(sendgrid_batch_id=sendgrid_batch_id, send_at=send_at)
            )


def sendgrid_batch_id(store: Store, edition_id: str) -> str | None:
    """The SendGrid batch an earlier scheduled run of this edition used (a rerun keeps it)."""
    with store.session() as s:
        return s.execute(select(editions.c.sendgrid_batch_id).where(editions.c.id == edition_id)).scalar()


def mark_sent(store: Store, edition_id: str) -> None:
    """Every reader was looked at: the edition is sent (failures and in-flight stay reported)."""
    with store.session() as s:
        s.execute(
            update(editions)
            .where(editions.c.id == edition_id, editions.c.status.in_(("building", "sending")))
            .values(status="sent", sent_at=utcnow())
        )


def mark_cancelled(store: Store, edition_id: str) -> None:
    """A scheduled send was called off at the provider: the scheduler leaves the edition alone."""
    with store.session() as s:
        s.execute(update(editions).where(editions.c.id == edition_id).values(status="cancelled"))


# -- the lock -----------------------------------------------------------------------------------


class EditionLock:
    """``editions.lock_owner``/``lock_expires`` as a lease: taken with one conditional UPDATE."""

    def __init__(self, store: Store, edition_id: str, *, seconds: int = LOCK_SECONDS) -> None:
        self.store = store
        self.edition_id = edition_id
        self.seconds = seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renewed = 0.0

    def acquire(self) -> None:
        now = utcnow()
        with self.store.session() as s:
            row = s.execute(
                select(editions.c.lock_owner, editions.c.lock_expires).where(editions.c.id == self.edition_id)
            ).first()
            stale_owner = (
                row.lock_owner if row and row.lock_owner and _owner_is_dead(row.lock_owner) else None
            )
            free = or_(editions.c.lock_owner.is_(None), editions.c.lock_expires < now)
            if stale_owner:
                free = or_(free, editions.c.lock_owner == stale_owner)
            taken = _changed(
                s.execute(
                    update(editions)
                    .where(editions.c.id == self.edition_id, free)
                    .values(lock_owner=self.owner, lock_expires=now + timedelta(seconds=self.seconds))
                )
            )
        if taken != 1:
            until = row.lock_expires.isoformat(timespec="seconds") if row and row.lock_expires else "?"
            raise SendError(
                f"Edition {self.edition_id} is being sent by another run ({row.lock_owner if row else '?'}, "
                f"lock held until {until}). Wait for it to finish, or run `digest status "
                f"{self.edition_id}` to see its progress."
            )
        self._renewed = time.monotonic()

    def renew(self, *, force: bool = False) -> None:
        """Extend the lease (at most every few seconds); raises if another run took it over."""
        if not force and time.monotonic() - self._renewed < 5:
            return
        try:
            with self.store.session() as s:
                ok = _changed(
                    s.execute(
                        update(editions)
                        .where(editions.c.id == self.edition_id, editions.c.lock_owner == self.owner)
                        .values(lock_expires=utcnow() + timedelta(seconds=self.seconds))
                    )
                )
        except DatabaseBusyError as exc:  # retryable: say so, and that nothing sent is lost
            raise DatabaseBusyError(
                f"could not renew the send lock on edition {self.edition_id}: {exc} Readers already "
                f"sent are recorded; run the same command again to send the rest."
            ) from exc
        if ok != 1:
            raise SendError(f"Lost the lock on edition {self.edition_id} to another run; stopping.")
        self._renewed = time.monotonic()

    def release(self) -> None:
        with self.store.session() as s:
            s.execute(
                update(editions)
                .where(editions.c.id == self.edition_id, editions.c.lock_owner == self.owner)
                .values(lock_owner=None, lock_expires=None)
            )


def _changed(result: Result[Any]) -> int:
    """Rows an UPDATE changed (a session's execute returns the cursor's result)."""
    return int(cast("CursorResult[Any]", result).rowcount)


def _owner_is_dead(owner: str) -> bool:
    """A lock owner on this host whose process no longer exists (it was killed)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
