"""Delivering an edition: every active subscriber gets their own categories' email, exactly once.

How a send goes:

1. The edition comes as an ``EditionPlan`` (``digest.plan``, built once by ``digest.weekly``):
   its stable id (the ISO week its window ends in, e.g. ``2026-W02``), window, posts, manifest
   and check result. It gets a row in ``editions`` and the row's lock (``digest.editions``:
   a conditional UPDATE, renewed as batches go out), so two runs of one edition cannot both
   send. A lock left by a process that died on this host is taken over at once; one held
   elsewhere expires.
2. Subscribers stream from the database ordered by (category set, id)
   (``subscribers.iter_send_rows``, over the denormalised ``subscribers.category_set`` column
   and its index), so each set's readers arrive together: the set is rendered once, its batches
   go out full (1,000) and the last part-full one at the set's end, with no buffer across sets.
   Anyone already ``sent`` or ``in_flight`` for this edition is passed over, so a rerun only
   sends to those not yet sent (failed and skipped readers are looked at again).
3. Each reader's email is built from their category set, minus any post the ledger says they
   already have (``digest.send.variants``: each distinct (categories, posts left out) built
   from the plan and rendered once); only the personal links differ, filled per recipient
   (``digest.send.personalize``: SendGrid substitutions, or string replacement for SMTP and
   the outbox).
   Nothing new for a reader: no email (``skipped``), or a short note if
   ``edition.nothing_new = "note"``. Addresses on SendGrid's suppression lists (pulled before
   the send, dry runs included) are skipped and marked in the database.
4. Recipients of one rendered email go out in batches of at most 1,000 (``digest.send.dispatch``;
   the tables are ``digest.send.ledger``'s). Every batch is
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
   died (``Ledger.materialize``); ``digest status`` adds batches not yet written. Two writes per
   reader at scattered index pages were most of a million-reader send; this is one small row
   per batch.

The crash choice. A batch whose answer is unknown (the process died between the request and
the transaction that records the answer, or the request was written and no answer came: a read
timeout, a reset) is ``undecided``: the provider may have taken it, and SendGrid has no
idempotency key to ask with. It is **never resent blindly**; only failures while connecting or
writing the request are retried. Every request carries ``{"edition", "batch"}`` (the ledger's
batch id) in ``custom_args``, so the Event Webhook (``digest serve``, ``digest.send.webhook``)
settles an undecided batch to accepted when any processed/delivered/dropped/deferred/bounce
event names it; with the webhook configured, a batch with no event after
``sender.settle_after_seconds`` was not taken, and the next run resends it. Without the
webhook it stays listed undecided (``digest status``) until an operator checks the provider's
activity feed and runs ``digest send --resend-in-flight``. An unwanted duplicate in many
inboxes is worse than one late digest.

The lease is fenced: each acquire bumps ``editions.lock_token``, a batch is recorded in flight
only while this run's owner, token and an unexpired lease still match (from the posting
thread, renewing the lease in the same transaction), and no request or rate-limit wait starts
that the lease does not cover. One lease is live over the whole site, so editions go out one
at a time and each reads the ledger of posts received after the one before wrote it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from digest import editions
from digest import subscribers as subs
from digest.addresses import key as address_key
from digest.config import Config
from digest.errors import DigestError, ProviderAuthError, SendError, StoreError
from digest.model import Subscriber
from digest.plan import EditionPlan
from digest.send import make_sender
from digest.send.base import BatchMessage, BulkSender, OutgoingMessage, Sender
from digest.send.dispatch import (
    BATCH_SIZE,
    Batching,
    Dispatcher,
    PipelinedDispatcher,
    SerialDispatcher,
    send_in_batches,
)
from digest.send.ledger import Ledger
from digest.send.personalize import Member, PersonalLinks
from digest.send.summary import NOTHING_NEW, InFlightBatch, Progress, SendSummary
from digest.send.variants import Variant, VariantBuilder, VariantKey
from digest.store import Store, utcnow
from digest.subscribers import category_set_keys

log = logging.getLogger(__name__)

# Sends of at least POOL_MIN_READERS build big batches' personalizations in a second process.
POOL_MIN_READERS = 50_000
# How long a send waits for another edition's send to finish (editions go out one at a time).
EDITION_WAIT = 6 * 3600.0
PAGE = 10_000  # readers read (and checked against the ledger) per query
# How far before the stream's start a reader's change is looked for again (``_stream_changed``):
# the web app may run on another machine whose clock is a little behind.
CHANGED_MARGIN = timedelta(hours=1)
# Recipients held back waiting for their group's batch to fill. Readers arrive set by set and each
# set's batches go at its end, so only many variants of one set (readers who already had some of
# its posts) come near this; past it the biggest groups go out part-full, keeping memory bounded.
MAX_BUFFERED = 200_000

# (subscriber id, email, name, category set): what subscribers.iter_send_rows streams.
_Row = tuple[int, str, str, str]


@dataclass
class _Group:
    variant: Variant
    members: list[Member] = field(default_factory=list)


class _Run:
    """One send of a plan: stream readers, group them by email, hand full batches to the dispatcher."""

    def __init__(
        self,
        store: Store,
        plan: EditionPlan,
        *,
        sender: Sender | None,
        summary: SendSummary,
        resend_in_flight: bool,
        progress: Callable[[Progress], None] | None,
        batch_size: int,
        max_buffered: int,
    ) -> None:
        self.store = store
        self.plan = plan
        self.edition_id = plan.id
        self.sender = sender
        self.summary = summary
        self.dry_run = summary.dry_run
        self.resend_in_flight = resend_in_flight
        self.progress = progress
        self.batch_size = min(batch_size, BATCH_SIZE)
        self.max_buffered = max_buffered
        self.bulk: BulkSender | None = sender if isinstance(sender, BulkSender) else None
        self.builder = VariantBuilder(plan)
        self.ledger = Ledger(store, plan.id, per_reader=self.bulk is None)
        self.groups: dict[VariantKey, _Group] = {}
        # The category set being streamed, its keys, and its group (or empty variant) when no
        # post is left out: one comparison per reader instead of a dict look-up.
        self._current_set: str | None = None
        self._current_keys: tuple[str, ...] = ()
        self._current_plain: _Group | Variant | None = None
        self.buffered = 0
        self.processed = 0
        self.total: int | None = None
        self.lock: editions.EditionLock | None = None
        self.suppressed: dict[str, str] = {}
        self.dispatcher: Dispatcher | None = None
        self.check_done = False
        self.before_new: frozenset[str] = frozenset()
        self.before_old: frozenset[str] = frozenset()
        # Readers whose copy is undecided (in flight when a run stopped): passed over, reported as
        # undecided (summary.in_flight), never counted "already sent".
        self.undecided_ids: set[int] = set()
        # A dry run only: readers of batches a stopped run accepted but did not write to deliveries.
        self.unwritten_done: set[int] = set()
        # Every reader this run has met, one bit per subscriber id (125 KB for a million ids): a
        # reader whose categories change during the send is met again in their new set, and
        # must not get a second copy (see ``_stream_changed``).
        self.met = bytearray()

    # the steps

    def run(self) -> SendSummary:
        started = time.monotonic()
        self.total = subs.count_by_status(self.store).get("active", 0)
        if self.bulk is not None:  # before anything is built
            self.suppressed = self.bulk.suppressions()
        batching = Batching(self.edition_id, self.summary, self.ledger, None, send_at=self.summary.send_at)
        try:
            if not self.dry_run:
                self._start(batching)
                # What a run that died left in batch rows reaches deliveries before anything reads it.
                self.ledger.materialize(other_editions=True)
                self.builder.recorded = self.ledger.recorded()
                self._in_flight()
                self._mark_suppressed()
            else:  # what the real send would do now: the ledger is read, never written
                self.builder.recorded = self.ledger.recorded()
                if not self.resend_in_flight:
                    self.summary.in_flight = self.ledger.in_flight()
                self.unwritten_done, unwritten_undecided = _unwritten(self.store, self.edition_id)
                self.undecided_ids |= unwritten_undecided
            self.undecided_ids |= _undecided_ids(self.store, self.edition_id)
            # The common case needs no per-reader look-ups: a first run, and no post of this window
            # in an earlier edition.
            self.check_done = bool(self.undecided_ids or self.unwritten_done) or self.ledger.any_done()
            self.before_new, self.before_old = self.ledger.sent_before(self.plan.candidates)
            links = PersonalLinks(self.plan.config)
            if self.bulk is not None:
                pool = (self.total or 0) >= POOL_MIN_READERS and (os.cpu_count() or 1) > 1
                self.dispatcher = PipelinedDispatcher(
                    self.bulk, batching, links, pool=pool, max_in_flight=self.plan.config.sender.max_in_flight
                )
            else:
                self.dispatcher = SerialDispatcher(self.sender, batching, links)
            streamed_from = utcnow()
            self._stream(subs.iter_send_rows(self.store, statuses=("active",), page=PAGE))
            self._stream_changed(streamed_from)
            self._flush_all()
            self.dispatcher.drain(wait=True)
            self._report()
            if not self.dry_run:
                editions.mark_sent(self.store, self.edition_id)
        except ProviderAuthError as exc:
            self.summary.stopped = str(exc)
            raise
        finally:
            if self.dispatcher is not None:
                self.dispatcher.close()
            if self.lock is not None:
                try:
                    self.ledger.materialize()
                finally:
                    self.lock.release()
            if self.bulk is not None:
                self.summary.requests = self.bulk.requests
            self.summary.category_sets = len(self.builder.category_sets)
            self.summary.renders = self.builder.renders
            self.summary.seconds = time.monotonic() - started
        return self.summary

    def _start(self, batching: Batching) -> None:
        """Record the edition (the plan's manifest), take its lock, and mark it sending."""
        plan = self.plan
        record = editions.record_edition(
            self.store, edition_id=plan.id, window=plan.scheduled, manifest=plan.manifest
        )
        if record.status == "cancelled":
            raise SendError(
                f"Edition {plan.id} was cancelled; it will not be sent. Its posts go in the next edition."
            )
        if self.summary.send_at is not None and self.bulk is None:  # before the lock: nothing to undo
            raise SendError("--send-at needs the sendgrid sender (scheduled sends are a SendGrid feature).")
        lock = editions.EditionLock(self.store, plan.id)
        lock.acquire(wait=EDITION_WAIT)  # another edition sending: wait for it (one at a time)
        self.lock = batching.lock = lock  # only now: the run's end writes under the lock, then releases it
        if self.summary.send_at is not None and self.bulk is not None:
            batch_id = editions.sendgrid_batch_id(self.store, plan.id) or self.bulk.new_batch_id()
            batching.sendgrid_batch_id = batch_id
        editions.mark_sending(
            self.store, plan.id, sendgrid_batch_id=batching.sendgrid_batch_id, send_at=self.summary.send_at
        )

    def _in_flight(self) -> None:
        """Batches whose answer is unknown: undecided. With the Event Webhook configured, one
        with no event after ``sender.settle_after_seconds`` was not taken, and is resent."""
        self.ledger.mark_undecided()  # what a dead or fenced-off run left in flight
        batches = self.ledger.in_flight()
        if not batches:
            return
        config = self.plan.config
        if not self.resend_in_flight and config.web.sendgrid_webhook_public_key and self.bulk is not None:
            cutoff = datetime.now(UTC).timestamp() - config.sender.settle_after_seconds
            silent = [b for b in batches if b.since is not None and b.since.timestamp() <= cutoff]
            if silent:
                self.ledger.release_in_flight([b.id for b in silent])
                self.summary.resent_in_flight += sum(b.recipients for b in silent)
                log.warning(
                    "Edition %s: %d undecided batch(es) had no webhook event in %.0f s; resending them",
                    self.edition_id,
                    len(silent),
                    config.sender.settle_after_seconds,
                )
                batches = [b for b in batches if b not in silent]
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
        for email, status in self.suppressed.items():
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

    def _stream_changed(self, since: datetime) -> None:
        """Readers the stream passed over because they changed while it ran.

        The stream reads in (category set, id) order, a page per query. A reader who moves to a
        set it has already passed (new categories, or confirmed just now) would be missed, and one
        who moves to a set still ahead would be met twice (``met`` stops the second copy). So one
        more pass reads the active readers changed since the stream began (``updated_at``, with
        ``CHANGED_MARGIN`` for clocks that disagree) and sends whoever the first pass did not meet.
        """
        self._flush_all(report=False)
        self._current_set, self._current_keys, self._current_plain = None, (), None
        # ``_page`` passes over the readers this run met already, as it does within the stream.
        self._stream(subs.changed_send_rows(self.store, since - CHANGED_MARGIN, statuses=("active",)))

    def _page(self, page: list[_Row]) -> None:
        """One page of readers in (category set, id) order: each set's batches fill, then flush at its end."""
        ids = [r[0] for r in page] if self.check_done or self.before_new or self.before_old else []
        done = self.ledger.done_among(ids) if self.check_done else set()
        if self.unwritten_done or self.undecided_ids:
            done |= (self.unwritten_done | self.undecided_ids).intersection(ids)
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
        plain: _Group | Variant | None = self._current_plain
        met = self.met
        for sid, email, name, label in page:
            byte, bit = sid >> 3, 1 << (sid & 7)
            if byte >= len(met):
                met.extend(bytes(byte + 1 - len(met) + (byte >> 2)))  # grows by a quarter: amortised
            elif met[byte] & bit:
                continue  # met earlier in this run: the reader moved to a later set during the send
            met[byte] |= bit
            if label != current:
                # Set boundary: nobody later has this set, so its part-full batches go now.
                self._flush_all(report=False)
                current, cats, plain = label, category_set_keys(label), None
            if done and sid in done:
                if sid not in self.undecided_ids:
                    summary.already_sent += 1
                    continue
                if not (self.dry_run and self.resend_in_flight):
                    continue  # undecided: listed in summary.in_flight, not "already sent"
                # a dry run of --resend-in-flight: this reader would be sent again
            if suppressed:
                why = suppressed.get(address_key(email))
                if why:
                    summary.skipped[f"on SendGrid's {why} list"] += 1
                    skipped.append((sid, label, f"suppressed by SendGrid ({why})"))
                    continue
            have = received.get(sid) if received else None
            group: _Group | Variant | None = None if have else plain
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
            elif isinstance(group, Variant):  # nothing new for this set
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
        assert self.dispatcher is not None
        send_in_batches(self.dispatcher, group.variant, members, self.batch_size)

    def _report(self) -> None:
        if self.progress is not None:
            s = self.summary
            self.progress(
                Progress(self.processed, self.total, s.sent, s.skipped_total + s.already_sent, s.failed_total)
            )


def _undecided_ids(store: Store, edition_id: str) -> set[int]:
    """Readers of this edition whose copy is undecided in ``deliveries`` (a few batches at most)."""
    from sqlalchemy import select

    from digest.store import deliveries as d

    with store.reading() as c:
        rows = c.execute(
            select(d.c.subscriber_id).where(d.c.edition_id == edition_id, d.c.state.in_(UNDECIDED_STATES))
        )
        return {int(r[0]) for r in rows}


def _unwritten(store: Store, edition_id: str) -> tuple[set[int], set[int]]:
    """(accepted, undecided) readers of batches not yet written to ``deliveries`` (a dry run
    reads them as the real run's start would write them; failed ones are retried, so neither)."""
    import json

    from sqlalchemy import select

    from digest.store import batches as b

    accepted: set[int] = set()
    undecided: set[int] = set()
    with store.reading() as c:
        for state, ids in c.execute(
            select(b.c.state, b.c.pending_ids).where(
                b.c.edition_id == edition_id, b.c.pending_ids.is_not(None)
            )
        ):
            into = accepted if state == "accepted" else undecided if state in UNDECIDED_STATES else None
            if into is not None:
                into.update(int(i) for i in (json.loads(ids) if isinstance(ids, str) else ids))
    return accepted, undecided


# The ledger's names for a copy nobody can vouch for ("in_flight"; "undecided" once it is a state).
UNDECIDED_STATES = ("in_flight", "undecided")


# -- public API -----------------------------------------------------------------------------


def deliver(
    config: Config,
    store: Store,
    plan: EditionPlan,
    *,
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
    """Send the planned edition to every active subscriber (``digest.weekly`` makes the plan).

    Safe to run again: only readers not yet sent get it. Raises ProviderAuthError (the key is
    wrong: nothing more can go out) and SendError (another run holds the edition's lock).
    """
    if send_at is not None:
        if send_at.tzinfo is None:
            raise SendError("--send-at needs a time zone (or is read in site.timezone by the CLI).")
        ahead = (send_at - datetime.now(UTC)).total_seconds()
        if ahead > 72 * 3600:
            raise SendError("--send-at can be at most 72 hours ahead (SendGrid's limit).")
    name = sender_name or (sender.name if sender is not None else config.sender.backend)
    summary = SendSummary(plan.id, dry_run=dry_run, sender=name, send_at=send_at)
    if sender is None and not dry_run:
        sender = make_sender(config, name, outbox=outbox)
    elif sender is None and name == "sendgrid":
        # A dry run still asks SendGrid for its suppression lists, so the counts match a real send.
        try:
            sender = make_sender(config, name)
        except DigestError as exc:
            summary.notes.append(f"SendGrid's suppression lists were not checked ({exc})")
    run = _Run(
        store,
        plan,
        sender=sender,
        summary=summary,
        resend_in_flight=resend_in_flight,
        progress=progress,
        batch_size=batch_size,
        max_buffered=max_buffered,
    )
    try:
        return run.run()
    finally:
        if sender is not None:
            sender.close()


def send_test(
    config: Config,
    plan: EditionPlan,
    *,
    address: str,
    categories: Sequence[str] | None = None,
    sender: Sender | None = None,
    sender_name: str | None = None,
    outbox: str | os.PathLike[str] | None = None,
) -> str:
    """One copy of a category set's email to ``address``, subject marked [TEST]; nothing recorded."""
    address = subs.normalise_email(address)
    keys = tuple(categories or ())
    variant = VariantBuilder(plan).variant(keys, frozenset())
    rendered = variant.rendered
    if rendered is None:
        from digest.pipeline import display_names

        wanted = ", ".join(display_names(config, keys)) or "any category"
        raise SendError(f"Nothing in {wanted} was published in edition {plan.id}'s window; no test sent.")
    recipient = PersonalLinks(config).recipient(
        Subscriber(id=0, email=address, status="active", categories=keys)
    )
    batch = BatchMessage(
        subject=f"[TEST] {rendered.subject}",
        html=rendered.html,
        text=rendered.text,
        recipients=[recipient],
        categories=("digest-test", plan.id),
        custom_args={"edition": plan.id, "test": "1"},
    )
    message: OutgoingMessage = batch.personalise(recipient)
    own = sender is None
    sender = sender or make_sender(config, sender_name, outbox=outbox)
    try:
        return sender.send_one(message)
    finally:
        if own:
            sender.close()


__all__ = ["InFlightBatch", "Progress", "SendSummary", "deliver", "send_test"]
