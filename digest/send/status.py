"""What an edition's send did (`digest status`), and calling off a scheduled one (`digest cancel`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select

from digest import editions
from digest.config import Config
from digest.errors import SendError
from digest.send import make_sender
from digest.send.base import BulkSender, Sender
from digest.send.ledger import Ledger
from digest.send.summary import InFlightBatch, reason
from digest.store import Store, batches, deliveries, subscribers
from digest.store import editions as editions_table


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
    # Every reader of the edition in exactly one of READER_STATES; they sum to ``audience``.
    readers: dict[str, int] = field(default_factory=dict)

    @property
    def audience(self) -> int:
        """Everyone the edition is for: recorded readers plus active subscribers not reached yet."""
        return sum(self.readers.values())

    @property
    def complete(self) -> bool:
        """Nobody is left whose copy is unknown (undecided) or still to go (pending)."""
        return not self.readers.get("undecided") and not self.readers.get("pending")

    @property
    def shown_status(self) -> str:
        """The edition's status as told: "sent" only when nobody is pending or undecided."""
        if self.status in ("sent", "sending") and not self.complete and not self.lock_owner:
            parts = [f"{self.readers[k]} {k}" for k in ("undecided", "pending") if self.readers.get(k)]
            return f"incomplete: {', '.join(parts)}, see below"
        failed = self.readers.get("failed", 0)
        if self.status == "sent" and failed:  # a run that finished is not "sent" to those it failed
            if not self.readers.get("sent"):
                return f"not sent: all {failed} readers failed, see below"
            return f"sent, except {failed} failed (see below; a rerun retries only them)"
        return self.status


# The states `digest status` counts every reader in, in the order it shows them.
READER_STATES = ("sent", "failed", "undecided", "skipped", "suppressed", "pending")
UNDECIDED = ("in_flight", "undecided")  # the ledger's names for a copy nobody can vouch for
SUPPRESSED = "suppressed by SendGrid"  # how the run records a reader on a provider's list


def edition_status(store: Store, edition_id: str) -> EditionStatus:
    """Readers by state and reason, batches by state, and what is in flight, for one edition."""
    with store.reading() as c:
        row = c.execute(select(editions_table).where(editions_table.c.id == edition_id)).first()
        if row is None:
            raise SendError(f"No edition {edition_id!r} in the database; `digest send` creates it.")
        states: dict[str, int] = dict(
            c.execute(
                select(deliveries.c.state, func.count())
                .where(deliveries.c.edition_id == edition_id)
                .group_by(deliveries.c.state)
            ).all()
        )
        reasons: dict[str | None, int] = dict(
            c.execute(
                select(deliveries.c.error, func.count())
                .where(deliveries.c.edition_id == edition_id, deliveries.c.state.in_(("failed", "skipped")))
                .group_by(deliveries.c.error)
            ).all()
        )
        batch_states: dict[str, int] = dict(
            c.execute(
                select(batches.c.state, func.count())
                .where(batches.c.edition_id == edition_id)
                .group_by(batches.c.state)
            ).all()
        )
        sets: Counter[str] = Counter(
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
        by_reason: list[tuple[str, str | None, int]] = [
            (str(st), err, int(n))
            for st, err, n in c.execute(
                select(deliveries.c.state, deliveries.c.error, func.count())
                .where(deliveries.c.edition_id == edition_id, deliveries.c.state == "skipped")
                .group_by(deliveries.c.state, deliveries.c.error)
            ).all()
        ]
        # Active readers who joined before the edition ended and are in no row of it yet: a
        # rerun would send to them, so they are pending (people who joined later are not counted).
        recorded = select(deliveries.c.subscriber_id).where(
            deliveries.c.edition_id == edition_id, deliveries.c.subscriber_id == subscribers.c.id
        )
        joined_by = row.sent_at or datetime.now(UTC)
        not_recorded = int(
            c.execute(
                select(func.count())
                .select_from(subscribers)
                .where(
                    subscribers.c.status == "active",
                    subscribers.c.created_at <= joined_by,
                    ~recorded.exists(),
                )
            ).scalar_one()
        )
    state_counts: Counter[str] = Counter(states)
    reason_counts: Counter[str | None] = Counter(reasons)
    for state, category_set, error, recipients in pending:
        reader_state = {"accepted": "sent", "in_flight": "in_flight"}.get(state, "failed")
        state_counts[reader_state] += recipients
        if reader_state == "sent":
            sets[category_set] += recipients
        elif reader_state == "failed":
            reason_counts[error] += recipients
    in_batches = sum(int(r[3]) for r in pending)  # readers of batches not in deliveries yet
    suppressed = sum(n for _, err, n in by_reason if (err or "").startswith(SUPPRESSED))
    readers = {
        "sent": state_counts["sent"],
        "failed": state_counts["failed"],
        "undecided": sum(state_counts[k] for k in UNDECIDED),
        "skipped": state_counts["skipped"] - suppressed,
        "suppressed": suppressed,
        "pending": state_counts["pending"] + max(0, not_recorded - in_batches),
    }
    return EditionStatus(
        edition_id=edition_id,
        status=row.status,
        window_start=row.window_start,
        window_end=row.window_end,
        sent_at=row.sent_at,
        send_at=row.send_at,
        sendgrid_batch_id=row.sendgrid_batch_id,
        lock_owner=row.lock_owner if row.lock_expires and row.lock_expires > datetime.now(UTC) else None,
        deliveries={str(k): int(v) for k, v in state_counts.items()},
        reasons=_grouped(reason_counts),
        batches={str(k): int(v) for k, v in batch_states.items()},
        in_flight=Ledger(store, edition_id).in_flight(),
        category_sets={str(k): int(v) for k, v in sets.items()},
        readers=readers,
    )


def _grouped(counts: Counter[str | None]) -> dict[str, int]:
    """Reasons as the send's summary groups them: "a@x: refused" and "b@x: refused" are one row."""
    out: Counter[str] = Counter()
    for error, n in counts.items():
        out[reason(error) if error else "?"] += int(n)
    return dict(out)


def cancel(config: Config, store: Store, edition_id: str, *, sender: Sender | None = None) -> EditionStatus:
    """Cancel a scheduled (--send-at) edition at SendGrid while it still allows, and record it.

    The edition becomes ``cancelled`` (the scheduler leaves it alone; its posts go in the next
    edition), its deliveries ``skipped`` ("cancelled") and its ledger rows are taken back.
    """
    with store.reading() as c:
        row = c.execute(select(editions_table).where(editions_table.c.id == edition_id)).first()
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
        if not isinstance(sender, BulkSender):
            raise SendError("Cancelling needs the sendgrid sender.")
        try:
            sender.cancel_scheduled(row.sendgrid_batch_id)
        except SendError as exc:
            raise SendError(
                f"SendGrid would not cancel edition {edition_id} ({exc}). A scheduled send can only be "
                "cancelled until about 10 minutes before its time."
            ) from None
    finally:
        if own:
            sender.close()
    ledger = Ledger(store, edition_id)
    ledger.materialize()  # every reader it went to has a deliveries row
    editions.mark_cancelled(store, edition_id)
    ledger.cancelled()
    return edition_status(store, edition_id)
