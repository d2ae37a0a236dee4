"""The delivery engine: each reader their own email, exactly once, whatever the provider says."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from fake_sendgrid import FakeSendGrid, validate_mail
from send_fixtures import *  # noqa: F403  (fixtures)
from send_fixtures import AS_OF, SendSite, send_config

from digest import subscribers
from digest.editions import EditionLock
from digest.errors import ProviderAuthError, SendError
from digest.send.base import OutgoingMessage
from digest.send.outbox import read_outbox
from digest.send.status import cancel, edition_status
from digest.weekly import send as deliver
from digest.weekly import send_test

WHEN = datetime.fromisoformat(AS_OF)


def _outbox(site: SendSite, **kw: object):  # type: ignore[no-untyped-def]
    return deliver(site.config, site.store, as_of=WHEN, sender_name="outbox", outbox=site.root / "out", **kw)


def test_each_reader_gets_their_categories_once(send_site: SendSite) -> None:
    send_site.add("us@example.org", "US")
    send_site.add("both@example.org", "Europe, Asia")
    send_site.add("paused@example.org", "US")
    subscribers.set_status(send_site.store, "paused@example.org", "paused", source="cli")
    subscribers.subscribe(send_site.store, send_site.config, "pending@example.org", "US", source="web")
    summary = _outbox(send_site)
    assert summary.sent == 2 and summary.edition_id == "2026-W02" and summary.ok
    mail = {m["To"]: m for m in read_outbox(send_site.root / "out")}
    assert set(mail) == {"us@example.org", "both@example.org"}
    us_text = mail["us@example.org"].get_body(("plain",)).get_content()
    assert "Budget talks stall" in us_text and "ECB holds rates" not in us_text
    both_text = mail["both@example.org"].get_body(("plain",)).get_content()
    assert "ECB holds rates" in both_text and "A new chip plant" in both_text and "Budget" not in both_text
    assert "Last week" not in both_text  # outside the window
    for msg in mail.values():
        text = msg.get_body(("plain",)).get_content() + msg.get_body(("html",)).get_content()
        assert "__DIGEST" not in text
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["List-Unsubscribe"].startswith("<https://brief.example.com/unsubscribe/")
        assert "https://brief.example.com/preferences/" in text
        assert "1 High Street" in text  # postal address
    # links are personal
    assert mail["us@example.org"]["List-Unsubscribe"] != mail["both@example.org"]["List-Unsubscribe"]
    st = edition_status(send_site.store, "2026-W02")
    assert st.status == "sent" and st.deliveries == {"sent": 2} and st.batches == {"accepted": 2}


def test_rerun_sends_only_to_those_not_yet_sent(send_site: SendSite) -> None:
    send_site.add("a@example.org", "US")
    _outbox(send_site)
    send_site.add("late@example.org", "Climate")
    again = _outbox(send_site)
    assert again.sent == 1 and again.already_sent == 1
    assert Counter(m["To"] for m in read_outbox(send_site.root / "out")) == {
        "a@example.org": 1,
        "late@example.org": 1,
    }


def test_a_post_never_reaches_a_reader_twice(send_site: SendSite) -> None:
    send_site.add("a@example.org", "US")
    _outbox(send_site)
    # They add categories; a later edition whose window overlaps this one's posts.
    subscribers.set_categories(
        send_site.store, send_site.config, "a@example.org", ["US", "Climate"], source="cli"
    )
    window = (WHEN - timedelta(days=7), WHEN + timedelta(days=1))
    summary = deliver(
        send_site.config,
        send_site.store,
        edition_id="special",
        window=window,
        sender_name="outbox",
        outbox=send_site.root / "out2",
    )
    assert summary.sent == 1
    text = read_outbox(send_site.root / "out2")[0].get_body(("plain",)).get_content()
    assert "Grid storage doubles" in text and "Budget talks stall" not in text
    # Nothing left that they have not had: skipped.
    third = deliver(
        send_site.config,
        send_site.store,
        edition_id="third",
        window=window,
        sender_name="outbox",
        outbox=send_site.root / "out3",
    )
    assert third.sent == 0 and third.skipped == {"nothing new in their categories": 1}


def test_nothing_new_note(tmp_path, fast_retries) -> None:  # type: ignore[no-untyped-def]
    site = SendSite(tmp_path, edition={"nothing_new": "note"})
    site.add("a@example.org", "US")
    site.add("quiet@example.org", "Markets")  # ECB post is Europe+Markets: give them a truly empty set
    subscribers.set_categories(site.store, site.config, "quiet@example.org", ["Markets"], source="cli")
    (tmp_path / "posts" / "eu-rates.md").unlink()
    summary = deliver(site.config, site.store, as_of=WHEN, sender_name="outbox", outbox=tmp_path / "out")
    assert summary.sent == 2
    notes = [m for m in read_outbox(tmp_path / "out") if m["To"] == "quiet@example.org"]
    assert "nothing new" in notes[0]["Subject"]
    assert "https://brief.example.com/unsubscribe/" in notes[0].get_body(("plain",)).get_content()
    site.store.dispose()


def test_dry_run_writes_nothing(send_site: SendSite) -> None:
    send_site.add_many(25)
    summary = _outbox(send_site, dry_run=True)
    assert summary.sent == 25 and summary.batches >= 1 and summary.dry_run
    assert not (send_site.root / "out").exists()
    from digest import editions

    assert editions.get_edition(send_site.store, "2026-W02") is None


def test_test_send_marks_subject_and_records_nothing(send_site: SendSite) -> None:
    send_site.add("a@example.org", "US")
    send_test(
        send_site.config,
        address="me@example.org",
        categories=["Climate"],
        as_of=WHEN,
        outbox=send_site.root / "t",
    )
    (msg,) = read_outbox(send_site.root / "t")
    assert msg["Subject"].startswith("[TEST] ") and msg["To"] == "me@example.org"
    assert "Grid storage" in msg.get_body(("plain",)).get_content()
    from digest import editions

    assert editions.get_edition(send_site.store, "2026-W02") is None


def test_second_run_is_locked_out(send_site: SendSite) -> None:
    send_site.add("a@example.org", "US")
    _outbox(send_site, dry_run=False)  # creates the edition
    lock = EditionLock(send_site.store, "2026-W02")
    lock.acquire()
    with pytest.raises(SendError, match="being sent by another run"):
        _outbox(send_site)
    lock.release()
    assert _outbox(send_site).already_sent == 1


# -- through SendGrid (the fake) -------------------------------------------------------------


def _sendgrid(site: SendSite, **kw: object):  # type: ignore[no-untyped-def]
    return deliver(site.config, site.store, as_of=WHEN, sender_name="sendgrid", **kw)


def test_sendgrid_requests_are_valid_and_carry_the_edition(
    fake_sendgrid: FakeSendGrid, send_site: SendSite
) -> None:
    emails = send_site.add_many(40)
    summary = _sendgrid(send_site)
    assert summary.sent == 40 and summary.ok
    assert fake_sendgrid.delivered() == Counter({e: 1 for e in emails})
    for accepted in fake_sendgrid.accepted:
        body = accepted.body
        assert validate_mail(body) == []
        assert body["categories"] == ["digest", "2026-W02"]
        for p in body["personalizations"]:
            assert len(p["to"]) == 1
            assert p["custom_args"]["edition"] == "2026-W02"
            assert p["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert set(p["substitutions"]) == {"__DIGEST_PREFERENCES_URL__", "__DIGEST_UNSUBSCRIBE_URL__"}
        assert "__DIGEST_UNSUBSCRIBE_URL__" in body["content"][0]["value"]
    st = edition_status(send_site.store, "2026-W02")
    assert st.deliveries == {"sent": 40}


def test_400_on_one_batch_is_recorded_and_the_rest_go_on(
    fake_sendgrid: FakeSendGrid, send_site: SendSite
) -> None:
    send_site.add("bad@example.org", "US")
    send_site.add("good1@example.org", "Europe")
    send_site.add("good2@example.org", "Climate")
    fake_sendgrid.fail_when(lambda body: "bad@example.org" in str(body["personalizations"]), "400")
    summary = _sendgrid(send_site)
    assert summary.sent == 2 and summary.failed_total == 1 and summary.batches_failed == 1
    assert "scripted bad request" in next(iter(summary.failed))
    st = edition_status(send_site.store, "2026-W02")
    assert st.deliveries == {"sent": 2, "failed": 1}
    fake_sendgrid.state.rules.clear()
    again = _sendgrid(send_site)  # the rerun retries only the failed reader
    assert again.sent == 1 and again.already_sent == 2
    assert fake_sendgrid.delivered() == Counter(
        {"bad@example.org": 1, "good1@example.org": 1, "good2@example.org": 1}
    )


def test_storms_are_ridden_out(fake_sendgrid: FakeSendGrid, send_site: SendSite) -> None:
    emails = send_site.add_many(30)
    fake_sendgrid.fail_next("429", times=5)
    fake_sendgrid.fail_next("500", times=2)
    fake_sendgrid.fail_next("503", times=2)  # 4 in a row: within max_retries = 4
    summary = _sendgrid(send_site)
    assert summary.sent == 30 and summary.ok
    assert fake_sendgrid.delivered() == Counter({e: 1 for e in emails})


def test_401_stops_the_run_with_a_clear_message(fake_sendgrid: FakeSendGrid, send_site: SendSite) -> None:
    send_site.add_many(20)
    fake_sendgrid.fail_next("401")
    with pytest.raises(ProviderAuthError, match="SENDGRID_API_KEY"):
        _sendgrid(send_site)
    assert fake_sendgrid.mail_requests() == 1
    st = edition_status(send_site.store, "2026-W02")
    assert "sent" not in st.deliveries and st.lock_owner is None


def test_suppressed_addresses_are_skipped_and_marked(
    fake_sendgrid: FakeSendGrid, send_site: SendSite
) -> None:
    send_site.add("a@example.org", "US")
    send_site.add("gone@example.org", "US")
    fake_sendgrid.suppress("bounces", "gone@example.org")
    dry = _sendgrid(send_site, dry_run=True)
    assert dry.sent == 1 and dry.skipped == {"on SendGrid's bounced list": 1}
    assert fake_sendgrid.mail_requests() == 0
    real = _sendgrid(send_site)
    assert real.sent == 1 and fake_sendgrid.delivered() == Counter({"a@example.org": 1})
    assert subscribers.get(send_site.store, "gone@example.org").status == "bounced"


def test_send_at_then_cancel(fake_sendgrid: FakeSendGrid, send_site: SendSite) -> None:
    send_site.add_many(10)
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    summary = _sendgrid(send_site, send_at=at)
    assert summary.sent == 10
    batch_ids = {a.batch_id for a in fake_sendgrid.accepted}
    assert len(batch_ids) == 1 and None not in batch_ids
    assert {a.send_at for a in fake_sendgrid.accepted} == {int(at.timestamp())}
    st = cancel(send_site.config, send_site.store, "2026-W02")
    assert st.status == "cancelled" and st.deliveries == {"skipped": 10}
    assert sum(fake_sendgrid.delivered().values()) == 0
    with pytest.raises(SendError, match="cancelled"):
        _sendgrid(send_site)


def test_nothing_new_note_when_the_whole_window_is_empty(tmp_path, fast_retries, db_url) -> None:  # type: ignore[no-untyped-def]
    """No post at all in the window: with nothing_new = "note" every reader gets the note, once."""
    site = SendSite(tmp_path, edition={"nothing_new": "note"}, database={"url": db_url})
    try:
        site.add("a@example.org", "US")
        site.add("b@example.org", ["Asia", "Climate"])
        empty = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)  # weeks after the newest post
        first = deliver(site.config, site.store, as_of=empty, sender_name="outbox", outbox=tmp_path / "out")
        assert first.sent == 2 and first.renders == 0
        mails = read_outbox(tmp_path / "out")
        assert sorted(m["To"] for m in mails) == ["a@example.org", "b@example.org"]
        assert all("nothing new" in m["Subject"] for m in mails)
        again = deliver(site.config, site.store, as_of=empty, sender_name="outbox", outbox=tmp_path / "out")
        assert again.sent == 0 and again.already_sent == 2
    finally:
        site.store.dispose()


def test_retry_delay_comes_from_the_config_key(tmp_path, fake_sendgrid) -> None:  # type: ignore[no-untyped-def]
    """sender.retry_base_seconds sets the first backoff (no environment variable is read)."""
    from digest.send.sendgrid import SendGridSender

    config = send_config(tmp_path, sender={"retry_base_seconds": 0.25})
    sender = SendGridSender.from_config(config)
    slept: list[float] = []
    sender.sleep = slept.append
    fake_sendgrid.fail_next("500", times=2)
    sender.send_one(
        OutgoingMessage(to="a@example.org", subject="s", html="<p>h</p>", text="t", categories=("x",))
    )
    assert sender.backoff == 0.25
    assert len(slept) == 2 and 0.125 <= slept[0] <= 0.375 and 0.25 <= slept[1] <= 0.75


def test_sendgrid_batches_are_full_and_each_set_flushes_at_its_end(
    fake_sendgrid: FakeSendGrid, send_site: SendSite
) -> None:
    """Readers arrive set by set: 2,500 of one set are 1000/1000/500, whatever their ids."""
    # Interleave the sets' ids, so an id-ordered read would see them mixed.
    us: list[str] = []
    for i in range(5):
        us += send_site.add_bulk(500, ["US"], start=i * 500, prefix="us")
        send_site.add_bulk(3, ["Europe", "Asia"], start=i * 3, prefix="ea")
    send_site.add("climate@example.org", "Climate")
    summary = _sendgrid(send_site)
    assert summary.sent == 2516 and summary.ok
    sizes = {}
    for accepted in fake_sendgrid.accepted:
        first = accepted.body["personalizations"][0]["to"][0]["email"]
        sizes.setdefault(first[:2], []).append(len(accepted.body["personalizations"]))
    # requests go out several at once (sender.max_in_flight): their order at the server varies
    assert {k: sorted(v, reverse=True) for k, v in sizes.items()} == {
        "us": [1000, 1000, 500],
        "ea": [15],
        "cl": [1],
    }
    assert summary.batches == 5 and len(fake_sendgrid.accepted) == 5
    assert fake_sendgrid.delivered() == Counter({e: 1 for e in fake_sendgrid.delivered()})
    assert set(us) <= set(fake_sendgrid.delivered())
    st = edition_status(send_site.store, "2026-W02")
    assert st.deliveries == {"sent": 2516}
    assert st.category_sets == {"us": 2500, "asia, europe": 15, "climate": 1}


def _batch_rows(site: SendSite) -> list[tuple[int, str, str | None]]:
    with site.store.reading() as c:
        return [
            (r[0], r[1], r[2])
            for r in c.exec_driver_sql("SELECT id, state, pending_ids FROM batches ORDER BY id").all()
        ]


def test_batches_reach_deliveries_in_bulk_with_their_state(
    fake_sendgrid: FakeSendGrid, send_site: SendSite
) -> None:
    """Readers are listed once on their batch row, then written to deliveries at the run's end."""
    send_site.add_many(25)
    send_site.add("bad@example.org", "Climate")
    fake_sendgrid.fail_when(lambda body: "bad@example.org" in str(body["personalizations"]), "400")
    summary = _sendgrid(send_site)
    assert summary.sent == 25 and summary.failed_total == 1
    rows = _batch_rows(send_site)
    assert rows and all(pending is None for _, _, pending in rows)  # all written, none left over
    with send_site.store.reading() as c:
        joined = c.exec_driver_sql(
            "SELECT d.state, b.state, d.provider_message_id = b.provider_message_id, d.error "
            "FROM deliveries d JOIN batches b ON b.id = d.batch_id"
        ).all()
    assert len(joined) == 26
    assert {(d, b) for d, b, _, _ in joined} == {("sent", "accepted"), ("failed", "failed")}
    assert all(same for d, _, same, _ in joined if d == "sent")
    assert all("scripted bad request" in (error or "") for d, _, _, error in joined if d == "failed")


def _unwrite(site: SendSite, state: str) -> tuple[int, int]:
    """Put the last batch back as a run that died would leave it: readers only on the batch row."""
    with site.store.engine.begin() as conn:
        batch_id = conn.exec_driver_sql("SELECT max(id) FROM batches").scalar_one()
        ids = [
            r[0]
            for r in conn.exec_driver_sql(f"SELECT subscriber_id FROM deliveries WHERE batch_id = {batch_id}")
        ]
        conn.exec_driver_sql(f"DELETE FROM deliveries WHERE batch_id = {batch_id}")
        conn.exec_driver_sql(
            f"UPDATE batches SET state = '{state}', pending_ids = '{json.dumps(ids)}' WHERE id = {batch_id}"
        )
    return batch_id, len(ids)


def test_an_accepted_batch_a_dead_run_did_not_write_counts_as_sent(
    fake_sendgrid: FakeSendGrid, send_site: SendSite
) -> None:
    emails = send_site.add_many(30)
    _sendgrid(send_site)
    _, n = _unwrite(send_site, "accepted")
    assert n > 0
    st = edition_status(send_site.store, "2026-W02")
    assert st.deliveries == {"sent": 30}  # status counts the batch row's readers
    again = _sendgrid(send_site)
    assert again.sent == 0 and again.already_sent == 30
    assert fake_sendgrid.delivered() == Counter({e: 1 for e in emails})
    assert all(pending is None for _, _, pending in _batch_rows(send_site))
    assert edition_status(send_site.store, "2026-W02").deliveries == {"sent": 30}


def test_an_in_flight_batch_a_dead_run_did_not_write_is_reported_not_resent(
    fake_sendgrid: FakeSendGrid, send_site: SendSite
) -> None:
    send_site.add_many(30)
    _sendgrid(send_site)
    batch_id, n = _unwrite(send_site, "in_flight")
    assert edition_status(send_site.store, "2026-W02").deliveries == {"sent": 30 - n, "in_flight": n}
    again = _sendgrid(send_site)
    assert again.sent == 0 and [b.id for b in again.in_flight] == [batch_id]
    assert sum(fake_sendgrid.delivered().values()) == 30
    resent = _sendgrid(send_site, resend_in_flight=True)
    assert resent.sent == n and resent.ok
    assert edition_status(send_site.store, "2026-W02").deliveries == {"sent": 30}


def test_a_reader_erased_before_their_batch_is_written_is_left_out(
    fake_sendgrid: FakeSendGrid, send_site: SendSite
) -> None:
    send_site.add_many(30)
    _sendgrid(send_site)
    batch_id, _ = _unwrite(send_site, "accepted")
    with send_site.store.reading() as c:
        pending = c.exec_driver_sql(f"SELECT pending_ids FROM batches WHERE id = {batch_id}").scalar_one()
        first = json.loads(pending)[0]
        email = c.exec_driver_sql(f"SELECT email FROM subscribers WHERE id = {first}").scalar_one()
    subscribers.remove(send_site.store, email)  # erased (GDPR) while the batch was unwritten
    again = _sendgrid(send_site)
    assert again.sent == 0 and again.already_sent == 29
    assert edition_status(send_site.store, "2026-W02").deliveries == {"sent": 29}
    assert all(pending is None for _, _, pending in _batch_rows(send_site))


# -- a per-reader field: the greeting (edition.reader_fields, off by default) ----------------


def test_the_greeting_is_off_by_default(send_site: SendSite) -> None:
    subscribers.subscribe(
        send_site.store, send_site.config, "ann@example.org", "US", name="Ann", confirmed=True
    )
    _outbox(send_site)
    (msg,) = read_outbox(send_site.root / "out")
    assert "Hello" not in msg.get_body(("plain",)).get_content()
    assert "__DIGEST_READER" not in msg.get_body(("html",)).get_content()


def test_the_greeting_names_each_reader_safely(tmp_path, fast_retries) -> None:  # type: ignore[no-untyped-def]
    site = SendSite(tmp_path, edition={"reader_fields": ["greeting"]})
    subscribers.subscribe(
        site.store, site.config, "ann@example.org", "US", name="Ann <b>O'Neil</b>", confirmed=True
    )
    subscribers.subscribe(site.store, site.config, "anon@example.org", "US", confirmed=True)
    deliver(site.config, site.store, as_of=WHEN, sender_name="outbox", outbox=tmp_path / "out")
    by_to = {m["To"].addresses[0].addr_spec: m for m in read_outbox(tmp_path / "out")}
    ann, anon = by_to["ann@example.org"], by_to["anon@example.org"]
    assert "Hello Ann bO'Neilb," in ann.get_body(("plain",)).get_content()
    html = ann.get_body(("html",)).get_content()
    assert "<p>Hello Ann bO'Neilb,</p>" in html and "<b>" not in html
    assert "Hello," in anon.get_body(("plain",)).get_content()
    site.store.dispose()


def test_the_greeting_travels_as_a_sendgrid_substitution(tmp_path, fake_sendgrid: FakeSendGrid) -> None:  # type: ignore[no-untyped-def]
    site = SendSite(tmp_path, edition={"reader_fields": ["greeting"]}, sender={"backend": "sendgrid"})
    subscribers.subscribe(site.store, site.config, "ann@example.org", "US", name="Ann", confirmed=True)
    summary = deliver(site.config, site.store, as_of=WHEN, sender_name="sendgrid")
    assert summary.sent == 1
    (accepted,) = fake_sendgrid.accepted
    assert validate_mail(accepted.body) == []
    (p,) = accepted.body["personalizations"]
    assert p["substitutions"]["__DIGEST_READER_GREETING__"] == "Hello Ann,"
    assert "__DIGEST_READER_GREETING__" in accepted.body["content"][0]["value"]
    site.store.dispose()


def test_an_unknown_reader_field_is_a_config_error(tmp_path, fast_retries) -> None:  # type: ignore[no-untyped-def]
    from digest.errors import ConfigError

    site = SendSite(tmp_path, edition={"reader_fields": ["shoe_size"]})
    site.add("a@example.org", "US")
    with pytest.raises(ConfigError, match="'shoe_size', which is not a per-reader field"):
        deliver(site.config, site.store, as_of=WHEN, sender_name="outbox", outbox=tmp_path / "out")
    site.store.dispose()


def test_a_refused_send_at_leaves_the_edition_unlocked(send_site: SendSite) -> None:
    send_site.add("a@example.org", "US")
    later = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(SendError, match="--send-at needs the sendgrid sender"):
        _outbox(send_site, send_at=later)
    lock = EditionLock(send_site.store, "2026-W02")
    lock.acquire()  # nobody holds it
    lock.release()
    assert _outbox(send_site).sent == 1
