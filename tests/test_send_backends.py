"""The outbox and SMTP backends: files that parse back, and real SMTP on loopback (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from send_fixtures import *  # noqa: F403  (fixtures)
from send_fixtures import send_config

from digest.errors import ProviderAuthError
from digest.model import PREFERENCES_URL, UNSUBSCRIBE_URL
from digest.send import BatchMessage, OutgoingMessage, Recipient, make_sender
from digest.send.outbox import read_outbox


def _message(to: str = "ada@example.org") -> OutgoingMessage:
    return OutgoingMessage(
        to=to,
        to_name="Ada Lovelace",
        subject="The Test Brief: 3 new posts — ünïcode",
        html="<p>Hello <b>Ada</b></p><p>1 High Street</p>",
        text="Hello Ada\n\n1 High Street",
        headers={
            "List-Unsubscribe": "<https://brief.example.com/unsubscribe/t>, <mailto:unsub@example.com>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        categories=("digest", "edition-2026-W02"),
        custom_args={"edition": "2026-W02"},
    )


def _check(msg: EmailMessage, to: str = "ada@example.org") -> None:
    assert msg["To"].addresses[0].addr_spec == to
    assert msg["From"].addresses[0].addr_spec == "brief@example.com"
    assert msg["Subject"] == "The Test Brief: 3 new posts — ünïcode"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "mailto:unsub@example.com" in msg["List-Unsubscribe"]
    assert msg["Message-ID"] and msg["Date"]
    assert msg["X-Digest-Args"] == '{"edition":"2026-W02"}'
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(("plain",)).get_content().startswith("Hello Ada")
    assert "<b>Ada</b>" in msg.get_body(("html",)).get_content()


def test_outbox_files_parse_back_with_both_parts_and_headers(tmp_path: Path) -> None:
    sender = make_sender(send_config(tmp_path), outbox=tmp_path / "out")
    mid = sender.send_one(_message())
    files = list((tmp_path / "out").glob("*.eml"))
    assert len(files) == 1 and "ada_at_example.org" in files[0].name
    assert not list((tmp_path / "out").glob(".tmp-*"))
    msg = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    _check(msg)
    assert msg["Message-ID"].strip("<>") == mid


def test_outbox_batch_fills_personal_links(tmp_path: Path) -> None:
    sender = make_sender(send_config(tmp_path, sender={"outbox": "mail"}))
    batch = BatchMessage(
        subject="Hi",
        html=f"<a href='{PREFERENCES_URL}'>prefs</a> <a href='{UNSUBSCRIBE_URL}'>unsub</a>",
        text=f"prefs {PREFERENCES_URL}\nunsub {UNSUBSCRIBE_URL}",
        recipients=[
            Recipient(
                f"r{i}@example.org",
                {PREFERENCES_URL: f"https://x/p/{i}", UNSUBSCRIBE_URL: f"https://x/u/{i}"},
                {
                    "List-Unsubscribe": f"<https://x/u/{i}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
            )
            for i in range(3)
        ],
    )
    result = sender.send_batch(batch)
    assert len(result.message_ids) == 3 and not result.failed
    messages = read_outbox(tmp_path / "mail")
    assert len(messages) == 3
    by_to = {m["To"]: m for m in messages}
    text = by_to["r2@example.org"].get_body(("plain",)).get_content()
    assert "https://x/p/2" in text and "https://x/u/2" in text and "__DIGEST" not in text
    assert by_to["r1@example.org"]["List-Unsubscribe"] == "<https://x/u/1>"


# -- SMTP -----------------------------------------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"mailer" and data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def smtp_server(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """An aiosmtpd server on 127.0.0.1; param: 'none', 'starttls' or 'ssl'."""
    security = getattr(request, "param", "none")
    sink = _Sink()
    port = _free_port()
    kwargs: dict[str, Any] = {"authenticator": _authenticator}
    if security != "none":
        cert, key = _self_signed(tmp_path)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client's default context trusts it
        if security == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        else:
            kwargs.update(ssl_context=ctx, auth_require_tls=False)  # aiosmtpd cannot see the TLS
    else:
        kwargs.update(auth_require_tls=False)
    controller = Controller(sink, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    sink.port = port  # type: ignore[attr-defined]
    sink.security = security  # type: ignore[attr-defined]
    yield sink
    controller.stop()


def _smtp_config(tmp_path: Path, server: Any, **extra: Any) -> Any:
    return send_config(
        tmp_path,
        sender={
            "smtp_host": "localhost" if server.security != "none" else "127.0.0.1",
            "smtp_port": server.port,
            "smtp_security": server.security,
            "smtp_username": "mailer",
            **extra,
        },
    )


@pytest.mark.parametrize("smtp_server", ["none", "starttls", "ssl"], indirect=True)
def test_smtp_delivers_both_parts_and_headers(
    smtp_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_retries: None
) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "s3cret")
    sender = make_sender(_smtp_config(tmp_path, smtp_server), "smtp")
    sender.send_one(_message())
    sender.send_one(_message("bob@example.org"))
    sender.close()
    assert [m[1] for m in smtp_server.messages] == [["ada@example.org"], ["bob@example.org"]]
    assert smtp_server.messages[0][0] == "brief@example.com"
    msg = message_from_bytes(smtp_server.messages[0][2], policy=policy.default)
    _check(msg)  # type: ignore[arg-type]


def test_smtp_wrong_password_stops(
    smtp_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_retries: None
) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "wrong")
    sender = make_sender(_smtp_config(tmp_path, smtp_server), "smtp")
    with pytest.raises(ProviderAuthError, match="DIGEST_SMTP_PASSWORD"):
        sender.send_one(_message())
    assert smtp_server.messages == []


def test_smtp_unreachable_gives_up_after_retries(tmp_path: Path, fast_retries: None) -> None:
    from digest.errors import SendError

    config = send_config(
        tmp_path,
        sender={
            "smtp_host": "127.0.0.1",
            "smtp_port": _free_port(),
            "smtp_security": "none",
            "max_retries": 2,
        },
    )
    with pytest.raises(SendError, match="connect"):
        make_sender(config, "smtp").send_one(_message())
