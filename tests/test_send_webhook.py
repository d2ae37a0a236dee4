"""The Event Webhook: ECDSA signatures made in the test, events recorded once, readers marked."""

from __future__ import annotations

import base64
import json
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from send_fixtures import *  # noqa: F403  (fixtures)
from send_fixtures import SendSite

from digest import subscribers
from digest.send.webhook import record_events, verify_signature

KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_B64 = base64.b64encode(
    KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()
PUBLIC_PEM = (
    KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def sign(payload: bytes, timestamp: str, key: ec.EllipticCurvePrivateKey = KEY) -> str:
    return base64.b64encode(key.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))).decode()


def test_signature_checks() -> None:
    payload = b'[{"email":"a@example.org","event":"bounce","sg_event_id":"e1"}]'
    ts = str(int(time.time()))
    sig = sign(payload, ts)
    assert verify_signature(PUBLIC_B64, payload, sig, ts)
    assert verify_signature(PUBLIC_PEM, payload, sig, ts)
    assert not verify_signature(PUBLIC_B64, payload + b" ", sig, ts)  # body changed
    assert not verify_signature(PUBLIC_B64, payload, sig, str(int(ts) + 1))  # timestamp changed
    assert not verify_signature(PUBLIC_B64, payload, "", ts)  # unsigned
    assert not verify_signature(PUBLIC_B64, payload, "not base64!", ts)
    other = ec.generate_private_key(ec.SECP256R1())
    assert not verify_signature(PUBLIC_B64, payload, sign(payload, ts, other), ts)
    assert not verify_signature("garbage", payload, sig, ts)
    old = str(int(time.time()) - 3600)
    assert not verify_signature(PUBLIC_B64, payload, sign(payload, old), old)  # replayed later
    assert verify_signature(PUBLIC_B64, payload, sign(payload, old), old, max_age=None)


def test_events_mark_readers_once(send_site: SendSite) -> None:
    for email in (
        "bounce@example.org",
        "spam@example.org",
        "unsub@example.org",
        "blocked@example.org",
        "ok@example.org",
    ):
        send_site.add(email, "US")
    events = [
        {
            "email": "bounce@example.org",
            "event": "bounce",
            "type": "bounce",
            "sg_event_id": "b1",
            "timestamp": 1767000000,
        },
        {"email": "spam@example.org", "event": "spamreport", "sg_event_id": "s1", "timestamp": 1767000000},
        {"email": "unsub@example.org", "event": "unsubscribe", "sg_event_id": "u1"},
        {"email": "blocked@example.org", "event": "bounce", "type": "blocked", "sg_event_id": "k1"},
        {"email": "ok@example.org", "event": "delivered", "sg_event_id": "d1"},
        {"email": "stranger@example.org", "event": "bounce", "sg_event_id": "x1"},
    ]
    first = record_events(send_site.store, json.loads(json.dumps(events)))
    assert first.recorded == 6 and first.duplicates == 0
    assert dict(first.marked) == {"bounced": 1, "complained": 1, "unsubscribed": 1}
    assert first.unknown == 1
    status = {
        e: subscribers.get(send_site.store, e).status
        for e in (
            "bounce@example.org",
            "spam@example.org",
            "unsub@example.org",
            "blocked@example.org",
            "ok@example.org",
        )
    }
    assert status == {
        "bounce@example.org": "bounced",
        "spam@example.org": "complained",
        "unsub@example.org": "unsubscribed",
        "blocked@example.org": "active",
        "ok@example.org": "active",
    }
    again = record_events(send_site.store, events)  # a replay
    assert again.recorded == 0 and again.duplicates == 6 and not again.marked
