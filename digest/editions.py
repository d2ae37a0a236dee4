"""The ``editions`` table: its rows as ``schedule.EditionRecord``, the send lock, and the status.

``digest.schedule`` decides what is due from plain records; this module is the only place that
reads or writes the ``editions`` table, so the rules stay testable without a database. It is
the one writer of an edition's status: ``building`` (recorded) -> ``sending`` (a run holds the
lock) -> ``sent`` (every reader looked at), or ``cancelled`` (a scheduled send called off).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.exc import IntegrityError

from digest.errors import LeaseLostError, SendError
from digest.schedule import EditionRecord, Window
from digest.store import DatabaseBusyError, Store, editions, utcnow

LOCK_SECONDS = 300
log = logging.getLogger(__name__)

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
    """``editions.lock_owner``/``lock_expires`` as a lease, fenced by ``lock_token``.

    One lease is live at a time over the whole site, not per edition: two editions sending at
    once would each read the ledger of posts received before the other wrote to it (issue 12:
    pairs sent in both), so a second edition waits for the first (``acquire(wait=...)``). Each
    acquire bumps ``lock_token``; every batch is recorded in flight only while owner, token and
    an unexpired lease still match (``digest.send.ledger``, from the posting thread), and a
    request or rate-limit wait starts only once the lease covers it (``cover``).
    """

    def __init__(self, store: Store, edition_id: str, *, seconds: int = LOCK_SECONDS) -> None:
        self.store = store
        self.edition_id = edition_id
        self.seconds = float(seconds)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.token = 0
        self._renewed = 0.0
        self._covered_until = 0.0  # time.monotonic() until which the lease is known to hold

    def acquire(self, *, wait: float = 0.0, poll: float = 0.5) -> None:
        """Take the lease, waiting up to ``wait`` seconds while another edition is being sent.

        Raises SendError at once if another run holds this edition, or if the wait runs out.
        """
        deadline = time.monotonic() + wait
        said = False
        while True:
            other = self._try_acquire()
            if other is None:
                return
            if time.monotonic() + poll > deadline:
                raise SendError(
                    f"Edition {other} is being sent by another run, and editions go out one at a "
                    f"time (so no reader gets a post in both). Run the send of {self.edition_id} "
                    f"again when it is done (`digest status {other}` shows its progress)."
                )
            if not said:
                log.warning("Edition %s is being sent; %s waits for it to finish", other, self.edition_id)
                said = True
            time.sleep(poll)

    def _try_acquire(self) -> str | None:
        """One attempt; None when taken, or the other edition whose live lease blocks it."""
        now = utcnow()
        with self.store.session() as s:
            if self.store.dialect == "postgresql":  # one acquire at a time (SQLite: BEGIN IMMEDIATE)
                s.execute(text("LOCK TABLE editions IN SHARE ROW EXCLUSIVE MODE"))
            rows = s.execute(
                select(editions.c.id, editions.c.lock_owner, editions.c.lock_expires).where(
                    editions.c.lock_owner.is_not(None)
                )
            ).all()
            mine = next((r for r in rows if r.id == self.edition_id), None)
            stale = {r.lock_owner for r in rows if _owner_is_dead(r.lock_owner)}
            live_other = [
                r.id
                for r in rows
                if r.id != self.edition_id and r.lock_expires and r.lock_expires >= now
                if r.lock_owner not in stale
            ]
            held = mine is not None and mine.lock_expires and mine.lock_expires >= now
            if mine is not None and held and mine.lock_owner not in stale:
                until = mine.lock_expires.isoformat(timespec="seconds")
                raise SendError(
                    f"Edition {self.edition_id} is being sent by another run ({mine.lock_owner}, "
                    f"lock held until {until}). Wait for it to finish, or run `digest status "
                    f"{self.edition_id}` to see its progress."
                )
            if live_other:
                return str(live_other[0])
            taken = _changed(
                s.execute(
                    update(editions)
                    .where(editions.c.id == self.edition_id)
                    .values(
                        lock_owner=self.owner,
                        lock_expires=now + timedelta(seconds=self.seconds),
                        lock_token=editions.c.lock_token + 1,
                    )
                )
            )
            if taken != 1:
                raise SendError(f"Edition {self.edition_id} is not recorded; nothing to lock.")
            self.token = int(
                s.execute(select(editions.c.lock_token).where(editions.c.id == self.edition_id)).scalar_one()
            )
        self._renewed = time.monotonic()
        self._covered_until = self._renewed + self.seconds - 1.0
        return None

    def renew(self, *, force: bool = False) -> None:
        """Extend the lease (at most every few seconds); raises if this run no longer holds it."""
        if not force and time.monotonic() - self._renewed < min(5.0, self.seconds / 3):
            return
        self._extend(self.seconds)

    def cover(self, seconds: float) -> None:
        """Make sure the lease holds for the next ``seconds`` (a request, a rate-limit wait)
        before it starts; raises LeaseLostError if this run lost it. Thread-safe."""
        if time.monotonic() + seconds < self._covered_until:
            return
        self._extend(max(self.seconds, seconds))

    def covered(self, seconds: float) -> None:
        """The ledger renewed the lease for ``seconds`` along with a batch (the fence)."""
        self._covered_until = time.monotonic() + max(self.seconds, seconds) - 1.0

    def _extend(self, seconds: float) -> None:
        started = time.monotonic()
        now = utcnow()
        try:
            with self.store.session() as s:
                ok = _changed(
                    s.execute(
                        update(editions)
                        .where(
                            editions.c.id == self.edition_id,
                            editions.c.lock_owner == self.owner,
                            editions.c.lock_token == self.token,
                            editions.c.lock_expires > now,
                        )
                        .values(lock_expires=now + timedelta(seconds=seconds))
                    )
                )
        except DatabaseBusyError as exc:  # retryable: say so, and that nothing sent is lost
            raise DatabaseBusyError(
                f"could not renew the send lock on edition {self.edition_id}: {exc} Readers already "
                f"sent are recorded; run the same command again to send the rest."
            ) from exc
        if ok != 1:
            raise LeaseLostError(
                f"Lost the send lock on edition {self.edition_id} (it expired or another run took it "
                "over); stopping. Nothing more was posted by this run; run the send again."
            )
        self._renewed = started
        self._covered_until = started + seconds - 1.0

    def release(self) -> None:
        with self.store.session() as s:
            s.execute(
                update(editions)
                .where(
                    editions.c.id == self.edition_id,
                    editions.c.lock_owner == self.owner,
                    editions.c.lock_token == self.token,
                )
                .values(lock_owner=None, lock_expires=None)
            )


def _changed(result: Result[Any]) -> int:
    """Rows an UPDATE changed (a session's execute returns the cursor's result)."""
    return int(cast("CursorResult[Any]", result).rowcount)


def _owner_is_dead(owner: str | None) -> bool:
    """A lock owner on this host whose process no longer exists (it was killed)."""
    if not owner:
        return False
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
