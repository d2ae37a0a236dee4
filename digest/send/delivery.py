"""Delivering an edition: every active subscriber gets their own categories' email, exactly once.

How a send goes:

1. The edition gets a stable id (the ISO week its window ends in, e.g. ``2026-W02``) and a row
   in ``editions``. A run takes the row's lock (``lock_owner``/``lock_expires``, a conditional
   UPDATE, renewed as batches go out), so two runs of one edition cannot both send. A lock left
   by a process that died on this host is taken over at once; one held elsewhere expires.
2. Subscribers stream from the database ordered by (category set, id)
   (``subscribers.iter_send_rows``, over the denormalised ``subscribers.category_set`` column
   and its index), so each set's readers arrive together: the set is rendered once, its batches
   go out full (1,000) and the last part-full one at the set's end, with no buffer across sets.
   Anyone already ``sent`` or ``in_flight`` for this edition is passed over, so a rerun only
   sends to those not yet sent (failed and skipped readers are looked at again).
3. Each reader's email is built from their category set, minus any post the ``received_posts``
   ledger says they already have. Each distinct (categories, posts left out) is built and
   rendered once through ``digest.pipeline`` and reused; only the personal links differ, filled
   per recipient (SendGrid substitutions, or string replacement for SMTP and the outbox).
   Nothing new for a reader: no email (``skipped``), or a short note if
   ``edition.nothing_new = "note"``. Addresses on SendGrid's suppression lists (pulled before
   the send, dry runs included) are skipped and marked in the database.
4. Recipients of one rendered email go out in batches of at most 1,000. Every batch is
   recorded ``in_flight`` before its request: a ``batches`` row that lists its readers
   (``pending_ids``), and the email's posts in ``edition_posts`` (once per email), in one
   transaction with the answer to the batch before (``accepted`` with the provider's message
   id, or ``failed`` with the error). SendGrid: the main thread streams readers and builds
   request bodies (large sends build the readers' parts in a worker process,
   ``digest.send.personalize``); a poster thread takes the bodies in order, records each and
   makes its request, so the database writes and the requests never wait for the building,
   and only the batch whose request is out is ever in flight. SMTP and the outbox go batch by
   batch in the main thread, answered per reader.
5. A batch's readers reach ``deliveries`` (``sent``, ``failed`` or ``in_flight``, one row each)
   in bulk, in id order: at the end of the run, or at the start of the next one if this one
   died (``_Ledger.materialize``); ``digest status`` adds batches not yet written. Two writes per
   reader at scattered index pages were most of a million-reader send; this is one small row
   per batch.

The crash choice. If the process dies between the provider accepting a batch and the
transaction that records the answer, the batch stays ``in_flight``. We cannot tell whether the provider took it,
and SendGrid has no idempotency key to ask with. A rerun therefore **does not resend in-flight
batches**: it reports them (edition, batch, recipients, since when) and sends to everyone else.
An unwanted duplicate in many inboxes is worse than one missing digest, which an operator can
still send after checking the provider's activity feed: ``resend_in_flight=True``
(``digest send --resend-in-flight``) sends those batches again. At most one batch (1,000
readers) per crashed run is affected, because a batch is only in flight during its request;
bodies built but not yet recorded when a run died left no trace and are sent by the next run.
Retries inside one run (429, 5xx, a refused connection) are safe; a retry after a *timeout* can,
rarely, duplicate, which is why the timeout is generous (``sender.timeout_seconds``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from digest import pipeline
from digest.config import Config
from digest.errors import DigestError, EmptyEditionError, ProviderAuthError, SendError
from digest.links import LinkMaker, Signer, load_secret
from digest.model import (
    PREFERENCES_URL,
    UNSUBSCRIBE_URL,
    Edition,
    LoadResult,
    RenderedEdition,
    Subscriber,
)
from digest.send.base import ONE_CLICK, BatchMessage, OutgoingMessage, Recipient, Sender, make_sender
from digest.send.personalize import PersonalizationPool, PersonalizationSpec, Personalizer
from digest.subscribers import category_set_keys

log = logging.getLogger(__name__)

BATCH_SIZE = 1000

QUEUE_AHEAD = 8  # SendGrid: bodies built and waiting for the poster thread (bounds memory)
ANSWER_DELAY = 0.05
# Sends of at least POOL_MIN_READERS build big batches' personalizations in a second process.
POOL_MIN_READERS = 50_000
POOL_MIN_BATCH = 64  # seconds an answer may wait to be written with the next batch's start
PAGE = 10_000  # readers read (and checked against the ledger) per query
LOCK_SECONDS = 300
# Recipients held back waiting for their group's batch to fill. Readers arrive set by set and each
# set's batches go at its end, so only many variants of one set (readers who already had some of
# its posts) come near this; past it the biggest groups go out part-full, keeping memory bounded.
MAX_BUFFERED = 200_000
NOTHING_NEW = "nothing new in their categories"
ALL = "all"


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InFlightBatch:
    """A batch a previous run sent without recording the answer (see the crash choice above)."""

    id: int
    category_set: str
    recipients: int
    since: datetime | None


@dataclass
class Progress:
    processed: int  # subscribers looked at
    total: int | None  # active subscribers when the run began
    sent: int
    skipped: int
    failed: int


@dataclass
class SendSummary:
    """What a run did: counts, reasons, and what needs a decision."""

    edition_id: str
    dry_run: bool = False
    sender: str = ""
    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> readers
    failed: Counter[str] = field(default_factory=Counter)  # reason -> readers
    already_sent: int = 0
    batches: int = 0
    batches_failed: int = 0
    requests: int = 0
    category_sets: int = 0
    renders: int = 0
    in_flight: list[InFlightBatch] = field(default_factory=list)
    resent_in_flight: int = 0
    stopped: str = ""  # why the run stopped early (bad key), or ""
    send_at: datetime | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def ok(self) -> bool:
        return not self.stopped and not self.failed and not self.in_flight

    def __str__(self) -> str:
        verb = "would send" if self.dry_run else "sent"
        parts = [f"{self.sent} {verb} in {self.batches} batch(es)"]
        if self.already_sent:
            parts.append(f"{self.already_sent} already sent earlier")
        if self.skipped:
            parts.append(f"{self.skipped_total} skipped ({_reasons(self.skipped)})")
        if self.failed:
            parts.append(f"{self.failed_total} failed ({_reasons(self.failed)})")
        text = "; ".join(parts) + "."
        if self.in_flight:
            n = sum(b.recipients for b in self.in_flight)
            text += (
                f" {len(self.in_flight)} batch(es) ({n} readers) were in flight when an earlier run "
                "stopped and were not resent; check the provider's activity, then use "
                "--resend-in-flight if they did not go out."
            )
        if self.stopped:
            text += f" Stopped: {self.stopped}"
        for note in self.notes:
            text += f" Note: {note}."
        return text


def _reasons(counter: Counter[str]) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in counter.most_common())


# -- the edition lock -----------------------------------------------------------------------


class EditionLock:
    """``editions.lock_owner``/``lock_expires`` as a lease: taken with one conditional UPDATE."""

    def __init__(self, store: Any, edition_id: str, *, seconds: int = LOCK_SECONDS) -> None:
        self.store = store
        self.edition_id = edition_id
        self.seconds = seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renewed = 0.0

    def acquire(self) -> None:
        from digest.store import editions, utcnow

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
            taken = s.execute(
                update(editions)
                .where(editions.c.id == self.edition_id, free)
                .values(lock_owner=self.owner, lock_expires=now + timedelta(seconds=self.seconds))
            ).rowcount
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
        from digest.store import DatabaseBusyError, editions, utcnow

        try:
            with self.store.session() as s:
                ok = s.execute(
                    update(editions)
                    .where(editions.c.id == self.edition_id, editions.c.lock_owner == self.owner)
                    .values(lock_expires=utcnow() + timedelta(seconds=self.seconds))
                ).rowcount
        except DatabaseBusyError as exc:  # retryable: say so, and that nothing sent is lost
            raise DatabaseBusyError(
                f"could not renew the send lock on edition {self.edition_id}: {exc} Readers already "
                f"sent are recorded; run the same command again to send the rest."
            ) from exc
        if ok != 1:
            raise SendError(f"Lost the lock on edition {self.edition_id} to another run; stopping.")
        self._renewed = time.monotonic()

    def release(self) -> None:
        from digest.store import editions

        with self.store.session() as s:
            s.execute(
                update(editions)
                .where(editions.c.id == self.edition_id, editions.c.lock_owner == self.owner)
                .values(lock_owner=None, lock_expires=None)
            )


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


# -- building the emails --------------------------------------------------------------------


@dataclass
class _Variant:
    """One rendered email: a category set, minus posts some readers already have."""

    key: tuple[tuple[str, ...], frozenset[str]]
    rendered: RenderedEdition | None  # None: nothing new for these readers
    post_ids: tuple[str, ...]
    category_set: str  # unique per email within the edition: what deliveries and edition_posts name
    note: bool = False
    prefix: str | None = None  # SendGrid: the request body up to the personalizations
    recorded: bool = False  # its edition_posts rows are written


class _Builder:
    """Builds and renders each (category set, posts left out) once; each section compiled once."""

    def __init__(
        self,
        config: Config,
        *,
        window: tuple[datetime, datetime],
        edition_id: str,
        posts: LoadResult,
        recorded: dict[str, frozenset[str]] | None = None,
    ):
        from digest.isolate import PostIsolator
        from digest.render import Renderer

        self.config = config
        self.window = window
        self.edition_id = edition_id
        self.posts = posts
        start, end = window
        # Every post that can be in this edition: what the ledger is asked about.
        self.candidates = frozenset(p.path for p in posts.posts if p.published and start <= p.date < end)
        self._cache: dict[tuple[tuple[str, ...], frozenset[str]], _Variant] = {}
        self.category_sets: set[tuple[str, ...]] = set()
        self.renders = 0
        self._assembler = Renderer(config).assembler()
        self._isolator = PostIsolator(self._assembler.render)  # a post that breaks the email is left out
        # What an earlier run of this edition recorded per email name (a rerun must not reuse a
        # name for a different list of posts: the ledger would then claim posts nobody got).
        self._recorded = recorded or {}

    def variant(self, categories: tuple[str, ...], exclude: frozenset[str]) -> _Variant:
        key = (categories, exclude)
        found = self._cache.get(key)
        if found is not None:
            return found
        if self._cache and next(iter(self._cache))[0] != categories:
            # Readers arrive grouped by category set, so a finished set's emails are not asked
            # for again; keeping them all would grow memory with the number of sets.
            self._cache.clear()
        self.category_sets.add(categories)
        posts = self.posts
        if exclude:
            posts = LoadResult(tuple(p for p in posts.posts if p.path not in exclude), posts.skipped)
        edition = self._edition(categories, posts)
        label = category_label(categories)
        if exclude:
            label += f" (less {len(exclude)} received, {_digest(sorted(exclude))})"
        if edition.post_count == 0:
            if self.config.edition.nothing_new == "note":
                variant = _Variant(key, nothing_new_note(self.config, edition), (), label, note=True)
            else:
                variant = _Variant(key, None, (), label)
        else:
            try:
                edition, rendered = self._isolator.render(edition)
            except EmptyEditionError:
                rendered = None
            self.renders += 1
            post_ids = tuple(i.post_path for i in edition.items)
            before = self._recorded.get(label)
            if before is not None and before != frozenset(post_ids):
                label += f" #{_digest(sorted(post_ids))}"
            variant = _Variant(key, rendered, post_ids, label)
        self._cache[key] = variant
        return variant

    def _edition(self, categories: tuple[str, ...], posts: LoadResult) -> Edition:
        """The set's edition; pipeline caches each post's summary, so a send summarises it once."""
        return pipeline.build_edition(
            self.config,
            as_of=self.window[1],
            categories=list(categories),
            window=self.window,
            edition_id=self.edition_id,
            posts=posts,
        )


def _digest(parts: Iterable[str]) -> str:
    import hashlib

    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:8]


def category_label(categories: Sequence[str]) -> str:
    """How a category set is written in the database and reports: keys joined by ', '."""
    return ", ".join(categories) if categories else ALL


def nothing_new_note(config: Config, edition: Edition) -> RenderedEdition:
    """The short note for a reader with nothing new (edition.nothing_new = "note")."""
    from html import escape

    site = config.site
    subject = f"{site.name}: nothing new this week"
    text = (
        f"Nothing new in your categories this week.\n\n"
        f"Choose your categories: {PREFERENCES_URL}\nUnsubscribe: {UNSUBSCRIBE_URL}\n\n{site.postal_address}\n"
    )
    html = (
        f'<!doctype html><html lang="{escape(site.language)}"><body>'
        f"<p>Nothing new in your categories this week.</p>"
        f'<p><a href="{PREFERENCES_URL}">Choose your categories</a> · '
        f'<a href="{UNSUBSCRIBE_URL}">Unsubscribe</a></p>'
        f"<p>{escape(site.postal_address)}</p></body></html>"
    )
    return RenderedEdition(subject=subject, preheader="", html=html, text=text)


class _PersonalLinks:
    """Per-recipient links and headers: one payload encode and two HMACs per reader."""

    def __init__(self, config: Config, edition_id: str) -> None:
        self.base_url = config.web.base_url
        self.secret = load_secret(config)
        self.links = LinkMaker(self.base_url, Signer(self.secret))
        self.personal_urls = self.links.personal_urls
        mailto = config.sender.unsubscribe_mailto.strip()
        if mailto and not mailto.startswith("mailto:"):
            mailto = f"mailto:{mailto}"
        self.mailto = f", <{mailto}?subject=unsubscribe>" if mailto else ""
        self.edition_id = edition_id

    def recipient(self, sub: Subscriber) -> Recipient:
        return self.member(sub.id, sub.email, sub.name)

    def member(self, sid: int, email: str, name: str) -> Recipient:
        preferences, unsubscribe = self.personal_urls(email)
        return Recipient(
            email=email,
            substitutions={PREFERENCES_URL: preferences, UNSUBSCRIBE_URL: unsubscribe},
            headers={"List-Unsubscribe": f"<{unsubscribe}>{self.mailto}", "List-Unsubscribe-Post": ONE_CLICK},
            custom_args={"subscriber_id": str(sid)},
            name=name,
        )

    def spec(self, shared_args: dict[str, str]) -> PersonalizationSpec:
        """What builds SendGrid personalizations (in this process or the worker)."""
        return PersonalizationSpec(self.base_url, self.secret, self.mailto, tuple(shared_args.items()))


# -- the database side ----------------------------------------------------------------------

_DONE = ("sent", "in_flight")


class _Ledger:
    """The tables the delivery engine writes: batches, deliveries, edition_posts.

    Hot paths are plain SQL through the DB-API (executemany, or one statement over a JSON/array
    list of ids): a million deliveries must not mean a million bound-parameter dicts. The ledger
    of posts received is per email, not per reader: ``edition_posts`` holds the posts each
    email (deliveries.category_set) of an edition carried. A batch's readers are written once,
    as a list on its row, and moved into ``deliveries`` in bulk by ``materialize``.
    """

    def __init__(self, store: Any, edition_id: str, *, per_reader: bool = False) -> None:
        from digest import store as st

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
            "'in_flight' ELSE 'failed' END, b.id, b.category_set, CASE WHEN b.state = 'accepted' "
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
        self._sql_batch_done = f"UPDATE batches SET state = {q}, provider_message_id = {q}, error = {q}, updated_at = {q} WHERE id = {q}"

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
            f"AND state IN ('sent', 'in_flight') AND subscriber_id {self._in_ids}"
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
            for chunk in _chunks(cands, 500):
                new.update(
                    r[0]
                    for r in c.execute(
                        select(ep.c.post_id)
                        .where(ep.c.post_id.in_(chunk), ep.c.edition_id != self.edition_id)
                        .distinct()
                    )
                )
            if c.execute(select(rp.c.post_id).limit(1)).first() is not None:
                for chunk in _chunks(cands, 500):
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
                    f"AND d.state IN ('sent', 'in_flight') AND ep.post_id {in_posts}"
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

    def begin_batch(self, variant: _Variant, ids: list[int]) -> int:
        """The batch in flight, its readers listed on it, and the email's posts once, before the
        request (SMTP and the outbox, batch by batch; the SendGrid poster calls
        ``record_in_flight`` on its own connection)."""
        raw = self.raw_connection()
        try:
            return self.record_in_flight(raw, variant, ids, None)
        finally:
            raw.close()

    # Batch records: plain DB-API (the poster keeps a connection of its own). SQLAlchemy's work per
    # statement (a few hundred microseconds a batch) sat on the thread every request waits for.

    def raw_connection(self) -> Any:
        return self.store.engine.raw_connection()

    def record_in_flight(
        self, raw: Any, variant: _Variant, ids: list[int], answered: _Finished | None
    ) -> int:
        """``begin_batch`` on the poster's connection: one transaction, one commit."""
        now = self._ts(self.st.utcnow())

        def write(cursor: Any) -> int:
            if answered is not None:
                cursor.execute(self._sql_batch_done, self._answer_values(answered, now))
            if not variant.recorded and variant.post_ids:
                cursor.executemany(
                    self._sql_posts, [(self.edition_id, variant.category_set, p) for p in variant.post_ids]
                )
            cursor.execute(
                self._sql_batch,
                (self.edition_id, variant.category_set, "in_flight", len(ids), now, now, json.dumps(ids)),
            )
            return int(cursor.fetchone()[0])

        batch_id = self._raw_transaction(raw, write)
        variant.recorded = True
        return batch_id

    def record_answer(self, raw: Any, answered: _Finished) -> None:
        now = self._ts(self.st.utcnow())
        self._raw_transaction(
            raw, lambda c: c.execute(self._sql_batch_done, self._answer_values(answered, now))
        )

    def _answer_values(self, done: _Finished, now: Any) -> tuple[Any, ...]:
        """``_sql_batch_done``'s values: accepted with the message id, or failed with the error."""
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

    def finish(self, finished: Sequence[_Finished]) -> None:
        if not finished:
            return
        now = self._ts(self.st.utcnow())
        with self.store.engine.begin() as conn:
            for done in finished:
                self._finish(conn, done, now)

    def _finish(self, conn: Any, done: _Finished, now: Any) -> None:
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
        b = self.st.batches
        with self.store.reading() as c:
            rows = c.execute(
                select(b.c.id, b.c.category_set, b.c.recipients, b.c.created_at)
                .where(b.c.edition_id == self.edition_id, b.c.state == "in_flight")
                .order_by(b.c.id)
            ).all()
        return [InFlightBatch(r.id, r.category_set, r.recipients, r.created_at) for r in rows]

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


@dataclass
class _Finished:
    """The answer to one batch, waiting to be written."""

    batch_id: int
    ids: list[int]
    message_id: str | None = None
    failed: dict[int, str] = field(default_factory=dict)
    error: str | None = None


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# -- the run --------------------------------------------------------------------------------

# (subscriber id, email, name): what a buffered reader costs, instead of a Subscriber.
_Member = tuple[int, str, str]
# (subscriber id, email, name, category set): what subscribers.iter_send_rows streams.
_Row = tuple[int, str, str, str]


@dataclass
class _Group:
    variant: _Variant
    members: list[_Member] = field(default_factory=list)


@dataclass
class _Posting:
    """A SendGrid batch handed to a posting thread (already recorded in flight)."""

    variant: _Variant
    batch_id: int
    ids: list[int]
    parts: str | Future[str]  # the comma-joined personalizations, or the worker's promise of them
    message_id: str | None = None
    error: BaseException | None = None


class _Poster:
    """Records and posts SendGrid batches from another thread, in the order they were built.

    For each batch, one transaction writes the answer to the batch before and this one in
    flight; then the request goes out. So only the batch whose request is out is ever
    undecided, as with a plain loop, while the main thread builds the next bodies; a body not
    yet recorded when a run dies left no trace, and the next run sends it. The main thread
    reads the answers only for the summary.
    """

    def __init__(self, sender: Any, ledger: _Ledger, *, queue_size: int) -> None:
        import queue
        import threading

        self.sender = sender
        self.ledger = ledger
        self.todo: queue.Queue[_Posting | None] = queue.Queue(maxsize=queue_size)
        self.done: queue.Queue[_Posting] = queue.Queue()
        self.stop = threading.Event()  # a 401: nothing more goes out
        self.pending = 0
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        self.raw = self.ledger.raw_connection()
        try:
            self._loop()
        finally:
            self.raw.close()

    def _loop(self) -> None:
        import queue

        answered: _Finished | None = None  # the last answer, written with the next batch's start
        while True:
            try:
                job = self.todo.get(timeout=None if answered is None else ANSWER_DELAY)
            except queue.Empty:  # nothing more came soon: write the answer on its own
                answered = self._write(answered)
                continue
            if job is None:
                break
            data = None
            if self.stop.is_set():
                job.error = SendError("not sent: the run stopped (the provider refused the API key)")
            else:
                data = self._body(job)
            if data is not None:
                try:
                    job.batch_id = self.ledger.record_in_flight(self.raw, job.variant, job.ids, answered)
                except Exception as exc:  # not recorded in flight, so not sent (a rerun sends it)
                    job.error = SendError(
                        f"not sent: could not record the batch ({type(exc).__name__}: {exc})"
                    )
                else:
                    answered = None
                    self._post(job, data)
            answered = self._write(answered)  # only when begin_batch did not write it
            if job.batch_id:  # an unrecorded batch has no row to answer (a rerun sends it)
                answered = _finished(job)
            job.parts = ""
            self.done.put(job)
        self._write(answered)

    def _body(self, job: _Posting) -> str | None:
        """The request body (waiting for the worker if it builds it); None and job.error if not."""
        try:
            parts = job.parts.result() if isinstance(job.parts, Future) else job.parts
            return self.sender.prepared_body(job.variant.prefix, parts, len(job.ids))
        except SendError as exc:
            job.error = exc
        except Exception as exc:  # the worker died: not sent, and a rerun sends it
            job.error = SendError(f"not sent: building the request failed ({type(exc).__name__}: {exc})")
        return None

    def _post(self, job: _Posting, data: str) -> None:
        try:
            job.message_id = self.sender.post_prepared(data)
        except ProviderAuthError as exc:
            self.stop.set()
            job.error = exc
        except SendError as exc:
            job.error = exc
        except Exception as exc:
            job.error = SendError(f"{type(exc).__name__}: {exc}")

    def _write(self, answered: _Finished | None) -> None:
        if answered is not None:
            try:
                self.ledger.record_answer(self.raw, answered)
            except Exception:  # left in flight: reported by the next run, never resent on its own
                log.exception("Could not record the answer to batch %d", answered.batch_id)
        return None

    def put(self, job: _Posting) -> None:
        self.pending += 1
        self.todo.put(job)

    def ready(self, wait: bool = False) -> list[_Posting]:
        import queue

        out: list[_Posting] = []
        while self.pending:
            try:
                job = self.done.get(block=wait and not out)
            except queue.Empty:
                break
            self.pending -= 1
            out.append(job)
        return out

    def close(self) -> None:
        self.todo.put(None)
        self.thread.join()


def _finished(job: _Posting) -> _Finished:
    if job.error is None:
        return _Finished(job.batch_id, job.ids, message_id=job.message_id)
    return _Finished(job.batch_id, job.ids, error=str(job.error))


class _Run:
    def __init__(
        self,
        config: Config,
        store: Any,
        *,
        edition_id: str,
        window: tuple[datetime, datetime],
        posts: LoadResult,
        sender: Sender | None,
        sender_name: str,
        dry_run: bool,
        send_at: datetime | None,
        resend_in_flight: bool,
        progress: Callable[[Progress], None] | None,
        batch_size: int,
        max_buffered: int,
    ) -> None:
        self.config = config
        self.store = store
        self.edition_id = edition_id
        self.window = window
        self.posts = posts
        self.sender = sender
        self.dry_run = dry_run
        self.send_at = send_at
        self.resend_in_flight = resend_in_flight
        self.progress = progress
        self.batch_size = min(batch_size, BATCH_SIZE)
        self.max_buffered = max_buffered
        self.builder = _Builder(config, window=window, edition_id=edition_id, posts=posts)
        self.personal_links = _PersonalLinks(config, edition_id)
        # SendGrid: bodies from pre-encoded pieces, posted from another thread.
        self.prepared = sender is not None and hasattr(sender, "post_prepared")
        self.ledger = _Ledger(store, edition_id, per_reader=not self.prepared)
        self.summary = SendSummary(edition_id, dry_run=dry_run, sender=sender_name, send_at=send_at)
        self.groups: dict[tuple[tuple[str, ...], frozenset[str]], _Group] = {}
        # The category set being streamed, its keys, and its group (or empty variant) when no
        # post is left out: one comparison per reader instead of a dict look-up.
        self._current_set: str | None = None
        self._current_keys: tuple[str, ...] = ()
        self._current_plain: _Group | _Variant | None = None
        self.buffered = 0
        self.processed = 0
        self.total: int | None = None
        self.lock: EditionLock | None = None
        self.suppressed: dict[str, str] = {}
        self.sendgrid_batch_id: str | None = None
        # SendGrid: what builds readers' personalizations, here or in the worker process.
        self.spec = self.personal_links.spec({"edition": edition_id})
        self.personalizer = Personalizer(self.spec) if self.prepared else None
        self.pool: PersonalizationPool | None = None  # large SendGrid sends: a second process
        self.poster: _Poster | None = None
        self.auth_error: ProviderAuthError | None = None

    # the steps

    def run(self) -> SendSummary:
        started = time.monotonic()
        from digest import subscribers as subs

        self.total = subs.count_by_status(self.store).get("active", 0)
        self._pull_suppressions()
        if not self.dry_run:
            self._prepare_edition()
            # What a run that died left in batch rows reaches deliveries before anything reads it.
            self.ledger.materialize(other_editions=True)
            self.builder._recorded = self.ledger.recorded()
        try:
            if not self.dry_run:
                self._in_flight()
                self._mark_suppressed()
            # The common case needs no per-reader look-ups: a first run, and no post of this window
            # in an earlier edition.
            self.check_done = not self.dry_run and self.ledger.any_done()
            self.before_new, self.before_old = self.ledger.sent_before(self.builder.candidates)
            if self.prepared and not self.dry_run:
                self.poster = _Poster(self.sender, self.ledger, queue_size=QUEUE_AHEAD)
                if (self.total or 0) >= POOL_MIN_READERS and (os.cpu_count() or 1) > 1:
                    self.pool = PersonalizationPool(self.spec)
            self._stream(subs.iter_send_rows(self.store, statuses=("active",), page=PAGE))
            self._flush_all()
            self._drain(wait=True)
            if self.auth_error is not None:
                raise self.auth_error
            if not self.dry_run:
                self._finish_edition()
        except ProviderAuthError as exc:
            self.summary.stopped = str(exc)
            raise
        finally:
            if self.poster is not None:
                try:
                    self._drain(wait=True)
                finally:
                    self.poster.close()
                    if self.pool is not None:
                        self.pool.close()
            if self.lock is not None:
                try:
                    self.ledger.materialize()
                finally:
                    self.lock.release()
            if self.sender is not None and hasattr(self.sender, "requests"):
                self.summary.requests = int(self.sender.requests)
            self.summary.category_sets = len(self.builder.category_sets)
            self.summary.renders = self.builder.renders
            self.summary.seconds = time.monotonic() - started
        return self.summary

    def _pull_suppressions(self) -> None:
        """SendGrid's bounce, spam report and global unsubscribe lists, before anything is built."""
        fetch = getattr(self.sender, "suppressions", None)
        if fetch is None:
            return
        self.suppressed = fetch()

    def _prepare_edition(self) -> None:
        from digest import editions as edition_store
        from digest.schedule import Window
        from digest.store import editions

        record = edition_store.get_edition(self.store, self.edition_id)
        if record is None:
            all_edition = pipeline.build_edition(
                self.config,
                as_of=self.window[1],
                window=self.window,
                edition_id=self.edition_id,
                posts=self.posts,
            )
            manifest = pipeline.manifest(all_edition, None, self.config)
            record = edition_store.record_edition(
                self.store, edition_id=self.edition_id, window=Window(*self.window), manifest=manifest
            )
        if record.status == "cancelled":
            raise SendError(
                f"Edition {self.edition_id} was cancelled; it will not be sent. Its posts go in the next edition."
            )
        lock = EditionLock(self.store, self.edition_id)
        lock.acquire()
        self.lock = lock  # only now: the run's end writes under the lock, then releases it
        values: dict[str, Any] = {"status": "sending"} if record.status == "building" else {}
        if self.send_at is not None:
            with self.store.reading() as c:
                existing = c.execute(
                    select(editions.c.sendgrid_batch_id).where(editions.c.id == self.edition_id)
                ).scalar()
            new_batch = getattr(self.sender, "new_batch_id", None)
            if new_batch is None:
                raise SendError(
                    "--send-at needs the sendgrid sender (scheduled sends are a SendGrid feature)."
                )
            self.sendgrid_batch_id = existing or new_batch()
            values.update(sendgrid_batch_id=self.sendgrid_batch_id, send_at=self.send_at)
        if values:
            with self.store.session() as s:
                s.execute(update(editions).where(editions.c.id == self.edition_id).values(**values))

    def _in_flight(self) -> None:
        batches = self.ledger.in_flight()
        if not batches:
            return
        if self.resend_in_flight:
            self.ledger.release_in_flight([b.id for b in batches])
            self.summary.resent_in_flight = sum(b.recipients for b in batches)
            log.warning(
                "Resending %d in-flight batch(es) of edition %s on request", len(batches), self.edition_id
            )
        else:
            self.summary.in_flight = batches
            log.warning(
                "Edition %s: %d batch(es) were in flight when a run stopped; not resending them",
                self.edition_id,
                len(batches),
            )

    def _mark_suppressed(self) -> None:
        """Readers on SendGrid's lists get our matching status, so nothing else mails them either."""
        if not self.suppressed:
            return
        from digest import subscribers as subs
        from digest.errors import StoreError

        for email, status in self.suppressed.items():
            current = None
            try:
                current = subs.get(self.store, email)
            except StoreError:
                continue
            if current is not None and current.status == "active":
                subs.set_status(
                    self.store, email, status, source="sendgrid", detail={"via": "suppression list"}
                )

    def _stream(self, readers: Iterable[_Row]) -> None:
        page: list[_Row] = []
        for row in readers:
            page.append(row)
            if len(page) >= PAGE:
                self._page(page)
                page = []
        if page:
            self._page(page)

    def _page(self, page: list[_Row]) -> None:
        """One page of readers in (category set, id) order: each set's batches fill, then flush at its end."""
        ids = [r[0] for r in page] if self.check_done or self.before_new or self.before_old else []
        done = self.ledger.done_among(ids) if self.check_done else ()
        received = (
            self.ledger.received(ids, self.before_new, self.before_old)
            if self.before_new or self.before_old
            else {}
        )
        skipped: list[tuple[int, str, str]] = []
        suppressed = self.suppressed
        summary = self.summary
        no_exclusions: frozenset[str] = frozenset()
        batch_size = self.batch_size
        current = self._current_set
        cats = self._current_keys
        plain: Any = self._current_plain
        for sid, email, name, label in page:
            if label != current:
                # Set boundary: nobody later has this set, so its part-full batches go now.
                self._flush_all(report=False)
                current, cats, plain = label, category_set_keys(label), None
            if done and sid in done:
                summary.already_sent += 1
                continue
            if suppressed:
                why = suppressed.get(email.casefold())
                if why:
                    summary.skipped[f"on SendGrid's {why} list"] += 1
                    skipped.append((sid, category_label(cats), f"suppressed by SendGrid ({why})"))
                    continue
            have = received.get(sid) if received else None
            group: Any = None if have else plain
            if group is None:
                variant = self.builder.variant(cats, frozenset(have) if have else no_exclusions)
                if variant.rendered is None:
                    if not have:
                        plain = variant
                    summary.skipped[NOTHING_NEW] += 1
                    skipped.append((sid, variant.category_set, NOTHING_NEW))
                    continue
                group = self.groups.get(variant.key)
                if group is None:
                    group = self.groups[variant.key] = _Group(variant)
                if not have:
                    plain = group
            elif group.__class__ is _Variant:  # nothing new for this set
                summary.skipped[NOTHING_NEW] += 1
                skipped.append((sid, group.category_set, NOTHING_NEW))
                continue
            members = group.members
            members.append((sid, email, name))
            self.buffered += 1
            if len(members) >= batch_size:
                self._flush(group)
        self._current_set, self._current_keys, self._current_plain = current, cats, plain
        self.processed += len(page)
        if skipped and not self.dry_run:
            self.ledger.skip(skipped)
        if self.buffered > self.max_buffered:
            # Only many variants of one set (readers who had some posts already) get here.
            for group in sorted(self.groups.values(), key=lambda g: len(g.members), reverse=True):
                if self.buffered <= self.max_buffered // 2:
                    break
                self._flush(group)
        self._report()

    def _flush_all(self, *, report: bool = True) -> None:
        """Send every part-full batch (a category set ended, or the run did) and forget the groups."""
        for group in list(self.groups.values()):
            if group.members:
                self._flush(group)
        self.groups.clear()
        if report:
            self._report()

    def _flush(self, group: _Group) -> None:
        members, group.members = group.members, []
        self.buffered -= len(members)
        for chunk in _chunks(members, self.batch_size):
            if self.prepared:
                self._send_prepared(group.variant, chunk)
            else:
                self._send_batch(group.variant, chunk)

    def _batch_message(self, variant: _Variant, recipients: Sequence[Recipient]) -> BatchMessage:
        rendered = variant.rendered
        assert rendered is not None
        return BatchMessage(
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            recipients=recipients,
            categories=("digest", self.edition_id),
            custom_args={"edition": self.edition_id},
            send_at=int(self.send_at.timestamp()) if self.send_at else None,
            batch_id=self.sendgrid_batch_id,
        )

    def _send_prepared(self, variant: _Variant, members: list[_Member]) -> None:
        """SendGrid: the body from the email's prefix and one JSON fragment per reader."""
        if self.auth_error is not None:
            raise self.auth_error
        sender: Any = self.sender
        if variant.prefix is None:
            variant.prefix = sender.prepared_prefix(self._batch_message(variant, ()))
        assert self.personalizer is not None
        self.summary.batches += 1
        if self.dry_run:
            sender.prepared_body(variant.prefix, self.personalizer.build(members), len(members))
            self.summary.sent += len(members)
            return
        assert self.lock is not None and self.poster is not None
        self._drain()
        if self.auth_error is not None:
            raise self.auth_error
        # Big batches' personalizations are built by the worker while this thread goes on.
        parts: str | Future[str] = (
            self.pool.submit(members)
            if self.pool is not None and len(members) >= POOL_MIN_BATCH
            else self.personalizer.build(members)
        )
        self.lock.renew()
        self.poster.put(_Posting(variant, 0, [m[0] for m in members], parts))  # waits when it is full

    def _drain(self, wait: bool = False) -> None:
        """Collect the poster's answers for the summary (it has written them to the database)."""
        if self.poster is not None:
            while True:
                for job in self.poster.ready(wait=wait):
                    self._answer(job)
                if not wait or not self.poster.pending:
                    break
        if wait:
            self._report()

    def _answer(self, job: _Posting) -> None:
        n = len(job.ids)
        if job.error is None:
            self.summary.sent += n
            return
        error = str(job.error)
        if isinstance(job.error, ProviderAuthError):
            self.summary.failed["provider refused the API key"] += n
            self.auth_error = job.error
            return
        if self.auth_error is not None or (self.poster is not None and self.poster.stop.is_set()):
            self.summary.failed["not sent: the run stopped"] += n
            return
        self.summary.batches_failed += 1
        self.summary.failed[_reason(error)] += n
        log.warning("Batch %d of edition %s failed: %s", job.batch_id, self.edition_id, error)

    def _send_batch(self, variant: _Variant, members: list[_Member]) -> None:
        member = self.personal_links.member
        recipients = [member(sid, email, name) for sid, email, name in members]
        batch = self._batch_message(variant, recipients)
        self.summary.batches += 1
        if self.dry_run:
            builder = getattr(self.sender, "batch_body", None)
            if builder is not None:
                builder(batch)  # the same limits a real send checks
            self.summary.sent += len(members)
            return
        assert self.lock is not None
        self.lock.renew()
        ids = [m[0] for m in members]
        by_email = {m[1]: m[0] for m in members}
        batch_row = self.ledger.begin_batch(variant, ids)
        assert self.sender is not None
        try:
            result = self.sender.send_batch(batch)
        except ProviderAuthError as exc:
            self.ledger.finish([_Finished(batch_row, ids, error=str(exc))])
            self.summary.failed["provider refused the API key"] += len(members)
            raise
        except SendError as exc:
            self.ledger.finish([_Finished(batch_row, ids, error=str(exc))])
            self.summary.batches_failed += 1
            self.summary.failed[_reason(str(exc))] += len(members)
            log.warning("Batch %d of edition %s failed: %s", batch_row, self.edition_id, exc)
            return
        failed = {by_email[e]: reason for e, reason in result.failed.items() if e in by_email}
        ids_seen = set(result.message_ids.values())
        message_id = next(iter(ids_seen)) if len(ids_seen) == 1 else None
        self.ledger.finish([_Finished(batch_row, ids, message_id=message_id, failed=failed)])
        if len(ids_seen) > 1:
            self.ledger.per_recipient_ids(batch_row, {by_email[e]: m for e, m in result.message_ids.items()})
        for reason in failed.values():
            self.summary.failed[_reason(reason)] += 1
        self.summary.sent += len(members) - len(failed)

    def _finish_edition(self) -> None:
        """Everyone was looked at: the edition is sent (failures and in-flight stay reported)."""
        from digest.store import editions, utcnow

        with self.store.session() as s:
            s.execute(
                update(editions)
                .where(editions.c.id == self.edition_id, editions.c.status.in_(("building", "sending")))
                .values(status="sent", sent_at=utcnow())
            )

    def _report(self) -> None:
        if self.progress is not None:
            s = self.summary
            self.progress(
                Progress(self.processed, self.total, s.sent, s.skipped_total + s.already_sent, s.failed_total)
            )


def _reason(message: str) -> str:
    """A failure message shortened to a reason that groups well in the summary."""
    text = message.split(": ", 1)[-1] if message.count(": ") and "@" in message.split(": ", 1)[0] else message
    return text[:120]


# -- public API -----------------------------------------------------------------------------


def resolve_window(config: Config, as_of: datetime, store: Any | None = None, edition_id: str | None = None):  # type: ignore[no-untyped-def]
    """The edition id and window for a run at ``as_of``: a stored edition's window wins (a rerun)."""
    from digest.select import window_for

    start, end = window_for(as_of, config.edition.window_days)
    eid = edition_id or pipeline.edition_id_for(end, config)
    if store is not None:
        from digest import editions as edition_store

        record = edition_store.get_edition(store, eid)
        if record is not None:
            return eid, (record.window_start, record.window_end)
    return eid, (start, end)


def deliver(
    config: Config,
    store: Any,
    *,
    as_of: datetime | None = None,
    edition_id: str | None = None,
    window: tuple[datetime, datetime] | None = None,
    posts: LoadResult | None = None,
    sender: Sender | None = None,
    sender_name: str | None = None,
    outbox: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    send_at: datetime | None = None,
    resend_in_flight: bool = False,
    progress: Callable[[Progress], None] | None = None,
    batch_size: int = BATCH_SIZE,
    max_buffered: int = MAX_BUFFERED,
) -> SendSummary:
    """Send edition ``edition_id`` (default: the ISO week of ``as_of``) to every active subscriber.

    Safe to run again: only readers not yet sent get it. Raises ProviderAuthError (the key is
    wrong: nothing more can go out) and SendError (another run holds the edition's lock).
    """
    if as_of is None:
        as_of = datetime.now(UTC)
    if window is None or edition_id is None:
        eid, win = resolve_window(config, as_of, store, edition_id)
        edition_id = edition_id or eid
        window = window or win
    if send_at is not None:
        if send_at.tzinfo is None:
            raise SendError("--send-at needs a time zone (or is read in site.timezone by the CLI).")
        ahead = (send_at - datetime.now(UTC)).total_seconds()
        if ahead > 72 * 3600:
            raise SendError("--send-at can be at most 72 hours ahead (SendGrid's limit).")
    name = sender_name or (sender.name if sender is not None else config.sender.backend)
    notes: list[str] = []
    if sender is None and not dry_run:
        sender = make_sender(config, name, outbox=outbox)
    elif sender is None and name == "sendgrid":
        # A dry run still asks SendGrid for its suppression lists, so the counts match a real send.
        try:
            sender = make_sender(config, name)
        except DigestError as exc:
            notes.append(f"SendGrid's suppression lists were not checked ({exc})")
    loaded = posts if posts is not None else pipeline.load(config)
    run = _Run(
        config,
        store,
        edition_id=edition_id,
        window=window,
        posts=loaded,
        sender=sender,
        sender_name=name,
        dry_run=dry_run,
        send_at=send_at,
        resend_in_flight=resend_in_flight,
        progress=progress,
        batch_size=batch_size,
        max_buffered=max_buffered,
    )
    run.summary.notes.extend(notes)
    try:
        return run.run()
    finally:
        if sender is not None:
            sender.close()


def deliver_due(
    config: Config,
    store: Any,
    *,
    edition: Edition,
    due: Any,
    posts: LoadResult,
    sender_name: str | None = None,
    dry_run: bool = False,
    **kwargs: Any,
) -> SendSummary:
    """What ``digest run`` calls: send the edition the scheduler worked out (its id and window)."""
    return deliver(
        config,
        store,
        as_of=edition.window_end,
        edition_id=edition.id,
        window=(edition.window_start, edition.window_end),
        posts=posts,
        sender_name=sender_name,
        dry_run=dry_run,
        **kwargs,
    )


def send_test(
    config: Config,
    *,
    address: str,
    categories: Sequence[str] | None = None,
    as_of: datetime | None = None,
    sender: Sender | None = None,
    sender_name: str | None = None,
    outbox: str | os.PathLike[str] | None = None,
) -> str:
    """One copy of a category set's email to ``address``, subject marked [TEST]; nothing recorded."""
    as_of = as_of or datetime.now(UTC)
    eid, window = resolve_window(config, as_of)
    edition = pipeline.build_edition(
        config, as_of=window[1], categories=list(categories or ()) or None, window=window, edition_id=eid
    )
    edition, rendered = pipeline.render_isolated(config, edition)
    r = _PersonalLinks(config, eid).recipient(
        Subscriber(id=0, email=address, status="active", categories=tuple(categories or ()))
    )
    batch = BatchMessage(
        subject=f"[TEST] {rendered.subject}",
        html=rendered.html,
        text=rendered.text,
        recipients=[r],
        categories=("digest-test", eid),
        custom_args={"edition": eid, "test": "1"},
    )
    message: OutgoingMessage = batch.personalise(r)
    own = sender is None
    sender = sender or make_sender(config, sender_name, outbox=outbox)
    try:
        return sender.send_one(message)
    finally:
        if own:
            sender.close()


@dataclass
class EditionStatus:
    """What `digest status` shows."""

    edition_id: str
    status: str
    window_start: datetime
    window_end: datetime
    sent_at: datetime | None
    send_at: datetime | None
    sendgrid_batch_id: str | None
    lock_owner: str | None
    deliveries: dict[str, int]  # state -> readers
    reasons: dict[str, int]  # error/skip reason -> readers (failed and skipped)
    batches: dict[str, int]  # state -> batches
    in_flight: list[InFlightBatch]
    category_sets: dict[str, int]  # category set -> readers sent


def edition_status(store: Any, edition_id: str) -> EditionStatus:
    from sqlalchemy import func

    from digest.store import batches, deliveries, editions

    with store.reading() as c:
        row = c.execute(select(editions).where(editions.c.id == edition_id)).first()
        if row is None:
            raise SendError(f"No edition {edition_id!r} in the database; `digest send` creates it.")
        states = dict(
            c.execute(
                select(deliveries.c.state, func.count())
                .where(deliveries.c.edition_id == edition_id)
                .group_by(deliveries.c.state)
            ).all()
        )
        reasons = dict(
            c.execute(
                select(deliveries.c.error, func.count())
                .where(deliveries.c.edition_id == edition_id, deliveries.c.state.in_(("failed", "skipped")))
                .group_by(deliveries.c.error)
            ).all()
        )
        batch_states = dict(
            c.execute(
                select(batches.c.state, func.count())
                .where(batches.c.edition_id == edition_id)
                .group_by(batches.c.state)
            ).all()
        )
        sets = Counter(
            dict(
                c.execute(
                    select(deliveries.c.category_set, func.count())
                    .where(deliveries.c.edition_id == edition_id, deliveries.c.state == "sent")
                    .group_by(deliveries.c.category_set)
                ).all()
            )
        )
        # Batches of a run still going (or one that died) whose readers are not in deliveries yet.
        pending = c.execute(
            select(batches.c.state, batches.c.category_set, batches.c.error, batches.c.recipients).where(
                batches.c.edition_id == edition_id, batches.c.pending_ids.is_not(None)
            )
        ).all()
    states = Counter(states)
    reasons = Counter(reasons)
    for state, category_set, error, recipients in pending:
        reader_state = {"accepted": "sent", "in_flight": "in_flight"}.get(state, "failed")
        states[reader_state] += recipients
        if reader_state == "sent":
            sets[category_set] += recipients
        elif reader_state == "failed":
            reasons[error] += recipients
    return EditionStatus(
        edition_id=edition_id,
        status=row.status,
        window_start=row.window_start,
        window_end=row.window_end,
        sent_at=row.sent_at,
        send_at=row.send_at,
        sendgrid_batch_id=row.sendgrid_batch_id,
        lock_owner=row.lock_owner if row.lock_expires and row.lock_expires > datetime.now(UTC) else None,
        deliveries={str(k): int(v) for k, v in states.items()},
        reasons={str(k or "?"): int(v) for k, v in reasons.items()},
        batches={str(k): int(v) for k, v in batch_states.items()},
        in_flight=_Ledger(store, edition_id).in_flight(),
        category_sets={str(k): int(v) for k, v in sets.items()},
    )


def cancel(config: Config, store: Any, edition_id: str, *, sender: Sender | None = None) -> EditionStatus:
    """Cancel a scheduled (--send-at) edition at SendGrid while it still allows, and record it.

    The edition becomes ``cancelled`` (the scheduler leaves it alone; its posts go in the next
    edition), its deliveries ``skipped`` ("cancelled") and its ledger rows are taken back.
    """
    from digest.store import deliveries, editions, received_posts, utcnow

    with store.reading() as c:
        row = c.execute(select(editions).where(editions.c.id == edition_id)).first()
    if row is None:
        raise SendError(f"No edition {edition_id!r} in the database; nothing to cancel.")
    if row.status == "cancelled":
        return edition_status(store, edition_id)
    if row.lock_owner and row.lock_expires and row.lock_expires > datetime.now(UTC):
        raise SendError(
            f"Edition {edition_id} is being sent right now ({row.lock_owner}); cancel it once "
            f"`digest status {edition_id}` shows the run has finished."
        )
    if not row.sendgrid_batch_id:
        raise SendError(
            f"Edition {edition_id} was not scheduled with --send-at, so it cannot be cancelled: "
            "what was sent is already on its way."
        )
    if row.send_at and row.send_at <= datetime.now(UTC):
        raise SendError(f"Edition {edition_id} was due at {row.send_at:%Y-%m-%d %H:%M} UTC and has gone out.")
    own = sender is None
    sender = sender or make_sender(config, "sendgrid")
    try:
        cancel_scheduled = getattr(sender, "cancel_scheduled", None)
        if cancel_scheduled is None:
            raise SendError("Cancelling needs the sendgrid sender.")
        try:
            cancel_scheduled(row.sendgrid_batch_id)
        except SendError as exc:
            raise SendError(
                f"SendGrid would not cancel edition {edition_id} ({exc}). A scheduled send can only be "
                "cancelled until about 10 minutes before its time."
            ) from None
    finally:
        if own:
            sender.close()
    _Ledger(store, edition_id).materialize()  # every reader it went to has a deliveries row
    now = utcnow()
    with store.session() as s:
        s.execute(update(editions).where(editions.c.id == edition_id).values(status="cancelled"))
        s.execute(
            update(deliveries)
            .where(deliveries.c.edition_id == edition_id, deliveries.c.state.in_(("sent", "in_flight")))
            .values(state="skipped", error="cancelled", updated_at=now)
        )
        s.execute(delete(received_posts).where(received_posts.c.edition_id == edition_id))
    return edition_status(store, edition_id)


def summary_json(summary: SendSummary) -> str:
    """The summary as JSON (for logs and the scheduler)."""
    data = {
        "edition": summary.edition_id,
        "dry_run": summary.dry_run,
        "sent": summary.sent,
        "already_sent": summary.already_sent,
        "skipped": dict(summary.skipped),
        "failed": dict(summary.failed),
        "batches": summary.batches,
        "requests": summary.requests,
        "in_flight": [b.id for b in summary.in_flight],
        "seconds": round(summary.seconds, 3),
    }
    return json.dumps(data, sort_keys=True)


__all__ = [
    "DigestError",
    "EditionStatus",
    "InFlightBatch",
    "Progress",
    "SendSummary",
    "cancel",
    "deliver",
    "deliver_due",
    "edition_status",
    "send_test",
]
