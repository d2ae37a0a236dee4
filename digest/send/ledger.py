"""The send's ledger: batches, deliveries and the posts each email carried. The only raw DB-API code.

Hot paths are plain SQL through the DB-API (executemany, or one statement over a JSON/array list
of ids): a million deliveries must not mean a million bound-parameter dicts. The ledger of posts
received is per email, not per reader: ``edition_posts`` holds the posts each email
(``deliveries.category_set``) of an edition carried. A batch's readers are written once, as a
list on its row, and moved into ``deliveries`` in bulk by ``materialize`` (at the end of a run,
or at the start of the next one if this one died).

The crash rule lives here: a batch is recorded ``in_flight`` (with the answer to the batch
before, one transaction) before its request goes out, and answered after.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import and_, delete, or_, select, update

from digest import store as st
from digest.send.summary import InFlightBatch
from digest.store import Store

log = logging.getLogger(__name__)

_DONE = ("sent", "in_flight", "undecided")
UNDECIDED = "undecided"  # the request went out and no answer came: maybe taken (never resent blindly)
T = TypeVar("T")


class Email(Protocol):
    """What the ledger needs of one rendered email (``digest.send.variants.Variant``)."""

    category_set: str
    post_ids: tuple[str, ...]
    recorded: bool


@dataclass
class Finished:
    """The answer to one batch, waiting to be written."""

    batch_id: int
    ids: list[int]
    message_id: str | None = None
    failed: dict[int, str] = field(default_factory=dict)
    error: str | None = None
    undecided: bool = False  # no answer came (``error`` says why): the provider may have taken it


class Fence(Protocol):
    """The send lease a batch is recorded under (``digest.editions.EditionLock``)."""

    edition_id: str
    owner: str
    token: int
    seconds: float


class LeaseLost(Exception):
    """The lease is gone (expired, or taken by another run with a newer token): record nothing."""


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Ledger:
    """The tables the delivery engine writes, for one edition: batches, deliveries, edition_posts."""

    def __init__(self, store: Store, edition_id: str, *, per_reader: bool = False) -> None:
        self.store = store
        self.st = st
        self.edition_id = edition_id
        # SMTP and the outbox answer per reader: their batches reach deliveries at once.
        self.per_reader = per_reader
        self.pg = store.dialect == "postgresql"
        q = "%s" if self.pg else "?"
        in_ids = "= ANY(CAST(%s AS integer[]))" if self.pg else "IN (SELECT value FROM json_each(?))"
        self._q, self._in_ids = q, in_ids
        cols = (
            "edition_id, subscriber_id, state, batch_id, category_set, provider_message_id, error, updated_at"
        )
        upsert = (
            " ON CONFLICT (edition_id, subscriber_id) DO UPDATE SET state = excluded.state, "
            "batch_id = excluded.batch_id, category_set = excluded.category_set, "
            "provider_message_id = excluded.provider_message_id, error = excluded.error, "
            "updated_at = excluded.updated_at"
        )
        self._sql_rows = f"INSERT INTO deliveries ({cols}) VALUES ({', '.join([q] * 8)})" + upsert
        self._sql_batch = (
            "INSERT INTO batches (edition_id, category_set, state, recipients, created_at, updated_at, "
            f"pending_ids) VALUES ({q}, {q}, {q}, {q}, {q}, {q}, {q}) RETURNING id"
        )
        # A batch's state becomes each reader's; the latest batch wins for a reader in two (a
        # failed batch, then the rerun that sent it). Two forms: the fast one lets the foreign key
        # check that every reader still exists; if one was erased meanwhile (the statement fails),
        # the checked one joins subscribers and leaves them out (random look-ups: slower).
        values = (
            "b.edition_id, {sid}, CASE b.state WHEN 'accepted' THEN 'sent' WHEN 'in_flight' THEN "
            "'in_flight' WHEN 'undecided' THEN 'undecided' ELSE 'failed' END, b.id, b.category_set, CASE WHEN b.state = 'accepted' "
            "THEN b.provider_message_id END, CASE WHEN b.state = 'failed' THEN b.error END, b.updated_at"
        )
        if self.pg:
            sql = (
                f"INSERT INTO deliveries ({cols}) SELECT DISTINCT ON (b.edition_id, {{sid}}) {values} "
                "FROM batches b CROSS JOIN LATERAL json_array_elements_text(CAST(b.pending_ids AS json)) "
                "AS j(value) {join} WHERE b.pending_ids IS NOT NULL AND b.{by} = %s "
                "ORDER BY b.edition_id, {sid}, b.id DESC" + upsert
            )
            value, join = "CAST(j.value AS integer)", "JOIN subscribers s ON s.id = CAST(j.value AS integer)"
        else:
            sql = (
                f"INSERT INTO deliveries ({cols}) SELECT {values} "
                "FROM batches b CROSS JOIN json_each(b.pending_ids) j {join} "
                "WHERE b.pending_ids IS NOT NULL AND b.{by} = ? AND {sid} = j.value "
                "ORDER BY b.edition_id, {sid}, b.id" + upsert
            )
            value, join = "j.value", "CROSS JOIN subscribers s"
        self._sql_materialize = {
            "fast": sql.replace("{sid}", value).replace("{join}", ""),
            "checked": sql.replace("{sid}", "s.id").replace("{join}", join),
        }
        self._sql_materialized = (
            f"UPDATE batches SET pending_ids = NULL WHERE pending_ids IS NOT NULL AND {{by}} = {q}"
        )
        self._sql_posts = (
            f"INSERT INTO edition_posts (edition_id, category_set, post_id) VALUES ({q}, {q}, {q}) "
            "ON CONFLICT DO NOTHING"
        )
        self._sql_one_failed = (
            f"UPDATE deliveries SET state = 'failed', provider_message_id = NULL, error = {q}, updated_at = {q} "
            f"WHERE edition_id = {q} AND batch_id = {q} AND subscriber_id = {q}"
        )
        # Only a batch still in flight takes its answer: the webhook may have settled it already.
        self._sql_batch_done = (
            f"UPDATE batches SET state = {q}, provider_message_id = {q}, error = {q}, updated_at = {q} "
            f"WHERE id = {q} AND state = 'in_flight'"
        )
        # The fence: the lease renewed only if this run still holds it (same owner and token,
        # not expired); zero rows means another run took over, and nothing more is posted.
        self._sql_fence = (
            f"UPDATE editions SET lock_expires = {q} WHERE id = {q} AND lock_owner = {q} "
            f"AND lock_token = {q} AND lock_expires > {q}"
        )

    def _ts(self, when: datetime) -> Any:
        """A timestamp as the driver wants it (SQLite: the text SQLAlchemy's DateTime writes)."""
        if self.pg:
            return when
        return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def _ids(self, ids: list[Any]) -> Any:
        return ids if self.pg else json.dumps(ids)

    # what is already done

    def any_done(self) -> bool:
        """Has any reader of this edition been sent (or is in flight)? If not, skip per-page checks."""
        d = self.st.deliveries
        with self.store.reading() as c:
            row = c.execute(
                select(d.c.subscriber_id)
                .where(d.c.edition_id == self.edition_id, d.c.state.in_(_DONE))
                .limit(1)
            ).first()
        return row is not None

    def done_among(self, ids: list[int]) -> set[int]:
        """Which of these subscribers are already sent or in flight for this edition (a rerun).

        Pages come in (category set, id) order, so they are lists of ids, not id ranges: one
        statement over a JSON/array list, found by the deliveries primary key.
        """
        sql = (
            f"SELECT subscriber_id FROM deliveries WHERE edition_id = {self._q} "
            f"AND state IN ('sent', 'in_flight', 'undecided') AND subscriber_id {self._in_ids}"
        )
        with self.store.reading() as c:
            return {r[0] for r in c.exec_driver_sql(sql, (self.edition_id, self._ids(ids)))}

    def recorded(self) -> dict[str, frozenset[str]]:
        """The posts each email of this edition carried in earlier runs (a rerun)."""
        ep = self.st.edition_posts
        found: dict[str, set[str]] = {}
        with self.store.reading() as c:
            for label, pid in c.execute(
                select(ep.c.category_set, ep.c.post_id).where(ep.c.edition_id == self.edition_id)
            ):
                found.setdefault(label, set()).add(pid)
        return {k: frozenset(v) for k, v in found.items()}

    def sent_before(self, candidates: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
        """Which of this window's posts went out in an earlier edition (new ledger, old ledger).

        Usually none: a post is in one edition's window. Only these can have reached a reader.
        """
        cands = sorted(candidates)
        if not cands:
            return frozenset(), frozenset()
        ep, rp = self.st.edition_posts, self.st.received_posts
        new: set[str] = set()
        old: set[str] = set()
        with self.store.reading() as c:
            for chunk in chunks(cands, 500):
                new.update(
                    r[0]
                    for r in c.execute(
                        select(ep.c.post_id)
                        .where(ep.c.post_id.in_(chunk), ep.c.edition_id != self.edition_id)
                        .distinct()
                    )
                )
            if c.execute(select(rp.c.post_id).limit(1)).first() is not None:
                for chunk in chunks(cands, 500):
                    old.update(
                        r[0]
                        for r in c.execute(
                            select(rp.c.post_id)
                            .where(
                                rp.c.post_id.in_(chunk),
                                or_(rp.c.edition_id.is_(None), rp.c.edition_id != self.edition_id),
                            )
                            .distinct()
                        )
                    )
        return frozenset(new), frozenset(old)

    def received(self, ids: list[int], new: frozenset[str], old: frozenset[str]) -> dict[int, set[str]]:
        """Which of ``new``/``old`` (posts of earlier editions) each of these subscribers received."""
        q, in_ids = self._q, self._in_ids
        in_posts = "= ANY(CAST(%s AS text[]))" if self.pg else "IN (SELECT value FROM json_each(?))"
        found: dict[int, set[str]] = {}
        with self.store.reading() as c:
            if new:
                sql = (
                    "SELECT d.subscriber_id, ep.post_id FROM deliveries d JOIN edition_posts ep "
                    "ON ep.edition_id = d.edition_id AND ep.category_set = d.category_set "
                    f"WHERE d.subscriber_id {in_ids} AND d.edition_id <> {q} "
                    f"AND d.state IN ('sent', 'in_flight', 'undecided') AND ep.post_id {in_posts}"
                )
                for sid, pid in c.exec_driver_sql(
                    sql, (self._ids(ids), self.edition_id, self._ids(sorted(new)))
                ):
                    found.setdefault(sid, set()).add(pid)
            if old:
                sql = (
                    f"SELECT subscriber_id, post_id FROM received_posts WHERE subscriber_id {in_ids} "
                    f"AND post_id {in_posts} AND (edition_id IS NULL OR edition_id <> {q})"
                )
                for sid, pid in c.exec_driver_sql(
                    sql, (self._ids(ids), self._ids(sorted(old)), self.edition_id)
                ):
                    found.setdefault(sid, set()).add(pid)
        return found

    # writing

    def skip(self, subs: list[tuple[int, str, str]]) -> None:
        """Record readers passed over: (subscriber id, category set, reason)."""
        now = self._ts(self.st.utcnow())
        rows = [
            (self.edition_id, sid, "skipped", None, cats, None, reason, now) for sid, cats, reason in subs
        ]
        with self.store.engine.begin() as conn:
            conn.exec_driver_sql(self._sql_rows, rows)

    def begin_batch(self, variant: Email, ids: list[int], fence: Fence | None = None) -> int:
        """The batch in flight, its readers listed on it, and the email's posts once, before the
        request (SMTP and the outbox, batch by batch; the SendGrid poster calls
        ``record_in_flight`` on its own connection)."""
        raw = self.raw_connection()
        try:
            return self.record_in_flight(raw, variant, ids, None, fence=fence)
        finally:
            raw.close()

    # Batch records: plain DB-API (the poster keeps a connection of its own). SQLAlchemy's work per
    # statement (a few hundred microseconds a batch) sat on the thread every request waits for.

    def raw_connection(self) -> Any:
        return self.store.engine.raw_connection()

    def record_in_flight(
        self,
        raw: Any,
        variant: Email,
        ids: list[int],
        answered: Sequence[Finished] | Finished | None,
        fence: Fence | None = None,
        cover: float = 0.0,
    ) -> int:
        """``begin_batch`` on the poster's connection: one transaction, one commit.

        With a ``fence``, the same transaction first renews the lease for ``cover`` seconds (at
        least the lease's length) on the condition that this run still holds it: check before
        every post. Raises ``LeaseLost`` (nothing written) when it does not.
        """
        utc = self.st.utcnow()
        now = self._ts(utc)

        def write(cursor: Any) -> int:
            if fence is not None:
                until = self._ts(utc + timedelta(seconds=max(fence.seconds, cover)))
                cursor.execute(self._sql_fence, (until, fence.edition_id, fence.owner, fence.token, now))
                if cursor.rowcount != 1:
                    raise LeaseLost(f"the send lease on edition {fence.edition_id} is no longer ours")
            for done in [answered] if isinstance(answered, Finished) else answered or ():
                cursor.execute(self._sql_batch_done, self._answer_values(done, now))
            if not variant.recorded and variant.post_ids:
                cursor.executemany(
                    self._sql_posts, [(self.edition_id, variant.category_set, p) for p in variant.post_ids]
                )
            cursor.execute(
                self._sql_batch,
                (self.edition_id, variant.category_set, "in_flight", len(ids), now, now, json.dumps(ids)),
            )
            return int(cursor.fetchone()[0])

        batch_id = int(self._raw_transaction(raw, write))
        variant.recorded = True
        return batch_id

    def record_answers(self, raw: Any, answered: Sequence[Finished]) -> None:
        now = self._ts(self.st.utcnow())
        values = [self._answer_values(done, now) for done in answered]
        self._raw_transaction(raw, lambda c: c.executemany(self._sql_batch_done, values))

    def _answer_values(self, done: Finished, now: Any) -> tuple[Any, ...]:
        """``_sql_batch_done``'s values: accepted with the message id, undecided or failed with the error."""
        if done.undecided:
            return (UNDECIDED, None, (done.error or "no answer")[:2000], now, done.batch_id)
        if done.error is not None:
            return ("failed", None, done.error[:2000], now, done.batch_id)
        return ("accepted", done.message_id, None, now, done.batch_id)

    def _raw_transaction(self, raw: Any, write: Callable[[Any], Any]) -> Any:
        cursor = raw.cursor()
        try:
            if not self.pg:
                cursor.execute("BEGIN IMMEDIATE")  # the connection is in autocommit mode (store.py)
            result = write(cursor)
            if self.pg:
                raw.commit()
            else:
                cursor.execute("COMMIT")
            return result
        except BaseException:
            try:
                if self.pg:
                    raw.rollback()
                elif raw.driver_connection.in_transaction:
                    cursor.execute("ROLLBACK")
            except Exception:
                log.exception("Rolling back a batch record failed")
            raise
        finally:
            cursor.close()

    def finish(self, finished: Sequence[Finished]) -> None:
        if not finished:
            return
        now = self._ts(self.st.utcnow())
        with self.store.engine.begin() as conn:
            for done in finished:
                self._finish(conn, done, now)

    def _finish(self, conn: Any, done: Finished, now: Any) -> None:
        """Accepted (minus per-reader refusals) or failed as a whole, on the batch row."""
        conn.exec_driver_sql(self._sql_batch_done, self._answer_values(done, now))
        if not (self.per_reader or done.failed):
            return  # its readers reach deliveries with the rest, in bulk
        self._materialize(conn, "id", done.batch_id)
        if done.failed:
            conn.exec_driver_sql(
                self._sql_one_failed,
                [
                    (reason[:2000], now, self.edition_id, done.batch_id, sid)
                    for sid, reason in done.failed.items()
                ],
            )

    def materialize(self, *, other_editions: bool = False) -> int:
        """Write the readers of this edition's batches into ``deliveries``, in bulk; idempotent.

        Runs at the end of a send and at its start, under the edition's lock (a run that died
        leaves its batches unwritten). ``other_editions``: also other editions' unwritten
        batches, so the ledger of posts received is complete, unless a live run holds that
        edition's lock (it writes its own at its end).
        """
        from digest.store import editions as ed
        from digest.store import utcnow

        b = self.st.batches
        with self.store.reading() as c:
            query = select(b.c.edition_id, ed.c.lock_owner, ed.c.lock_expires).join(
                ed, ed.c.id == b.c.edition_id
            )
            query = query.where(b.c.pending_ids.is_not(None))
            if not other_editions:
                query = query.where(b.c.edition_id == self.edition_id)
            found = c.execute(query.distinct()).all()
        now = utcnow()
        written = 0
        for edition, owner, expires in found:
            if edition != self.edition_id and owner and expires and expires > now:
                continue
            with self.store.engine.begin() as conn:
                written += self._materialize(conn, "edition_id", edition)
        return written

    def _materialize(self, conn: Any, by: str, value: Any) -> int:
        """Only for batches no live run is working on (see ``materialize``)."""
        from sqlalchemy.exc import IntegrityError

        try:
            with conn.begin_nested():  # a savepoint: PostgreSQL aborts the transaction otherwise
                rows = conn.exec_driver_sql(self._sql_materialize["fast"].format(by=by), (value,)).rowcount
        except IntegrityError:  # a reader was erased during the send
            rows = conn.exec_driver_sql(self._sql_materialize["checked"].format(by=by), (value,)).rowcount
        conn.exec_driver_sql(self._sql_materialized.format(by=by), (value,))
        return int(rows or 0)

    def per_recipient_ids(self, batch_id: int, message_ids: dict[int, str]) -> None:
        """SMTP and the outbox give each reader their own message id."""
        d = self.st.deliveries
        with self.store.engine.begin() as s:
            for sid, mid in message_ids.items():
                s.execute(
                    update(d)
                    .where(d.c.edition_id == self.edition_id, d.c.subscriber_id == sid)
                    .values(provider_message_id=mid)
                )

    def in_flight(self) -> list[InFlightBatch]:
        """This edition's batches whose answer is unknown: ``undecided`` (or still ``in_flight``)."""
        b = self.st.batches
        with self.store.reading() as c:
            rows = c.execute(
                select(b.c.id, b.c.category_set, b.c.recipients, b.c.created_at)
                .where(b.c.edition_id == self.edition_id, b.c.state.in_(("in_flight", UNDECIDED)))
                .order_by(b.c.id)
            ).all()
        return [InFlightBatch(r.id, r.category_set, r.recipients, r.created_at) for r in rows]

    def mark_undecided(self) -> int:
        """At a run's start, under the lease: batches a dead (or fenced-off) run left in flight
        are undecided; their readers too. Returns how many batches."""
        b, d = self.st.batches, self.st.deliveries
        now = self.st.utcnow()
        with self.store.engine.begin() as s:
            n = s.execute(
                update(b)
                .where(b.c.edition_id == self.edition_id, b.c.state == "in_flight")
                .values(
                    state=UNDECIDED,
                    error="in flight when a run stopped: the answer is unknown",
                    updated_at=now,
                )
            ).rowcount
            s.execute(
                update(d)
                .where(d.c.edition_id == self.edition_id, d.c.state == "in_flight")
                .values(state=UNDECIDED, updated_at=now)
            )
        return int(n or 0)

    def cancelled(self) -> None:
        """A cancelled edition: its readers ``skipped`` ("cancelled"), its posts not received after all."""
        d, rp = self.st.deliveries, self.st.received_posts
        with self.store.session() as s:
            s.execute(
                update(d)
                .where(d.c.edition_id == self.edition_id, d.c.state.in_(_DONE))
                .values(state="skipped", error="cancelled", updated_at=self.st.utcnow())
            )
            s.execute(delete(rp).where(rp.c.edition_id == self.edition_id))

    def release_in_flight(self, batch_ids: list[int]) -> None:
        """``resend_in_flight``: give those readers back to the queue (so their posts count as not received)."""
        st = self.st
        d, b = st.deliveries, st.batches
        now = st.utcnow()
        with self.store.engine.begin() as s:
            for bid in batch_ids:
                mine = and_(d.c.edition_id == self.edition_id, d.c.batch_id == bid)
                s.execute(update(d).where(mine).values(state="pending", batch_id=None, updated_at=now))
                s.execute(
                    update(b)
                    .where(b.c.id == bid)
                    .values(
                        state="failed",
                        error="in flight when a run stopped; resent on request",
                        updated_at=now,
                        pending_ids=None,
                    )
                )


def settle(store: Store, batches: Iterable[tuple[str, int]]) -> int:
    """Batches the provider's events show it took (``digest.send.webhook``): ``accepted``, and
    their readers ``sent``. Only batches whose answer was unknown change; returns how many did."""
    b, d = st.batches, st.deliveries
    now = st.utcnow()
    settled = 0
    with store.engine.begin() as s:
        for edition_id, batch_id in sorted(set(batches)):
            unknown = b.c.state.in_(("in_flight", UNDECIDED))
            changed = s.execute(
                update(b)
                .where(b.c.id == batch_id, b.c.edition_id == edition_id, unknown)
                .values(state="accepted", error=None, updated_at=now)
            ).rowcount
            if changed:
                settled += int(changed)
                s.execute(
                    update(d)
                    .where(
                        d.c.edition_id == edition_id,
                        d.c.batch_id == batch_id,
                        d.c.state.in_(("in_flight", UNDECIDED)),
                    )
                    .values(state="sent", error=None, updated_at=now)
                )
    return settled
