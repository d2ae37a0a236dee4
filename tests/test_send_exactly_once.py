"""Issue 12 points 1-3: undecided batches and their settlement, the fenced lease, one edition at a
time. On SQLite and PostgreSQL (the ``store``/``db_url`` fixtures)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fault_matrix import EDITION, world
from send_fixtures import fast_retries  # noqa: F401  (fixture)
from sqlalchemy import select, update

from digest import editions
from digest.errors import LeaseLostError, SendError
from digest.schedule import Window
from digest.send.ledger import LeaseLost, Ledger
from digest.send.webhook import record_events
from digest.store import batches, deliveries
from digest.store import editions as editions_table

WINDOW = Window(datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 9, tzinfo=UTC))


class _Email:
    category_set = "us"
    post_ids = ("a.md",)
    recorded = False


def _expire(store: Any, edition_id: str) -> None:
    with store.session() as s:
        s.execute(
            update(editions_table)
            .where(editions_table.c.id == edition_id)
            .values(lock_expires=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_a_fenced_off_run_records_and_posts_nothing(store: Any) -> None:
    editions.record_edition(store, edition_id="2026-W02", window=WINDOW)
    first = editions.EditionLock(store, "2026-W02", seconds=60)
    first.acquire()
    ledger = Ledger(store, "2026-W02")
    raw = ledger.raw_connection()
    try:
        assert ledger.record_in_flight(raw, _Email(), [1, 2], None, fence=first) > 0
        _expire(store, "2026-W02")  # a long pause: the lease ran out
        second = editions.EditionLock(store, "2026-W02", seconds=60)
        second.acquire()
        assert second.token == first.token + 1
        with pytest.raises(LeaseLost):
            ledger.record_in_flight(raw, _Email(), [3, 4], None, fence=first)
        with pytest.raises(LeaseLostError):
            first.cover(600)  # nor may it start a long rate-limit wait (past what it knew it held)
        with pytest.raises(LeaseLostError):
            first.renew(force=True)
        first.release()  # a no-op on the other run's lease
        assert ledger.record_in_flight(raw, _Email(), [3, 4], None, fence=second) > 0
    finally:
        raw.close()
    with store.reading() as c:
        rows = c.execute(select(batches.c.pending_ids).order_by(batches.c.id)).all()
        owner = c.execute(select(editions_table.c.lock_owner)).scalar()
    assert [r[0] for r in rows] == ["[1, 2]", "[3, 4]"]  # nothing recorded under the lost lease
    assert owner == second.owner


def test_cover_extends_the_lease_before_a_long_wait(store: Any) -> None:
    editions.record_edition(store, edition_id="2026-W02", window=WINDOW)
    lock = editions.EditionLock(store, "2026-W02", seconds=3)
    lock.acquire()
    lock.cover(120)  # a 429 wait of two minutes: the lease must outlive it
    with store.reading() as c:
        until = c.execute(select(editions_table.c.lock_expires)).scalar()
    assert until is not None and until > datetime.now(UTC) + timedelta(seconds=100)


def test_editions_go_one_at_a_time(store: Any) -> None:
    editions.record_edition(store, edition_id="2026-W02", window=WINDOW)
    editions.record_edition(store, edition_id="2026-W03", window=WINDOW)
    first = editions.EditionLock(store, "2026-W02")
    first.acquire()
    with pytest.raises(SendError, match=r"2026-W02 is being sent by another run.*one at a"):
        editions.EditionLock(store, "2026-W03").acquire(wait=0.2, poll=0.1)
    with pytest.raises(SendError, match="2026-W02 is being sent by another run"):
        editions.EditionLock(store, "2026-W02").acquire()  # the same edition: at once
    first.release()
    editions.EditionLock(store, "2026-W03").acquire()


def test_webhook_events_settle_an_undecided_batch(store: Any) -> None:
    editions.record_edition(store, edition_id="2026-W02", window=WINDOW)
    lock = editions.EditionLock(store, "2026-W02")
    lock.acquire()
    ledger = Ledger(store, "2026-W02")
    raw = ledger.raw_connection()
    try:
        bid = ledger.record_in_flight(raw, _Email(), [], None, fence=lock)
        other = ledger.record_in_flight(raw, _Email(), [], None, fence=lock)
    finally:
        raw.close()
    assert ledger.mark_undecided() == 2
    event = {"event": "processed", "email": "a@example.org", "edition": "2026-W02", "batch": str(bid)}
    opened = {"event": "open", "email": "b@example.org", "edition": "2026-W02", "batch": str(other)}
    summary = record_events(store, [event, opened, {**event, "batch": "999"}])
    assert summary.settled == 1
    with store.reading() as c:
        states = dict(c.execute(select(batches.c.id, batches.c.state)).all())
    assert states == {bid: "accepted", other: "undecided"}  # an open is not proof of acceptance


def test_undecided_without_events_is_resent_after_the_wait(
    tmp_path: Path,
    db_url: str,
    fast_retries: None,  # noqa: F811
) -> None:
    """Webhook configured, a request reset after it was written (SendGrid did not take it),
    no event comes: after ``sender.settle_after_seconds`` the next run resends that batch."""
    with world(tmp_path, db_url) as ctx:
        ctx.readers(60)
        config = ctx.site.config
        ctx.site.config = replace(
            config,
            web=replace(config.web, sendgrid_webhook_public_key="configured"),
            sender=replace(config.sender, settle_after_seconds=3600.0),
        )
        ctx.fake.fail_next("reset_before")
        first = ctx.deliver()
        assert first.undecided > 0
        assert ctx.undecided(), "the unanswered batch is listed undecided"
        missing = ctx.fake.missing(ctx.emails, EDITION)
        assert missing == ctx.undecided()
        second = ctx.deliver()  # within the wait: still undecided, not resent
        assert second.resent_in_flight == 0 and ctx.fake.missing(ctx.emails, EDITION) == missing
        ctx.site.config = replace(
            ctx.site.config, sender=replace(ctx.site.config.sender, settle_after_seconds=0.001)
        )
        third = ctx.deliver()
        assert third.resent_in_flight == len(missing)
        out = ctx.outcome("resent after the wait")
    assert out.ok and not out.missing and not out.undecided, out.summary()
    with_store = out.readers
    assert with_store == 60


def test_custom_args_carry_edition_and_batch(tmp_path: Path, db_url: str, fast_retries: None) -> None:  # noqa: F811
    with world(tmp_path, db_url) as ctx:
        ctx.readers(30)
        ctx.deliver()
        with ctx.site.store.reading() as c:
            ids = {str(r[0]) for r in c.execute(select(batches.c.id))}
            sent = c.execute(select(deliveries.c.state).distinct()).scalars().all()
        logged = {(e.edition, e.batch) for e in ctx.fake.log}
    assert {b for _, b in logged} == ids and {e for e, _ in logged} == {EDITION}
    assert sent == ["sent"]
