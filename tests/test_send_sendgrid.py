"""The SendGrid backend against the fake server: the real client, nothing mocked inside it."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from fake_sendgrid import FakeSendGrid, validate_mail
from send_fixtures import *  # noqa: F403  (fixtures)
from send_fixtures import send_config

from digest.errors import ConfigError, ProviderAuthError, SendError
from digest.model import PREFERENCES_URL, UNSUBSCRIBE_URL
from digest.send import BatchMessage, OutgoingMessage, Recipient, make_sender
from digest.send.sendgrid import SendGridSender


def _batch(n: int, *, start: int = 0, **kw: object) -> BatchMessage:
    recipients = [
        Recipient(
            email=f"reader{i}@example.org",
            substitutions={
                PREFERENCES_URL: f"https://b.example/p/{i}",
                UNSUBSCRIBE_URL: f"https://b.example/u/{i}",
            },
            headers={
                "List-Unsubscribe": f"<https://b.example/u/{i}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            custom_args={"subscriber": str(i)},
            name=f"Reader, No. {i}",
        )
        for i in range(start, start + n)
    ]
    return BatchMessage(
        subject="This week",
        html=f"<p>Hi</p><a href='{UNSUBSCRIBE_URL}'>unsubscribe</a>",
        text=f"Hi\nUnsubscribe: {UNSUBSCRIBE_URL}",
        recipients=recipients,
        categories=("digest", "edition-2026-W02"),
        custom_args={"edition": "2026-W02"},
        **kw,  # type: ignore[arg-type]
    )


def _sender(tmp_path: Path) -> SendGridSender:
    sender = make_sender(send_config(tmp_path), "sendgrid")
    assert isinstance(sender, SendGridSender)
    return sender


def test_batch_is_one_valid_request_with_one_personalization_each(
    fake_sendgrid: FakeSendGrid, tmp_path: Path
) -> None:
    result = _sender(tmp_path).send_batch(_batch(1000))
    assert len(fake_sendgrid.accepted) == 1
    body = fake_sendgrid.accepted[0].body
    assert body is not None and validate_mail(body) == []
    assert len(body["personalizations"]) == 1000
    first = body["personalizations"][0]
    assert first["to"] == [{"email": "reader0@example.org", "name": "Reader No. 0"}]
    assert first["substitutions"][UNSUBSCRIBE_URL] == "https://b.example/u/0"
    assert first["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["custom_args"] == {"edition": "2026-W02", "subscriber": "0"}
    assert body["categories"] == ["digest", "edition-2026-W02"]
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert set(result.message_ids) == {f"reader{i}@example.org" for i in range(1000)}
    assert set(result.message_ids.values()) == {fake_sendgrid.accepted[0].message_id}


def test_limits_are_checked_before_sending(fake_sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    sender = _sender(tmp_path)
    with pytest.raises(SendError, match="at most 1000"):
        sender.send_batch(_batch(1001))
    dup = _batch(2)
    dup = BatchMessage(**{**dup.__dict__, "recipients": [dup.recipients[0], dup.recipients[0]]})
    with pytest.raises(SendError, match="twice"):
        sender.send_batch(dup)
    with pytest.raises(SendError, match="72 hours"):
        sender.send_batch(_batch(1, send_at=int(time.time()) + 73 * 3600))
    with pytest.raises(SendError, match="header"):
        sender.send_one(
            OutgoingMessage(to="a@example.org", subject="s", html="h", text="t", headers={"Subject": "x"})
        )
    assert fake_sendgrid.mail_requests() == 0


def test_send_one_returns_message_id(fake_sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    mid = _sender(tmp_path).send_one(
        OutgoingMessage(
            to="a@example.org", subject="Confirm", html="<p>x</p>", text="x", categories=("confirm",)
        )
    )
    assert mid == fake_sendgrid.accepted[0].message_id
    assert validate_mail(fake_sendgrid.accepted[0].body) == []


def test_429_storm_is_ridden_out(fake_sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    fake_sendgrid.fail_next("429", times=8, seconds=0)
    sender = _sender(tmp_path)
    sender.send_batch(_batch(10))
    assert len(fake_sendgrid.accepted) == 1
    assert fake_sendgrid.mail_requests() == 9


def test_429_waits_until_the_reset_time(fake_sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    waits: list[float] = []
    sender = _sender(tmp_path)
    sender.sleep = waits.append
    fake_sendgrid.fail_next("429", times=1, seconds=30)
    sender.send_batch(_batch(1))
    assert len(waits) == 1 and 28 <= waits[0] <= 31


def test_500_storm_backs_off_then_succeeds(fake_sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    fake_sendgrid.fail_next("500", times=4)
    _sender(tmp_path).send_batch(_batch(5))
    assert len(fake_sendgrid.accepted) == 1 and fake_sendgrid.mail_requests() == 5


def test_500_forever_gives_up_after_max_retries(fake_sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    fake_sendgrid.fail_next("500", times=50)
    with pytest.raises(SendError, match="gave up after 5 attempts"):
        _sender(tmp_path).send_batch(_batch(5))
    assert fake_sendgrid.mail_requests() == 5


def test_a_read_timeout_is_undecided_not_retried(fake_sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    """Issue 12: the request was written and no answer came, so SendGrid may have taken it; a
    blind retry could deliver twice. (Before: retried, which duplicated accepted requests.)"""
    from digest.errors import UndecidedError

    config = send_config(tmp_path, sender={"timeout_seconds": 0.3})
    fake_sendgrid.fail_next("accept_hang", times=1, seconds=1.0)
    with pytest.raises(UndecidedError, match="may have been accepted"):
        make_sender(config, "sendgrid").send_batch(_batch(3))
    assert fake_sendgrid.mail_requests() == 1 and len(fake_sendgrid.accepted) == 1


def test_a_refused_connection_is_retried(tmp_path: Path) -> None:
    """Connect-phase failures never reached SendGrid: retried (here, until it gives up)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nobody listens: connection refused
    sender = SendGridSender(
        "SG.x",
        host=f"http://127.0.0.1:{port}",
        from_email="a@example.com",
        max_retries=2,
        sleep=lambda s: None,
    )
    with pytest.raises(SendError, match="gave up after 3 attempts"):
        sender.send_batch(_batch(1))
    assert sender.requests == 3


def test_requests_reuse_one_connection(fake_sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    sender = _sender(tmp_path)
    for i in range(5):
        sender.send_batch(_batch(2, start=10 * i))
    assert len(fake_sendgrid.accepted) == 5
    assert fake_sendgrid.state.connections == 1
    sender.close()


def test_an_idle_connection_is_not_reused(
    fake_sendgrid: FakeSendGrid, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.send import keepalive

    sender = _sender(tmp_path)
    sender.send_batch(_batch(1))
    monkeypatch.setattr(keepalive, "IDLE_SECONDS", 0.0)
    sender.send_batch(_batch(1, start=1))
    assert fake_sendgrid.state.connections == 2
    assert len(fake_sendgrid.accepted) == 2


def test_a_connection_the_server_closed_is_replaced(fake_sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    sender = _sender(tmp_path)
    fake_sendgrid.fail_next("close_after")  # accepted, then the server hangs up without a word
    sender.send_batch(_batch(1))
    # Once the close has arrived the connection is not reused (checked before each request). A
    # request racing the close would be written and unanswered: undecided, never retried (issue 12).
    time.sleep(0.2)
    sender.send_batch(_batch(1, start=1))
    assert fake_sendgrid.state.connections == 2
    assert fake_sendgrid.delivered() == {"reader0@example.org": 1, "reader1@example.org": 1}


def test_400_is_a_send_error_with_the_providers_message(fake_sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    fake_sendgrid.fail_next("400")
    with pytest.raises(SendError, match=r"400.*scripted bad request"):
        _sender(tmp_path).send_batch(_batch(2))
    assert fake_sendgrid.mail_requests() == 1  # never retried


@pytest.mark.parametrize("kind", ["401", "403"])
def test_auth_failure_stops_and_says_check_the_key(
    fake_sendgrid: FakeSendGrid, tmp_path: Path, kind: str
) -> None:
    fake_sendgrid.fail_next(kind)
    with pytest.raises(ProviderAuthError, match="check \\$SENDGRID_API_KEY"):
        _sender(tmp_path).send_batch(_batch(2))
    assert fake_sendgrid.mail_requests() == 1


def test_wrong_key_is_401(
    fake_sendgrid: FakeSendGrid,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong-key-123")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderAuthError) as info:
        _sender(tmp_path).send_batch(_batch(1))
    assert "SG.wrong-key-123" not in str(info.value)
    assert "SG.wrong-key-123" not in caplog.text  # python_http_client would log it at DEBUG


def test_missing_key_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        make_sender(send_config(tmp_path), "sendgrid")


def test_suppressions_are_paged(fake_sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    fake_sendgrid.suppress("bounces", *(f"b{i}@example.org" for i in range(1203)))
    fake_sendgrid.suppress("spam_reports", "Spam@Example.org")
    fake_sendgrid.suppress("unsubscribes", "gone@example.org")
    found = _sender(tmp_path).suppressions()
    assert len(found) == 1205
    assert found["spam@example.org"] == "complained"
    assert found["gone@example.org"] == "unsubscribed"
    assert found["b1202@example.org"] == "bounced"


def test_scheduled_send_can_be_cancelled(fake_sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    sender = _sender(tmp_path)
    batch_id = sender.new_batch_id()
    sender.send_batch(_batch(3, send_at=int(time.time()) + 3600, batch_id=batch_id))
    assert fake_sendgrid.accepted[0].body["send_at"] > time.time()
    sender.cancel_scheduled(batch_id)
    assert sender.scheduled_status(batch_id) == "cancel"
    assert sum(fake_sendgrid.delivered().values()) == 0


def test_cancel_too_late_is_refused(fake_sendgrid: FakeSendGrid, tmp_path: Path) -> None:
    sender = _sender(tmp_path)
    batch_id = sender.new_batch_id()
    sender.send_batch(_batch(1, send_at=int(time.time()) + 120, batch_id=batch_id))
    with pytest.raises(SendError, match="10 minutes"):
        sender.cancel_scheduled(batch_id)


def test_fake_server_rejects_what_sendgrid_rejects() -> None:
    ok = {
        "from": {"email": "a@example.com"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "t"}],
        "personalizations": [{"to": [{"email": "b@example.com"}]}],
    }
    assert validate_mail(ok) == []
    assert validate_mail({**ok, "personalizations": [{"to": [{"email": "b@example.com"}]}] * 2})
    assert validate_mail({**ok, "headers": {"Reply-To": "x"}})
    assert validate_mail({**ok, "subject": ""})
    assert validate_mail({**ok, "categories": [str(i) for i in range(11)]})
    assert validate_mail({**ok, "send_at": int(time.time()) + 80 * 3600})
    assert validate_mail({k: v for k, v in ok.items() if k != "from"})
    assert validate_mail(
        {**ok, "content": [{"type": "text/html", "value": "h"}, {"type": "text/plain", "value": "t"}]}
    )
    many = [{"to": [{"email": f"r{i}@example.com"}]} for i in range(1001)]
    assert validate_mail({**ok, "personalizations": many})
