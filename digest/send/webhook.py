"""SendGrid's Event Webhook, as pure functions the web app mounts.

SendGrid signs each POST: header ``X-Twilio-Email-Event-Webhook-Signature`` is a base64 ECDSA
(P-256, SHA-256, DER) signature over the ``X-Twilio-Email-Event-Webhook-Timestamp`` header
value followed by the raw request body; the verification key (Mail Settings > Event Webhook)
is a base64 DER public key. We verify over the *raw bytes*, never re-serialised JSON.

Events also settle undecided batches (``digest.send.ledger``): the sender puts its edition and
ledger batch id in every request's ``custom_args`` (``{"edition": ..., "batch": ...}``), and an
event that SendGrid only makes for a request it took (processed, delivered, dropped, deferred,
bounce) proves that batch was accepted, so its readers are ``sent``, not ``undecided``.

Replays are refused twice over: a timestamp older than ``max_age`` fails verification, and
every event is recorded under its ``sg_event_id``, so one seen before changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

if TYPE_CHECKING:
    from digest.store import Store

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE_SECONDS = 600
# event -> the subscriber status it means; anything else is only recorded
STATUS_FOR_EVENT = {
    "bounce": "bounced",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
# Events SendGrid only makes for a request it accepted: they settle an undecided batch.
SETTLING_EVENTS = frozenset({"processed", "delivered", "dropped", "deferred", "bounce"})


def load_public_key(key: str | bytes) -> ec.EllipticCurvePublicKey:
    """A key as SendGrid shows it (base64 DER), or as PEM; ValueError if it is neither."""
    text = key.decode("ascii") if isinstance(key, bytes) else key
    text = text.strip()
    if "BEGIN PUBLIC KEY" in text:
        loaded = load_pem_public_key(text.encode("ascii"))
    else:
        try:
            der = base64.b64decode("".join(text.split()), validate=True)
        except binascii.Error:
            raise ValueError("the webhook public key is neither PEM nor base64") from None
        loaded = load_der_public_key(der)
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise ValueError("the webhook public key is not an elliptic-curve (ECDSA) key")
    return loaded


def verify_signature(
    public_key_pem_or_b64: str | bytes | ec.EllipticCurvePublicKey,
    payload: bytes,
    signature_b64: str,
    timestamp: str,
    *,
    max_age: float | None = MAX_AGE_SECONDS,
    now: float | None = None,
) -> bool:
    """True only for a valid signature over ``timestamp + payload`` made within ``max_age`` seconds."""
    if not signature_b64 or not timestamp:
        return False
    try:
        key = (
            public_key_pem_or_b64
            if isinstance(public_key_pem_or_b64, ec.EllipticCurvePublicKey)
            else load_public_key(public_key_pem_or_b64)
        )
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, timestamp.encode("utf-8") + payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error, TypeError):
        return False
    if max_age is not None:
        try:
            sent = float(timestamp)
        except ValueError:
            return False
        if abs((time.time() if now is None else now) - sent) > max_age:
            return False
    return True


@dataclass
class WebhookSummary:
    received: int = 0
    recorded: int = 0
    duplicates: int = 0
    marked: Counter[str] = field(default_factory=Counter)  # status -> subscribers marked
    unknown: int = 0  # events about addresses we do not have
    kinds: Counter[str] = field(default_factory=Counter)
    settled: int = 0  # undecided batches these events showed were accepted


def _event_id(event: dict[str, Any]) -> str:
    """sg_event_id, or (for events without one) a hash of the event itself."""
    eid = event.get("sg_event_id")
    if isinstance(eid, str) and eid:
        return eid[:200]
    return "sha256:" + hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()


def record_events(store: Store, events: list[dict[str, Any]]) -> WebhookSummary:
    """Record each event once (by sg_event_id) and mark bounced/complained/unsubscribed readers.

    A bounce of type ``blocked`` is temporary (the receiving server said "not now") and only
    recorded; a real bounce, a spam report and an unsubscribe end the subscription.
    """
    from sqlalchemy import select

    from digest.store import provider_events, utcnow

    if store.dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]

    summary = WebhookSummary()
    accepted: set[tuple[str, int]] = set()
    for event in events:
        if not isinstance(event, dict):
            continue
        summary.received += 1
        kind = str(event.get("event") or "unknown")[:32]
        summary.kinds[kind] += 1
        batch = _batch_of(event) if kind in SETTLING_EVENTS else None
        if batch is not None:
            accepted.add(batch)  # settling is idempotent: a replayed event changes nothing more
        email = event.get("email") if isinstance(event.get("email"), str) else None
        at = None
        if isinstance(event.get("timestamp"), int | float):
            at = datetime.fromtimestamp(event["timestamp"], UTC)
        event_id = _event_id(event)
        with store.reading() as c:  # seen before (SendGrid retries and replays)?
            seen = c.execute(select(provider_events.c.id).where(provider_events.c.id == event_id)).first()
        if seen is not None:
            summary.duplicates += 1
            continue
        # The status change first, the record of the event after: a busy database raises before
        # anything is recorded, so the provider's retry (it retries a 5xx) is not a "duplicate".
        changed = _apply_status(store, event, kind, email, summary)
        stmt = (
            insert(provider_events)
            .values(
                id=event_id,
                kind=kind,
                email=email,
                at=at,
                payload=json.dumps(event, sort_keys=True)[:20000],
                processed_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=[provider_events.c.id])
            .returning(provider_events.c.id)
        )
        with store.session() as s:
            # RETURNING, not rowcount: psycopg's rowcount through a Session is not 1 here.
            new = s.execute(stmt).first() is not None
        if not new:  # a concurrent post of the same event won (its status change is the same)
            summary.duplicates += 1
            continue
        summary.recorded += 1
        if changed:
            summary.marked[changed] += 1
    if accepted:
        from digest.send.ledger import settle

        summary.settled = settle(store, accepted)
    return summary


def _batch_of(event: dict[str, Any]) -> tuple[str, int] | None:
    """(edition, ledger batch id) from an event's custom args, or None if it has none."""
    edition, batch = event.get("edition"), event.get("batch")
    if not isinstance(edition, str) or not edition or not isinstance(batch, str | int):
        return None
    try:
        number = int(batch)
    except ValueError:
        return None
    return (edition[:64], number) if number > 0 else None


def _apply_status(
    store: Store, event: dict[str, Any], kind: str, email: str | None, summary: WebhookSummary
) -> str | None:
    """The subscriber status an event means, applied; the status if it changed, else None.

    A bounce of type ``blocked`` is temporary and changes nothing. Raises DatabaseBusyError
    (nothing changed: the caller answers busy and the provider retries); any other store
    problem counts the event as about an unknown reader.
    """
    from digest import subscribers
    from digest.errors import StoreError
    from digest.store import DatabaseBusyError

    status = STATUS_FOR_EVENT.get(kind)
    if status is None or not email:
        return None
    if kind == "bounce" and str(event.get("type", "")).lower() == "blocked":
        return None
    detail = {
        k: str(event[k])[:300]
        for k in ("sg_event_id", "sg_message_id", "reason", "type", "edition")
        if event.get(k) is not None
    }
    try:
        before = subscribers.get(store, email)
        if before is None:
            summary.unknown += 1
            return None
        subscribers.set_status(store, email, status, source="sendgrid", detail=detail)
    except DatabaseBusyError:
        raise  # nothing was changed or recorded: the provider's retry does it
    except StoreError:
        summary.unknown += 1
        return None
    return status if before.status != status else None
