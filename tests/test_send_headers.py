"""List headers on the wire: the raw bytes each backend writes, not a parser's decoded view.

RFC 2369 wants ``List-Unsubscribe: <https://...>``; RFC 8058 adds ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click``; RFC 2919 ``List-Id``. Python's email package RFC 2047-encodes a
long header with no space to fold at, and ``policy.default`` decodes it again on reading, so
these tests read bytes. Golden .eml files (tests/golden/*.eml) hold a whole message per backend
with its Message-ID, Date and MIME boundaries normalised; regenerate with DIGEST_UPDATE_GOLDEN=1
and review the diff.
"""

from __future__ import annotations

import os
import re
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from send_fixtures import send_config
from test_send_backends import _free_port

from digest.check import check_edition
from digest.config import Config
from digest.links import LinkMaker, Signer
from digest.model import UNSUBSCRIBE_URL, RenderedEdition
from digest.send.base import BatchMessage, OutgoingMessage, Recipient, build_mime
from digest.send.headers import RawHeader, list_id, list_unsubscribe, unsubscribe_headers, unsubscribe_mailto
from digest.send.outbox import OutboxSender
from digest.send.smtp import SMTPSender

GOLDEN = Path(__file__).parent / "golden"
ISSUED_AT = 1_767_945_600  # 2026-01-09: signed links carry the time they were made
SECRET = "golden-secret-that-is-long-enough-0123456789"
ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[QqBb]\?")


@pytest.fixture(autouse=True)
def _fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import digest.links

    monkeypatch.setattr(digest.links.time, "time", lambda: float(ISSUED_AT))


def _config(tmp_path: Path, **sender: Any) -> Config:
    return send_config(tmp_path, sender={"unsubscribe_mailto": "unsubscribe@brief.example.com", **sender})


def _message(config: Config, to: str = "ada.lovelace@example.org") -> OutgoingMessage:
    """A reader's message as a send makes it: a batch personalised with signed links."""
    links = LinkMaker(config.web.base_url, Signer(SECRET))
    preferences, unsubscribe = links.preferences_url(to), links.unsubscribe_url(to)
    batch = BatchMessage(
        subject="The Test Brief: 3 new posts — Café ☕",
        html='<p>Hello “reader” &amp; friends</p><p><a href="__DIGEST_UNSUBSCRIBE_URL__">Unsubscribe</a></p>',
        text="Hello “reader” & friends\nUnsubscribe: __DIGEST_UNSUBSCRIBE_URL__\n",
        recipients=(),
        categories=("2026-W02",),
        custom_args={"edition": "2026-W02"},
    )
    recipient = Recipient(
        email=to,
        name="Ada Lovelace",
        substitutions={"__DIGEST_UNSUBSCRIBE_URL__": unsubscribe, "__DIGEST_PREFERENCES_URL__": preferences},
        headers=unsubscribe_headers(unsubscribe, unsubscribe_mailto(config.sender.unsubscribe_mailto)),
        custom_args={"subscriber_id": "42"},
    )
    return batch.personalise(recipient)


def _head(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]


def _raw_headers(raw: bytes, name: str) -> list[bytes]:
    """Every occurrence of header ``name`` as bytes, continuation lines kept as they are."""
    found = []
    lines = re.split(rb"\r?\n", _head(raw))
    for i, line in enumerate(lines):
        if line.lower().startswith(name.lower().encode() + b":"):
            value = [line]
            for more in lines[i + 1 :]:
                if more[:1] not in (b" ", b"\t"):
                    break
                value.append(more)
            found.append(b"\r\n".join(value))
    return found


def _normalised(raw: bytes) -> bytes:
    raw = re.sub(rb"(?m)^Message-ID: <[^>]+>", b"Message-ID: <MESSAGE-ID>", raw)
    raw = re.sub(rb"(?m)^Date: [^\r\n]+", b"Date: DATE", raw)
    return re.sub(rb"={15}[0-9]+==", b"===============BOUNDARY==", raw)


def _check_golden(name: str, raw: bytes) -> None:
    path = GOLDEN / name
    actual = _normalised(raw)
    if os.environ.get("DIGEST_UPDATE_GOLDEN") == "1":
        path.write_bytes(actual)
        return
    assert path.exists(), f"{path} is missing; create it with DIGEST_UPDATE_GOLDEN=1 and review it"
    expected = path.read_bytes()
    assert actual == expected, f"{name} differs from the golden file (DIGEST_UPDATE_GOLDEN=1 to accept)"


def _assert_list_headers(raw: bytes, config: Config) -> None:
    (unsub,) = _raw_headers(raw, "List-Unsubscribe")
    assert not ENCODED_WORD.search(unsub), unsub
    url = LinkMaker(config.web.base_url, Signer(SECRET)).unsubscribe_url("ada.lovelace@example.org")
    # RFC 2369: angle-bracketed URLs, comma-separated; folded only after a comma, between URLs
    assert unsub == (
        b"List-Unsubscribe: <"
        + url.encode()
        + b">,\r\n <mailto:unsubscribe@brief.example.com?subject=unsubscribe>"
    )
    assert _raw_headers(raw, "List-Unsubscribe-Post") == [
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    ]
    assert _raw_headers(raw, "List-Id") == [
        b"The Test Brief <digest.brief.example.com>".join([b"List-Id: ", b""])
    ]
    assert _head(raw).isascii()


# -- the builder ----------------------------------------------------------------------------------


def test_list_unsubscribe_is_plain_ascii_and_folds_only_between_urls() -> None:
    long_url = "https://example.com/u/" + "A" * 200
    value = list_unsubscribe(long_url, "mailto:u@example.com?subject=unsubscribe")
    assert value == f"<{long_url}>, <mailto:u@example.com?subject=unsubscribe>"
    folded = RawHeader("List-Unsubscribe", value).fold(policy=policy.SMTP)
    assert folded == f"List-Unsubscribe: <{long_url}>,\r\n <mailto:u@example.com?subject=unsubscribe>\r\n"
    short = RawHeader("List-Unsubscribe", "<https://e.com/u>, <mailto:u@e.com>").fold(policy=policy.SMTP)
    assert short == "List-Unsubscribe: <https://e.com/u>, <mailto:u@e.com>\r\n"
    # a URL that is not ASCII, or has a space or a bracket, is percent-encoded, never 2047-encoded
    assert list_unsubscribe("https://exämple.com/u?a=b c>") == "<https://ex%C3%A4mple.com/u?a=b%20c%3E>"
    with pytest.raises(ValueError, match="one line of ASCII"):
        RawHeader("List-Unsubscribe", "<https://e.com/\r\nBcc: x@y.z>")


def test_list_id_comes_from_config_or_the_site(tmp_path: Path) -> None:
    assert list_id(_config(tmp_path)) == "The Test Brief <digest.brief.example.com>"
    assert list_id(_config(tmp_path, list_id="news.brief.example.com")) == "<news.brief.example.com>"
    odd = send_config(
        tmp_path, site={"name": 'Le "Brief": café', "base_url": "https://www.brief.example.com"}
    )
    assert list_id(odd) == '"Le Brief: caf" <digest.brief.example.com>'


def test_python_would_encode_the_header_without_the_raw_builder() -> None:
    """Why RawHeader exists: the email package's own folding of a long URL (the bug, issue 14)."""
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["List-Unsubscribe"] = "<https://example.com/u/" + "A" * 120 + ">"
    assert ENCODED_WORD.search(msg.as_bytes(policy=policy.SMTP))


# -- the backends, byte for byte -------------------------------------------------------------------


def test_outbox_writes_the_list_headers_raw(tmp_path: Path) -> None:
    config = _config(tmp_path)
    sender = OutboxSender(config, tmp_path / "outbox")
    sender.send_one(_message(config))
    (path,) = (tmp_path / "outbox").glob("*.eml")
    raw = path.read_bytes()
    _assert_list_headers(raw, config)
    _check_golden("outbox.eml", raw)
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed["List-Unsubscribe"].startswith("<https://brief.example.com/")


class _Capture:
    def __init__(self) -> None:
        self.data: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data.append(envelope.original_content)
        return "250 OK"


def test_smtp_sends_the_list_headers_raw(tmp_path: Path) -> None:
    """What a real SMTP server (aiosmtpd on loopback) receives, as bytes."""
    capture = _Capture()
    port = _free_port()
    controller = Controller(capture, hostname="127.0.0.1", port=port, auth_require_tls=False)
    controller.start()
    try:
        config = _config(tmp_path, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")
        sender = SMTPSender(config)
        try:
            sender.send_one(_message(config))
        finally:
            sender.close()
    finally:
        controller.stop()
    (raw,) = capture.data
    _assert_list_headers(raw, config)
    _check_golden("smtp.eml", raw)


def test_build_mime_keeps_list_headers_raw_for_any_message(tmp_path: Path) -> None:
    config = _config(tmp_path)
    message = _message(config, to="x" * 40 + "@" + "sub." * 10 + "example.com")
    raw = build_mime(message, from_email="brief@example.com", list_id=list_id(config)).as_bytes(
        policy=policy.SMTP
    )
    assert not any(ENCODED_WORD.search(h) for h in _raw_headers(raw, "List-Unsubscribe"))
    assert all(len(line) <= 998 for line in _head(raw).split(b"\r\n"))


# -- digest check ---------------------------------------------------------------------------------


def _rendered() -> RenderedEdition:
    return RenderedEdition(
        subject="s",
        preheader="p",
        html=f'<html><body><a href="{UNSUBSCRIBE_URL}">Unsubscribe</a></body></html>',
        text=f"Unsubscribe: {UNSUBSCRIBE_URL}\n",
    )


def test_check_flags_an_encoded_word_in_the_unsubscribe_headers(tmp_path: Path) -> None:
    config = _config(tmp_path)
    encoded = {
        "List-Unsubscribe": "=?utf-8?q?=3Chttps=3A//brief.example.com/u/x=3E?=",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    found = [
        f for f in check_edition(_rendered(), config, headers=encoded) if f.code == "list-unsubscribe-encoded"
    ]
    assert found and found[0].level == "error" and "RFC 2047" in found[0].message
    good = {"List-Unsubscribe": f"<{UNSUBSCRIBE_URL}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    findings = check_edition(_rendered(), config, headers=good)
    assert not [f for f in findings if f.code == "list-unsubscribe-encoded" and f.level != "ok"]


def test_sendgrid_requests_carry_list_id_and_plain_list_unsubscribe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SendGrid writes the MIME itself; the request's JSON is what it is given."""
    from digest.send.sendgrid import SendGridSender

    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key-not-used")

    config = _config(tmp_path)
    body = SendGridSender.from_config(config).message_body(_message(config))
    assert body["headers"]["List-Id"] == "The Test Brief <digest.brief.example.com>"
    (personal,) = body["personalizations"]
    assert personal["headers"]["List-Unsubscribe"].startswith("<https://brief.example.com/unsubscribe/")
    assert personal["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_readme_send_writes_raw_list_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's first command, end to end: every .eml in the outbox, read as bytes."""
    import shutil

    from digest.cli import main

    root = Path(__file__).resolve().parent.parent
    for name in ("config.toml", "posts", "examples"):
        source = root / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    for key in ("DIGEST_CONFIG", "DIGEST_DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    for args in (["subscribers", "import", "examples/subscribers.csv"], ["send", "--as-of", "2026-01-09"]):
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert not exited.value.code, capsys.readouterr()
    emails = sorted((tmp_path / "build" / "outbox").glob("*.eml"))
    assert len(emails) == 5
    for path in emails:
        raw = path.read_bytes()
        (unsub,) = _raw_headers(raw, "List-Unsubscribe")
        assert not ENCODED_WORD.search(unsub) and unsub.startswith(b"List-Unsubscribe: <http"), unsub
        assert re.fullmatch(rb"List-Unsubscribe: <https?://[!-~]+>(,\r\n <[!-~]+>)?", unsub), unsub
        assert _raw_headers(raw, "List-Unsubscribe-Post") == [
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"
        ]
        (list_id_header,) = _raw_headers(raw, "List-Id")
        assert list_id_header.startswith(b"List-Id: ") and list_id_header.endswith(b">")
