"""What an edition's send did (`digest status`), and calling off a scheduled one (`digest cancel`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select

from digest import editions
from digest.config import Config
from digest.errors import SendError
from digest.send import make_sender
from digest.send.base import BulkSender, Sender
from digest.send.ledger import Ledger
from digest.send.summary import InFlightBatch
from digest.store import Store, batches, deliveries
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
    state_counts: Counter[str] = Counter(states)
    reason_counts: Counter[str | None] = Counter(reasons)
    for state, category_set, error, recipients in pending:
        reader_state = {"accepted": "sent", "in_flight": "in_flight"}.get(state, "failed")
        state_counts[reader_state] += recipients
        if reader_state == "sent":
            sets[category_set] += recipients
        elif reader_state == "failed":
            reason_counts[error] += recipients
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
        reasons={str(k or "?"): int(v) for k, v in reason_counts.items()},
        batches={str(k): int(v) for k, v in batch_states.items()},
        in_flight=Ledger(store, edition_id).in_flight(),
        category_sets={str(k): int(v) for k, v in sets.items()},
    )


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
