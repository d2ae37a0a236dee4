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

import collections
import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from digest.editions import EditionLock
from digest.errors import LeaseLostError, ProviderAuthError, SendError, UndecidedError
from digest.send.base import BatchMessage, BulkSender, Recipient, Sender
from digest.send.ledger import Finished, LeaseLost, Ledger, chunks
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
        try:
            batch_row = b.ledger.begin_batch(variant, ids, fence=b.lock)
        except LeaseLost as exc:
            raise LeaseLostError(f"Lost the send lock on edition {b.edition_id}: {exc}; stopping.") from None
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
        max_in_flight: int = 1,
    ) -> None:
        self.sender = sender
        self.b = batching
        spec = links.spec({"edition": batching.edition_id})
        self.personalizer = Personalizer(spec)
        self.auth_error: ProviderAuthError | None = None
        self.poster: _Poster | None = None
        self.pool: PersonalizationPool | None = None
        self.lease_error: LeaseLostError | None = None
        if not batching.dry_run:
            assert batching.lock is not None
            sender.lease_guard = batching.lock.cover  # no request or 429 wait outlives the lease
            cover = float(getattr(sender, "timeout", 30.0)) + 5.0
            self.poster = _Poster(
                sender,
                batching.ledger,
                batching,
                queue_size=QUEUE_AHEAD,
                cover=cover,
                max_in_flight=max_in_flight,
            )
            if pool:
                self.pool = PersonalizationPool(spec)

    def _stopped(self) -> None:
        if self.auth_error is not None:
            raise self.auth_error
        if self.lease_error is not None:
            raise self.lease_error

    def send(self, variant: Variant, members: list[Member]) -> None:
        self._stopped()
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
        self._stopped()
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
        if wait:
            self._stopped()

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
        if isinstance(job.error, UndecidedError):
            summary.undecided += n
            log.warning(
                "Batch %d of edition %s is undecided (%s): not resent; the webhook or an operator settles it",
                job.batch_id,
                self.b.edition_id,
                error,
            )
            return
        if isinstance(job.error, LeaseLostError):
            summary.failed["not sent: this run lost the send lock"] += n
            self.lease_error = self.lease_error or job.error
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
            self.sender.lease_guard = None
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
    unbuildable: bool = False  # its parts could not be built (SendError): recorded failed, alone


class _Poster:
    """Records SendGrid batches from one thread and posts up to ``max_in_flight`` at once.

    For each batch, one transaction writes the answers that came back since the last one and
    this batch in flight (fenced by the lease); then its request goes to one of
    ``max_in_flight`` request threads (each with its own kept-alive connection). So at most
    ``max_in_flight`` batches are ever undecided, after a crash too, while the main thread
    builds the next bodies; a body not yet recorded when a run dies left no trace, and the next
    run sends it. The main thread reads the answers only for the summary.
    """

    def __init__(
        self,
        sender: BulkSender,
        ledger: Ledger,
        batching: Batching,
        *,
        queue_size: int,
        cover: float,
        max_in_flight: int = 1,
    ) -> None:
        self.sender = sender
        self.ledger = ledger
        self.b = batching
        self.cover = cover  # seconds the lease must hold past a batch's record: its request
        self.max_in_flight = max(1, max_in_flight)
        # jobs from the main thread and answers from the request threads, in arrival order
        self.inbox: queue.Queue[tuple[str, _Posting | None]] = queue.Queue()
        self.room = threading.Semaphore(queue_size + self.max_in_flight)  # bodies held: memory bound
        self.done: queue.Queue[_Posting] = queue.Queue()
        self.stop = threading.Event()  # a 401 or a lost lease: nothing more goes out
        self.why_stopped = ""
        self.pending = 0
        self.requests = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="digest-post")
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        self.raw = self.ledger.raw_connection()
        try:
            self._loop()
        finally:
            self.raw.close()

    def _loop(self) -> None:
        answered: list[Finished] = []  # answers not yet written (they go with the next record)
        waiting: collections.deque[_Posting] = collections.deque()
        in_flight = 0
        limit = 1  # the first request alone: a wrong key (401) stops the run after one request
        ending = False
        while not (ending and not waiting and in_flight == 0):
            while waiting and in_flight < limit:
                job = waiting.popleft()
                if self._start(job, answered):
                    answered = []
                    in_flight += 1
                else:
                    if job.unbuildable and not self.stop.is_set():
                        answered = self._record_unbuildable(job, answered)
                    self._done(job)
            try:
                kind, item = self.inbox.get(timeout=ANSWER_DELAY if answered else None)
            except queue.Empty:  # nothing more came soon: write the answers on their own
                answered = self._write(answered)
                continue
            if kind == "end":
                ending = True
            elif item is not None and kind == "job":
                waiting.append(item)
            elif item is not None:  # an answer
                in_flight -= 1
                limit = self.max_in_flight
                answered.append(_finished(item))
                self._done(item)
        self._write(answered)

    def _start(self, job: _Posting, answered: list[Finished]) -> bool:
        """Record the batch in flight (with ``answered``) and hand its request over; False if not."""
        if self.stop.is_set():
            job.error = SendError(f"not sent: the run stopped ({self.why_stopped})")
            return False
        parts = self._parts(job)
        if parts is None:
            return False
        lock = self.b.lock
        try:
            job.batch_id = self.ledger.record_in_flight(
                self.raw, job.variant, job.ids, answered, fence=lock, cover=self.cover
            )
        except LeaseLost as exc:  # fenced off: not recorded, not sent; nothing more goes out
            self.why_stopped = "this run lost the send lock"
            self.stop.set()
            job.error = LeaseLostError(f"not sent: {exc}")
            return False
        except Exception as exc:  # not recorded in flight, so not sent (a rerun sends it)
            job.error = SendError(f"not sent: could not record the batch ({type(exc).__name__}: {exc})")
            return False
        if lock is not None:
            lock.covered(self.cover)
        job.parts = parts  # built: the request thread takes it from here (and lets it go)
        self.requests.submit(self._request, job)
        return True

    def _request(self, job: _Posting) -> None:
        try:
            self._post(job)
        finally:
            self.inbox.put(("answer", job))

    def _done(self, job: _Posting) -> None:
        job.parts = ""
        self.done.put(job)
        self.room.release()

    def _parts(self, job: _Posting) -> str | None:
        """The readers' parts (waiting for the worker if it builds them); None and job.error if not."""
        try:
            return job.parts.result() if isinstance(job.parts, Future) else job.parts
        except SendError as exc:  # this batch cannot be built (an address twice): it fails alone
            job.error = exc
            job.unbuildable = True
        except Exception as exc:  # the worker died: not sent, and a rerun sends it
            job.error = SendError(f"not sent: building the request failed ({type(exc).__name__}: {exc})")
        return None

    def _record_unbuildable(self, job: _Posting, answered: list[Finished]) -> list[Finished]:
        """A batch whose request could not be built (an address twice, a limit): recorded, then
        failed with its reason (``digest status`` shows it), so it fails alone and a rerun retries it.
        Nothing was posted, so it is never undecided. Returns the answers still to write."""
        try:
            job.batch_id = self.ledger.record_in_flight(
                self.raw, job.variant, job.ids, answered, fence=self.b.lock, cover=self.cover
            )
        except Exception:  # not recorded: counted failed in the summary, and a rerun sends it
            log.exception("Could not record the failed batch of edition %s", self.ledger.edition_id)
            return answered
        return [_finished(job)]

    def _post(self, job: _Posting) -> None:
        """Build the body (with the edition and ledger batch id in custom_args) and post it.

        Up to ``max_in_flight`` requests wait on a slow link at once, so each holds one copy of
        its body, as UTF-8 bytes: the readers' parts and the text are let go before it goes out.
        """
        try:
            assert job.variant.prefix is not None and isinstance(job.parts, str)
            parts, job.parts = job.parts, ""
            args = {"edition": self.b.edition_id, "batch": str(job.batch_id)}
            text = self.sender.prepared_body(job.variant.prefix, parts, len(job.ids), args)
            del parts
            data = text.encode("utf-8")
            del text
            job.message_id = self.sender.post_prepared(data)
        except ProviderAuthError as exc:
            self.why_stopped = "the provider refused the API key"
            self.stop.set()
            job.error = exc
        except LeaseLostError as exc:  # the lease could not cover the request: it did not go out
            self.why_stopped = "this run lost the send lock"
            self.stop.set()
            job.error = exc
        except SendError as exc:
            job.error = exc
        except Exception as exc:
            job.error = SendError(f"{type(exc).__name__}: {exc}")

    def _write(self, answered: list[Finished]) -> list[Finished]:
        """Write pending answers on their own; returns what is left to write (nothing)."""
        if answered:
            try:
                self.ledger.record_answers(self.raw, answered)
            except Exception:  # left in flight: undecided for the next run, never resent on its own
                log.exception("Could not record the answers to batches %s", [a.batch_id for a in answered])
        return []

    def put(self, job: _Posting) -> None:
        self.pending += 1
        self.room.acquire()  # waits when enough bodies are built and not yet answered
        self.inbox.put(("job", job))

    def ready(self, wait: bool = False) -> list[_Posting]:
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
        self.inbox.put(("end", None))
        self.thread.join()
        self.requests.shutdown(wait=True)


def _finished(job: _Posting) -> Finished:
    if job.error is None:
        return Finished(job.batch_id, job.ids, message_id=job.message_id)
    undecided = isinstance(job.error, UndecidedError)
    return Finished(job.batch_id, job.ids, error=str(job.error), undecided=undecided)
