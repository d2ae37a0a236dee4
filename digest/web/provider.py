"""POST /webhooks/sendgrid: SendGrid's signed Event Webhook, and what it may carry.

The signature and a fresh timestamp are what it trusts (no cookies or CSRF). A signed batch is
SendGrid's to retry for ever if we answer 5xx, so one odd event (a NaN or far-future timestamp,
a number where text belongs) must never fail the batch: it is skipped and logged, the rest are
recorded, and the batch gets a 2xx. Only a database that is busy or down answers 503, which
SendGrid retries; events already recorded are not recorded twice (``sg_event_id``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from digest.config import Config
from digest.errors import ConfigError
from digest.send import webhook
from digest.store import DatabaseBusyError

log = logging.getLogger(__name__)

MAX_EMAIL_CHARS = 320  # the provider_events.email column
TEXT_FIELDS = ("event", "email", "sg_event_id", "sg_message_id", "type", "reason")


def webhook_key(config: Config) -> ec.EllipticCurvePublicKey | None:
    """The configured SendGrid verification key, loaded once; a bad one stops `digest serve`."""
    text = config.web.sendgrid_webhook_public_key.strip()
    if not text:
        return None
    try:
        return webhook.load_public_key(text)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"[web] sendgrid_webhook_public_key is not a usable key ({exc}); paste the "
            "verification key from SendGrid (Mail Settings > Event Webhook > Signed Event Webhook)."
        ) from None


def event_problem(event: object) -> str:
    """Why this event cannot be recorded as it is, or "" when it can."""
    if not isinstance(event, dict):
        return f"it is a JSON {type(event).__name__}, not an object"
    for name in TEXT_FIELDS:
        value = event.get(name)
        if value is not None and not isinstance(value, str):
            return f"{name} is a {type(value).__name__}, not text"
    email = event.get("email")
    if isinstance(email, str) and len(email) > MAX_EMAIL_CHARS:
        return f"email is {len(email)} characters long"
    stamp = event.get("timestamp")
    if stamp is not None:
        if isinstance(stamp, bool) or not isinstance(stamp, int | float):
            return f"timestamp is a {type(stamp).__name__}, not a number"
        if not math.isfinite(stamp):
            return f"timestamp is {stamp!r}"
        try:
            datetime.fromtimestamp(stamp, UTC)
        except (ValueError, OverflowError, OSError):
            return f"timestamp {stamp!r} is not a date"
    return ""


def _shown(event: object) -> str:
    try:
        text = json.dumps(event, sort_keys=True, default=str)
    except (ValueError, TypeError, RecursionError):
        text = repr(event)
    return text if len(text) <= 200 else text[:197] + "..."


class SendGridWebhook:
    """The route: verify, parse, drop what cannot be recorded, record the rest."""

    def __init__(
        self,
        store: Any,
        key: ec.EllipticCurvePublicKey | None,
        *,
        record: Callable[[Any, list[dict[str, Any]]], webhook.WebhookSummary] = webhook.record_events,
    ) -> None:
        self.store = store
        self.key = key
        self.record = record

    async def handle(self, request: Request) -> Response:
        """Refused with 403, changing nothing: no key configured, no signature, a timestamp more
        than ten minutes off (a replay), or a signature that does not match the raw body."""
        if self.key is None:
            log.warning("refused a SendGrid webhook: [web] sendgrid_webhook_public_key is not set")
            return PlainTextResponse("webhook not configured\n", status_code=403)
        signature = request.headers.get(webhook.SIGNATURE_HEADER, "")
        timestamp = request.headers.get(webhook.TIMESTAMP_HEADER, "")
        if not signature or not timestamp:
            return PlainTextResponse("unsigned request\n", status_code=403)
        try:
            age = abs(time.time() - float(timestamp))
        except (ValueError, OverflowError):
            age = math.inf
        if not age <= webhook.MAX_AGE_SECONDS:
            log.warning("refused a SendGrid webhook with a stale timestamp %r (a replay?)", timestamp[:40])
            return PlainTextResponse("stale timestamp\n", status_code=403)
        body = await request.body()
        if not webhook.verify_signature(self.key, body, signature, timestamp):
            log.warning("refused a SendGrid webhook with a bad signature")
            return PlainTextResponse("bad signature\n", status_code=403)
        try:
            events = json.loads(body)
        except (ValueError, RecursionError):
            return PlainTextResponse("body is not JSON\n", status_code=400)
        if not isinstance(events, list):
            return PlainTextResponse("body is not a JSON list of events\n", status_code=400)
        good: list[dict[str, Any]] = []
        skipped = 0
        for n, event in enumerate(events):
            problem = event_problem(event)
            if problem:
                skipped += 1
                log.warning(
                    "skipped SendGrid webhook event %d of %d: %s: %s",
                    n + 1,
                    len(events),
                    problem,
                    _shown(event),
                )
            else:
                good.append(event)
        try:
            summary, failed = await run_in_threadpool(self._record, good)
        except DatabaseBusyError as exc:
            log.warning("SendGrid webhook: %s (SendGrid will retry)", exc)
            return PlainTextResponse(
                "database busy, retry later\n", status_code=503, headers={"Retry-After": "60"}
            )
        return JSONResponse(
            {
                "received": summary.received,
                "recorded": summary.recorded,
                "duplicates": summary.duplicates,
                "marked": dict(summary.marked),
                "skipped": skipped + failed,
            }
        )

    def _record(self, events: list[dict[str, Any]]) -> tuple[webhook.WebhookSummary, int]:
        """Record the batch; if it fails on something no check foresaw, one event at a time.

        Events already recorded are duplicates the second time, so going again is safe; an
        event that still fails alone is skipped and logged, never the batch.
        """
        try:
            return self.record(self.store, events), 0
        except DatabaseBusyError:
            raise
        except Exception as exc:  # any failure: isolate the event that caused it
            log.warning(
                "recording a SendGrid webhook batch failed (%s); recording its events one by one", exc
            )
        total = webhook.WebhookSummary()
        failed = 0
        for event in events:
            try:
                one = self.record(self.store, [event])
            except DatabaseBusyError:
                raise
            except Exception as exc:
                failed += 1
                log.warning(
                    "skipped a SendGrid webhook event that could not be recorded (%s): %s", exc, _shown(event)
                )
                continue
            total.received += one.received
            total.recorded += one.recorded
            total.duplicates += one.duplicates
            total.unknown += one.unknown
            total.marked.update(one.marked)
            total.kinds.update(one.kinds)
        return total, failed
