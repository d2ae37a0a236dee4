"""Post titles and reader names reach Subject and To as plain text (issue 15), on the wire.

An encoded-word typed into a title or a name (``=?utf-8?b?QWRtaW4=?=``) must not show as
"Admin" in a mail client, and a right-to-left override must not survive into a header.
"""

from __future__ import annotations

from datetime import datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path

from fake_sendgrid import FakeSendGrid
from send_fixtures import *  # noqa: F403  (fixtures)
from send_fixtures import AS_OF, SendSite, write_posts

from digest import subscribers
from digest.send.delivery import deliver

HOSTILE = "=?utf-8?b?QWRtaW4=?="
RLO = "\u202e"


def _site(tmp_path: Path) -> SendSite:
    site = SendSite(tmp_path, edition={"subject": "{{ edition.titles | join(' / ') }}"})
    write_posts(
        tmp_path / "posts",
        {"evil.md": (f"{HOSTILE} {RLO}gnp.exe", "US", "2026-01-07 09:00")},
    )
    subscribers.subscribe(site.store, site.config, "reader@example.org", "US", name=HOSTILE, confirmed=True)
    return site


def _raw_headers(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]


def test_outbox_subject_and_to_never_decode_to_admin(tmp_path: Path, fast_retries: None) -> None:
    site = _site(tmp_path)
    try:
        summary = deliver(
            site.config,
            site.store,
            as_of=datetime.fromisoformat(AS_OF),
            sender_name="outbox",
            outbox=tmp_path / "out",
        )
        assert summary.sent == 1
        (eml,) = sorted((tmp_path / "out").rglob("*.eml"))
        raw = eml.read_bytes()
        msg = message_from_bytes(raw, policy=default)
        subject = str(msg["Subject"])
        to = msg["To"].addresses[0]
        assert "Admin" not in subject and to.display_name != "Admin"
        assert "utf-8?b?QWRtaW4=" in subject and "utf-8?b?QWRtaW4=" in to.display_name  # shown as typed
        assert RLO not in subject and "gnp.exe" in subject
        assert b"=?utf-8?b?QWRtaW4" not in _raw_headers(raw)  # the typed text is no encoded-word on the wire
    finally:
        site.store.dispose()


def test_sendgrid_request_carries_the_neutral_subject_and_name(
    tmp_path: Path, fake_sendgrid: FakeSendGrid
) -> None:
    site = _site(tmp_path)
    try:
        summary = deliver(
            site.config, site.store, as_of=datetime.fromisoformat(AS_OF), sender_name="sendgrid"
        )
        assert summary.sent == 1
        (accepted,) = fake_sendgrid.accepted
        body = accepted.body
        assert body is not None
        subject = body.get("subject") or body["personalizations"][0].get("subject")
        name = body["personalizations"][0]["to"][0]["name"]
        for value in (subject, name):
            assert "=?" not in value and RLO not in value
            assert "utf-8?b?QWRtaW4=" in value
    finally:
        site.store.dispose()
