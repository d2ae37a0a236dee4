"""Addresses that are not ASCII (``jöhn@example.com``) over SMTP and into the outbox (issue 12).

A real aiosmtpd server on loopback, with and without SMTPUTF8; the raw bytes it received are
checked. Where the server offers SMTPUTF8 the reader gets the message with a UTF-8 ``To:``
(RFC 6532), never an encoded-word (``=?utf-8?q?j=C3=B6hn?=@example.com`` is nobody's
address); where it does not, that reader fails with a clear reason and everyone else is sent.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_string, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from send_fixtures import *  # noqa: F403  (fixtures)
from send_fixtures import send_config

from digest.send import BatchMessage, Recipient, make_sender
from digest.send.outbox import read_outbox

READERS = ["ada@example.org", "jöhn@example.com", "bob@example.org"]


class _Sink:
    """Keeps every envelope as the server saw it: MAIL FROM options, RCPT TO, raw DATA bytes."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (list(envelope.mail_options), list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=[True, False], ids=["smtputf8", "ascii-only"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[_Sink, int, bool]]:
    sink, port = _Sink(), _free_port()
    controller = Controller(
        sink, hostname="127.0.0.1", port=port, enable_SMTPUTF8=request.param, auth_require_tls=False
    )
    controller.start()
    yield sink, port, bool(request.param)
    controller.stop()


def _batch() -> BatchMessage:
    return BatchMessage(
        subject="The Test Brief — ünïcode",
        html="<p>Hello</p>",
        text="Hello",
        recipients=[Recipient(email=e, substitutions={}, headers={}) for e in READERS],
        categories=("digest",),
        custom_args={"edition": "2026-W02"},
    )


def test_smtputf8_where_offered_else_one_clear_failure(
    server: tuple[_Sink, int, bool], tmp_path: Path, fast_retries: None
) -> None:
    sink, port, offered = server
    config = send_config(
        tmp_path, sender={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none"}
    )
    sender = make_sender(config, "smtp")
    try:
        result = sender.send_batch(_batch())
    finally:
        sender.close()
    by_rcpt = {rcpts[0]: (options, raw) for options, rcpts, raw in sink.messages}
    if offered:
        assert result.failed == {}
        assert set(by_rcpt) == set(READERS)
        options, raw = by_rcpt["jöhn@example.com"]
        assert "SMTPUTF8" in options
        assert b"\r\nTo: j\xc3\xb6hn@example.com\r\n" in raw  # UTF-8 on the wire, no encoded-word
        assert b"=?utf-8?q?j" not in raw
        parsed = message_from_string(raw.decode("utf-8"), policy=policy.default)  # RFC 6532: UTF-8 headers
        assert parsed["To"].addresses[0].addr_spec == "jöhn@example.com"
        assert "SMTPUTF8" not in by_rcpt["ada@example.org"][0]  # ASCII readers go as before
        assert b"\r\nTo: ada@example.org\r\n" in by_rcpt["ada@example.org"][1]
    else:
        assert result.failed == {
            "jöhn@example.com": "jöhn@example.com: the SMTP server does not offer SMTPUTF8, which an "
            "address that is not ASCII needs; this reader was not sent"
        }
        assert set(by_rcpt) == {"ada@example.org", "bob@example.org"}  # everyone else is sent
    assert set(result.message_ids) == set(READERS) - set(result.failed)


def test_outbox_writes_a_non_ascii_address_as_utf8(tmp_path: Path, fast_retries: None) -> None:
    config = send_config(tmp_path)
    sender = make_sender(config, "outbox", outbox=tmp_path / "out")
    result = sender.send_batch(_batch())
    assert result.failed == {} and set(result.message_ids) == set(READERS)
    raw = {p.name: p.read_bytes() for p in (tmp_path / "out").glob("*.eml")}
    (john,) = [data for name, data in raw.items() if "example.com" in name]
    assert b"\r\nTo: j\xc3\xb6hn@example.com\r\n" in john and b"=?utf-8?q?j" not in john
    assert {m["To"].addresses[0].addr_spec for m in read_outbox(tmp_path / "out")} == set(READERS)


def test_a_message_that_cannot_be_built_fails_that_reader_alone(tmp_path: Path, fast_retries: None) -> None:
    """A header value with a line break (a broken config value) fails the message, not the batch."""
    config = send_config(tmp_path)
    sender = make_sender(config, "outbox", outbox=tmp_path / "out")
    batch = _batch()
    bad = Recipient(email="eve@example.org", substitutions={}, headers={"X-Bad": "a\r\nBcc: x@evil.example"})
    batch = BatchMessage(**{**batch.__dict__, "recipients": [*batch.recipients, bad]})
    result = sender.send_batch(batch)
    assert set(result.message_ids) == set(READERS)
    assert list(result.failed) == ["eve@example.org"]
    assert result.failed["eve@example.org"].startswith("eve@example.org: the message cannot be built")


def test_a_send_over_smtp_fails_only_the_reader_the_server_cannot_take(
    server: tuple[_Sink, int, bool], tmp_path: Path, fast_retries: None
) -> None:
    """The whole path: deliver, the ledger, `digest status` with the reason; a rerun sends nobody twice."""
    from datetime import datetime

    from send_fixtures import AS_OF, SendSite

    from digest.send.status import edition_status
    from digest.weekly import send as deliver

    sink, port, offered = server
    site = SendSite(tmp_path, sender={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none"})
    for email in READERS:
        site.add(email, "US")
    when = datetime.fromisoformat(AS_OF)
    summary = deliver(site.config, site.store, as_of=when, sender_name="smtp")
    st = edition_status(site.store, "2026-W02")
    assert st.audience == 3
    if offered:
        assert summary.sent == 3 and st.readers["sent"] == 3
    else:
        assert summary.sent == 2 and st.readers["failed"] == 1
        assert st.reasons == {
            "the SMTP server does not offer SMTPUTF8, which an address that is not ASCII needs; "
            "this reader was not sent": 1
        }
        assert st.batches == {"accepted": 1}  # two of its readers were sent
    again = deliver(site.config, site.store, as_of=when, sender_name="smtp")
    assert again.sent == 0 and again.already_sent == st.readers["sent"]
    assert sorted(r[0] for _, r, _ in sink.messages) == sorted(
        READERS if offered else set(READERS) - {"jöhn@example.com"}
    )
    site.store.dispose()
