"""Reports that tell the truth (issue 12, point 5): read-only commands, status, dry runs, reruns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from fake_sendgrid import FakeSendGrid
from send_fixtures import *  # noqa: F403  (fixtures)
from send_fixtures import AS_OF, SendSite
from test_hostile_cli_store import CONFIG, Result, digest, one_line_error  # noqa: F401  (digest: a fixture)
from test_send_delivery import _unwrite

from digest.send.status import READER_STATES, edition_status
from digest.weekly import send as deliver


@pytest.fixture
def cli(digest: Callable[..., Result]) -> Callable[..., Result]:  # noqa: F811  (the fixture)
    """``cli(folder, *args)``: digest.cli.main in this process, as a user runs it there (the
    hostile-CLI suite's runner)."""
    return digest


def test_read_only_send_commands_create_no_database(tmp_path: Path, cli: Callable[..., Result]) -> None:
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    for args in (
        ("status",),
        ("status", "2026-W02"),
        ("send", "--dry-run"),
        ("run", "--dry-run"),
        ("cancel",),
    ):
        line = one_line_error(cli(tmp_path, *args))
        assert "there is no database at" in line, (args, line)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"], args
    shown = cli(tmp_path, "schedule")
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


# -- what a send and `digest status` say --------------------------------------------------------

WHEN = datetime.fromisoformat(AS_OF)


def _sums_to_audience(site: SendSite, audience: int) -> dict[str, int]:
    st = edition_status(site.store, "2026-W02")
    assert set(st.readers) == set(READER_STATES)
    assert st.audience == sum(st.readers.values()) == audience, st.readers
    return st.readers


def test_a_rerun_and_a_dry_run_never_call_undecided_readers_already_sent(
    fake_sendgrid: FakeSendGrid, send_site: SendSite
) -> None:
    emails = send_site.add_many(30)
    deliver(send_site.config, send_site.store, as_of=WHEN, sender_name="sendgrid")
    _, n = _unwrite(send_site, "in_flight")  # a run died with its last batch's answer unknown
    readers = _sums_to_audience(send_site, 30)
    assert readers["undecided"] == n and readers["sent"] == 30 - n
    st = edition_status(send_site.store, "2026-W02")
    assert st.shown_status == f"incomplete: {n} undecided, see below"
    dry = deliver(send_site.config, send_site.store, as_of=WHEN, sender_name="sendgrid", dry_run=True)
    assert (dry.sent, dry.already_sent, sum(b.recipients for b in dry.in_flight)) == (0, 30 - n, n)
    again = deliver(send_site.config, send_site.store, as_of=WHEN, sender_name="sendgrid")
    assert (again.sent, again.already_sent, sum(b.recipients for b in again.in_flight)) == (0, 30 - n, n)
    dry_resend = deliver(
        send_site.config,
        send_site.store,
        as_of=WHEN,
        sender_name="sendgrid",
        dry_run=True,
        resend_in_flight=True,
    )
    assert (dry_resend.sent, dry_resend.already_sent) == (n, 30 - n)  # what --resend-in-flight would do
    resent = deliver(
        send_site.config, send_site.store, as_of=WHEN, sender_name="sendgrid", resend_in_flight=True
    )
    assert resent.sent == n
    assert _sums_to_audience(send_site, 30)["sent"] == 30
    assert edition_status(send_site.store, "2026-W02").shown_status == "sent"
    delivered = fake_sendgrid.delivered()  # the operator chose to resend: those n twice, nobody else
    assert sorted(delivered.values()) == [1] * (30 - n) + [2] * n and set(delivered) == set(emails)


def test_the_dry_run_consults_the_ledger(fake_sendgrid: FakeSendGrid, send_site: SendSite) -> None:
    send_site.add_many(9)
    fake_sendgrid.fail_when(lambda body: "reader00003@" in str(body["personalizations"]), "400")
    deliver(send_site.config, send_site.store, as_of=WHEN, sender_name="sendgrid")
    readers = _sums_to_audience(send_site, 9)
    assert readers["failed"] >= 1 and readers["sent"] == 9 - readers["failed"]
    fake_sendgrid.state.rules.clear()
    dry = deliver(send_site.config, send_site.store, as_of=WHEN, sender_name="sendgrid", dry_run=True)
    assert (dry.sent, dry.already_sent) == (readers["failed"], readers["sent"])  # not "would be sent 9"
    _, n = _unwrite(send_site, "accepted")  # accepted, but its run died before writing deliveries
    assert n > 0
    dry = deliver(send_site.config, send_site.store, as_of=WHEN, sender_name="sendgrid", dry_run=True)
    assert (dry.sent, dry.already_sent) == (readers["failed"], readers["sent"])
    send_site.add("late@example.org", "US")  # joined after the edition went out: not its audience
    assert _sums_to_audience(send_site, 9)["pending"] == 0
    with send_site.store.engine.begin() as conn:  # a run that stopped before reaching some readers
        last = conn.exec_driver_sql(
            "SELECT min(id) FROM batches WHERE state = 'accepted' AND pending_ids IS NULL"
        ).scalar_one()
        k = conn.exec_driver_sql(f"DELETE FROM deliveries WHERE batch_id = {last}").rowcount
        conn.exec_driver_sql(f"DELETE FROM batches WHERE id = {last}")
    assert k > 0 and _sums_to_audience(send_site, 9)["pending"] == k
    assert edition_status(send_site.store, "2026-W02").shown_status == f"incomplete: {k} pending, see below"


def test_smtp_down_is_not_called_sent_or_accepted(
    tmp_path: Path, fast_retries: None, cli: Callable[..., Result]
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on: the SMTP server is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = SendSite(tmp_path, sender={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none"})
    for i in range(5):  # one category set: one batch
        site.add(f"r{i}@example.org", "US")
    summary = deliver(site.config, site.store, as_of=WHEN, sender_name="smtp")
    assert summary.sent == 0 and summary.failed_total == 5 and summary.batches_failed == summary.batches
    st = edition_status(site.store, "2026-W02")
    assert "accepted" not in st.batches and st.batches.get("failed") == summary.batches
    assert st.readers["failed"] == st.audience == 5
    assert st.shown_status == "not sent: all 5 readers failed, see below"
    # one reader was retried; the rest of its batch failed at once, and the reasons group
    assert sorted(st.reasons.values()) == [1, 4] and all("connect" in r for r in st.reasons)
    assert min(st.reasons, key=len).startswith("the SMTP connection failed")
    (tmp_path / "config.toml").write_text(
        f'categories = ["US", "Europe", "Asia", "Markets", "Technology", "Climate"]\n'
        f'[database]\nurl = "sqlite:///{tmp_path / "digest.db"}"\n',
        encoding="utf-8",
    )
    shown = cli(tmp_path, "status")
    assert shown.returncode == 0, shown.stderr
    assert "accepted" not in shown.stdout and "not sent: all 5 readers failed" in shown.stdout
    site.store.dispose()


def test_a_batch_that_cannot_be_built_fails_alone_with_its_reason(
    fake_sendgrid: FakeSendGrid, send_site: SendSite
) -> None:
    """Two rows one address key apart (a database from before the one rule): that batch fails,
    recorded with its reason for `digest status`; every other batch goes out; a rerun retries it."""
    send_site.add("ana@x.example", "US")
    send_site.add("zed@x.example", "US")
    others = [send_site.add(f"r{i}@example.org", "Europe").email for i in range(5)]
    with send_site.store.engine.begin() as conn:  # the legacy row: its key was computed by another rule
        conn.exec_driver_sql("UPDATE subscribers SET email = 'ANA@x.example' WHERE email = 'zed@x.example'")
    summary = deliver(send_site.config, send_site.store, as_of=WHEN, sender_name="sendgrid")
    assert summary.sent == 5 and summary.failed_total == 2 and summary.batches_failed == 1
    assert set(fake_sendgrid.delivered()) == set(others)
    st = edition_status(send_site.store, "2026-W02")
    assert st.readers["failed"] == 2 and st.readers["sent"] == 5 and st.audience == 7
    assert st.reasons == {"ANA@x.example appears twice in one batch; SendGrid refuses duplicates.": 2}
    assert st.batches == {"accepted": 1, "failed": 1}


def test_a_busy_database_answers_busy_and_the_retry_is_not_lost(
    tmp_path: Path, fast_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SendGrid retries a post we answer 5xx: a busy database must neither swallow the event
    (counted "unknown") nor leave it recorded as seen, or the retry would be a "duplicate"."""
    import sqlite3

    from digest import store as store_module
    from digest import subscribers
    from digest.send.webhook import record_events
    from digest.store import DatabaseBusyError

    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    site = SendSite(tmp_path)
    site.add("ana@example.org", "US")
    events = [{"event": "unsubscribe", "email": "ana@example.org", "sg_event_id": "e1", "timestamp": 1}]
    real = subscribers.set_status
    other = sqlite3.connect(tmp_path / "digest.db", isolation_level=None)

    def another_writer_first(*args: object, **kwargs: object) -> object:
        other.execute("BEGIN IMMEDIATE")  # a real second writer takes the lock at this moment
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(subscribers, "set_status", another_writer_first)
    with pytest.raises(DatabaseBusyError):
        record_events(site.store, events)
    other.execute("ROLLBACK")
    other.close()
    monkeypatch.setattr(subscribers, "set_status", real)
    retry = record_events(site.store, events)  # the provider's retry of the same post
    assert (retry.recorded, retry.duplicates, retry.unknown) == (1, 0, 0)
    assert subscribers.get(site.store, "ana@example.org").status == "unsubscribed"  # type: ignore[union-attr]
    site.store.dispose()
