"""Getting batches out: serial (SMTP, the outbox) or pipelined (SendGrid), with the crash rule.

A dispatcher takes one email (a ``Variant``) and up to 1,000 of its readers at a time, records
the batch in the ledger *before* its request goes out, sends it, and records the answer. It
counts what happened in the run's ``SendSummary``.

- ``SerialDispatcher``: one batch at a time in the calling thread, answered per reader
  (SMTP and the outbox personalise and send each message themselves).
- ``PipelinedDispatcher``: SendGrid. The caller builds request bodies from pre-encoded pieces
  (large sends build readers' parts in a worker process, ``digest.send.personalize``); a poster
  thread takes them in order, records each in flight with the previous batch's answer (one
  transaction) and posts it. Only the batch whose request is out is ever undecided; a body not
  yet recorded when a run dies left no trace, and the next run sends it.

Both raise ``ProviderAuthError`` out of ``send`` or ``drain`` once the provider refuses the key.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from digest.editions import EditionLock
from digest.errors import ProviderAuthError, SendError
from digest.send.base import BatchMessage, BulkSender, Recipient, Sender
from digest.send.ledger import Finished, Ledger, chunks
from digest.send.personalize import Member, PersonalizationPool, Personalizer, PersonalLinks
from digest.send.summary import SendSummary, reason
from digest.send.variants import Variant

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
QUEUE_AHEAD = 8  # SendGrid: bodies built and waiting for the poster thread (bounds memory)
ANSWER_DELAY = 0.05  # seconds an answer may wait to be written with the next batch's start
POOL_MIN_BATCH = 64  # batches at least this big are personalised by the worker process (if any)


@dataclass
class Batching:
    """What every batch of one send shares."""

    edition_id: str
    summary: SendSummary
    ledger: Ledger
    lock: EditionLock | None  # None: a dry run (nothing recorded)
    send_at: datetime | None = None
    sendgrid_batch_id: str | None = None

    @property
    def dry_run(self) -> bool:
        return self.lock is None

    def message(self, variant: Variant, recipients: Sequence[Recipient]) -> BatchMessage:
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


class Dispatcher(Protocol):
    """Where the run loop hands full (or set-final) batches."""

    def send(self, variant: Variant, members: list[Member]) -> None: ...

    def drain(self, *, wait: bool = False) -> None:
        """Count the answers that came back (all of them, with ``wait``)."""
        ...

    def close(self) -> None:
        """Wait for everything handed over, then stop any thread or worker."""
        ...


class SerialDispatcher:
    """SMTP and the outbox: record, send, answer, one batch at a time; refusals per reader."""

    def __init__(self, sender: Sender | None, batching: Batching, links: PersonalLinks) -> None:
        self.sender = sender
        self.b = batching
        self.links = links

    def send(self, variant: Variant, members: list[Member]) -> None:
        b, summary = self.b, self.b.summary
        member = self.links.member
        batch = b.message(variant, [member(sid, email, name) for sid, email, name in members])
        summary.batches += 1
        if b.lock is None:
            summary.sent += len(members)
            return
        assert self.sender is not None
        b.lock.renew()
        ids = [m[0] for m in members]
        by_email = {m[1]: m[0] for m in members}
        batch_row = b.ledger.begin_batch(variant, ids)
        try:
            result = self.sender.send_batch(batch)
        except ProviderAuthError as exc:
            b.ledger.finish([Finished(batch_row, ids, error=str(exc))])
            summary.failed["provider refused the API key"] += len(members)
            raise
        except SendError as exc:
            b.ledger.finish([Finished(batch_row, ids, error=str(exc))])
            summary.batches_failed += 1
            summary.failed[reason(str(exc))] += len(members)
            log.warning("Batch %d of edition %s failed: %s", batch_row, b.edition_id, exc)
            return
        failed = {by_email[e]: why for e, why in result.failed.items() if e in by_email}
        ids_seen = set(result.message_ids.values())
        message_id = next(iter(ids_seen)) if len(ids_seen) == 1 else None
        # Every reader refused (the SMTP server down): the batch failed, it was not "accepted".
        error = (
            f"every reader failed: {reason(next(iter(failed.values())))}" if len(failed) == len(ids) else None
        )
        b.ledger.finish([Finished(batch_row, ids, message_id=message_id, failed=failed, error=error)])
        if error is not None:
            summary.batches_failed += 1
        if len(ids_seen) > 1:
            b.ledger.per_recipient_ids(batch_row, {by_email[e]: m for e, m in result.message_ids.items()})
        for why in failed.values():
            summary.failed[reason(why)] += 1
        summary.sent += len(members) - len(failed)

    def drain(self, *, wait: bool = False) -> None:
        return None

    def close(self) -> None:
        return None


class PipelinedDispatcher:
    """SendGrid: bodies from the email's prefix and one JSON fragment per reader, posted by a thread."""

    def __init__(
        self,
        sender: BulkSender,
        batching: Batching,
        links: PersonalLinks,
        *,
        pool: bool = False,
    ) -> None:
        self.sender = sender
        self.b = batching
        spec = links.spec({"edition": batching.edition_id})
        self.personalizer = Personalizer(spec)
        self.auth_error: ProviderAuthError | None = None
        self.poster: _Poster | None = None
        self.pool: PersonalizationPool | None = None
        if not batching.dry_run:
            self.poster = _Poster(sender, batching.ledger, queue_size=QUEUE_AHEAD)
            if pool:
                self.pool = PersonalizationPool(spec)

    def send(self, variant: Variant, members: list[Member]) -> None:
        if self.auth_error is not None:
            raise self.auth_error
        b, sender = self.b, self.sender
        unbuildable: SendError | None = None  # this email cannot be a request: its batches fail alone
        if variant.prefix is None:
            try:
                variant.prefix = sender.prepared_prefix(b.message(variant, ()))
            except SendError as exc:
                unbuildable = exc
        b.summary.batches += 1
        if self.poster is None or b.lock is None:  # a dry run: the same limits a real send checks
            try:
                if unbuildable is not None:
                    raise unbuildable
                assert variant.prefix is not None
                sender.prepared_body(variant.prefix, self.personalizer.build(members), len(members))
            except SendError as exc:  # what the real send would do: this batch fails, the run goes on
                b.summary.batches_failed += 1
                b.summary.failed[reason(str(exc))] += len(members)
                return
            b.summary.sent += len(members)
            return
        self.drain()
        if self.auth_error is not None:
            raise self.auth_error
        # Big batches' personalizations are built by the worker while this thread goes on.
        parts: str | Future[str]
        if unbuildable is not None:
            parts = Future()
            parts.set_exception(unbuildable)
        elif self.pool is not None and len(members) >= POOL_MIN_BATCH:
            parts = self.pool.submit(members)
        else:
            try:
                parts = self.personalizer.build(members)
            except SendError as exc:  # this batch cannot be built: it fails alone (recorded below)
                parts = Future()
                parts.set_exception(exc)
        b.lock.renew()
        self.poster.put(_Posting(variant, 0, [m[0] for m in members], parts))  # waits when it is full

    def drain(self, *, wait: bool = False) -> None:
        """Collect the poster's answers for the summary (it has written them to the database)."""
        if self.poster is None:
            return
        while True:
            for job in self.poster.ready(wait=wait):
                self._answer(job)
            if not wait or not self.poster.pending:
                break
        if wait and self.auth_error is not None:
            raise self.auth_error

    def _answer(self, job: _Posting) -> None:
        summary, n = self.b.summary, len(job.ids)
        if job.error is None:
            summary.sent += n
            return
        error = str(job.error)
        if isinstance(job.error, ProviderAuthError):
            summary.failed["provider refused the API key"] += n
            self.auth_error = job.error
            return
        if self.auth_error is not None or (self.poster is not None and self.poster.stop.is_set()):
            summary.failed["not sent: the run stopped"] += n
            return
        summary.batches_failed += 1
        summary.failed[reason(error)] += n
        log.warning("Batch %d of edition %s failed: %s", job.batch_id, self.b.edition_id, error)

    def close(self) -> None:
        if self.poster is None:
            return
        try:
            with contextlib.suppress(ProviderAuthError):  # counted, and raised to the run already
                self.drain(wait=True)
        finally:
            self.poster.close()
            if self.pool is not None:
                self.pool.close()


def send_in_batches(dispatcher: Dispatcher, variant: Variant, members: list[Member], size: int) -> None:
    for chunk in chunks(members, size):
        dispatcher.send(variant, chunk)


@dataclass
class _Posting:
    """A SendGrid batch handed to a posting thread (already recorded in flight)."""

    variant: Variant
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

    def __init__(self, sender: BulkSender, ledger: Ledger, *, queue_size: int) -> None:
        import queue

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

        answered: Finished | None = None  # the last answer, written with the next batch's start
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
            elif not self.stop.is_set() and job.error is not None:
                answered = self._record_unbuildable(job, answered)
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
            assert job.variant.prefix is not None
            return self.sender.prepared_body(job.variant.prefix, parts, len(job.ids))
        except SendError as exc:
            job.error = exc
        except Exception as exc:  # the worker died: not sent, and a rerun sends it
            job.error = SendError(f"not sent: building the request failed ({type(exc).__name__}: {exc})")
        return None

    def _record_unbuildable(self, job: _Posting, answered: Finished | None) -> Finished | None:
        """A batch whose request could not be built (an address twice, a limit): recorded, then
        failed with its reason (``digest status`` shows it), so it fails alone and a rerun retries it.
        Nothing was posted, so it is never undecided."""
        try:
            job.batch_id = self.ledger.record_in_flight(self.raw, job.variant, job.ids, answered)
        except Exception:  # not recorded: counted failed in the summary, and a rerun sends it
            log.exception("Could not record the failed batch of edition %s", self.ledger.edition_id)
            return answered
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

    def _write(self, answered: Finished | None) -> Finished | None:
        """Write a pending answer on its own; returns what is left to write (nothing)."""
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


def _finished(job: _Posting) -> Finished:
    if job.error is None:
        return Finished(job.batch_id, job.ids, message_id=job.message_id)
    return Finished(job.batch_id, job.ids, error=str(job.error))
