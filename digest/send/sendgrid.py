"""The SendGrid backend: the real ``sendgrid`` client, v3 Mail Send, one request per batch.

Request bodies are plain dicts serialised once per batch (not ``sendgrid.helpers.mail``
objects): a million recipients would otherwise mean millions of helper objects, and the helpers
check none of the published limits anyway. The limits are checked here instead: at most 1,000
personalizations (one recipient each, so nobody sees another address), each address once per
request, no reserved header, at most 10 categories, ``send_at`` at most 72 hours ahead.

What the provider's answers mean for us:

- 202: accepted; ``X-Message-Id`` is kept for every recipient of the request.
- 429: wait until ``X-RateLimit-Reset`` (epoch seconds), then try again.
- 5xx, a refused connection, a failure while connecting or writing the request: exponential
  backoff with jitter, at most ``sender.max_retries`` times (the server never had the request).
- A read timeout or a reset after the request was written: ambiguous (SendGrid may have
  accepted it, and has no idempotency key). Never retried: ``UndecidedError``, and the batch is
  ``undecided`` until the Event Webhook settles it (``digest.send.webhook``).
- 400, 413, 404: the request itself is wrong; ``SendError`` for this batch, the caller goes on.
- 401, 403: ``ProviderAuthError``: the key is wrong or lacks the Mail Send permission; stop.

The API key is read from ``$SENDGRID_API_KEY`` and never logged: python_http_client logs
request headers (with the key) at DEBUG, so its logger is held at INFO.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.error import URLError

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from digest.addresses import key as address_key
from digest.config import SENDGRID_KEY_ENV
from digest.errors import ConfigError, ProviderAuthError, SendError, UndecidedError
from digest.send.base import (
    RESERVED_HEADERS,
    BatchMessage,
    BatchResult,
    OutgoingMessage,
    retry_base_seconds,
)
from digest.send.fragments import PersonalizationWriter as PersonalizationWriter
from digest.send.fragments import clean_name as _clean_name
from digest.send.headers import list_id
from digest.send.keepalive import ConnectionPool, KeepAliveClient, NoAnswer

if TYPE_CHECKING:
    from digest.config import Config

log = logging.getLogger(__name__)
# Its DEBUG lines include the Authorization header (the key) and whole request bodies.
logging.getLogger("python_http_client").setLevel(logging.INFO)
logging.getLogger("python_http_client.client").setLevel(logging.INFO)

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CATEGORIES = 10
MAX_BODY_CHARS = 30_000_000  # SendGrid: the whole request at most 30 MB (a str; ASCII-safe bound below)
MAX_SEND_AHEAD = 72 * 3600
MAX_BACKOFF = 60.0
MAX_RATE_LIMIT_WAIT = 120.0
SUPPRESSION_LISTS = {"unsubscribes": "unsubscribed", "bounces": "bounced", "spam_reports": "complained"}
_JSON = {"Content-Type": "application/json; charset=utf-8"}
_TRANSIENT = (URLError, TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException)


class SendGridSender:
    """Sends through SendGrid's v3 API with the official client pointed at ``host``."""

    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        *,
        host: str = "https://api.sendgrid.com",
        from_email: str,
        from_name: str = "",
        reply_to: str = "",
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        list_id: str = "",
    ) -> None:
        self.list_id = list_id  # List-Id (RFC 2919) on every message (digest.send.headers)
        if not api_key:
            raise ConfigError(
                f"${SENDGRID_KEY_ENV} is not set. Create an API key with the Mail Send permission in "
                "SendGrid (Settings > API Keys) and export it, or use --sender outbox."
            )
        self._client = SendGridAPIClient(api_key, host=host.rstrip("/"))
        # Reuse connections: a handshake per batch is most of a request's cost (see keepalive.py).
        self._pool = ConnectionPool()
        self._client.client = KeepAliveClient.wrap(self._client.client, self._pool)
        self.host = host.rstrip("/")
        self.from_email, self.from_name, self.reply_to = from_email, from_name, reply_to
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.sleep = sleep
        self.requests = 0  # HTTP requests made, retries included (for the summary and bench)
        self._count_lock = threading.Lock()  # delivery posts from two threads
        # Set by a send: called with the seconds a request or a 429 wait may take before it
        # starts; raises (LeaseLostError) when the run's lease cannot cover them.
        self.lease_guard: Callable[[float], None] | None = None
        # One rate gate for every thread that posts: a 429 (or a last allowed request, by the
        # X-RateLimit headers) pauses them all until the reset.
        self._gate = threading.Lock()
        self._paused_until = 0.0  # time.monotonic()

    @classmethod
    def from_config(cls, config: Config) -> SendGridSender:
        s = config.sender
        return cls(
            os.environ.get(SENDGRID_KEY_ENV, ""),
            host=config.sendgrid_host,
            from_email=s.from_email,
            from_name=s.from_name,
            reply_to=s.reply_to,
            timeout=s.timeout_seconds,
            max_retries=s.max_retries,
            backoff=retry_base_seconds(config),
            list_id=list_id(config),
        )

    def __repr__(self) -> str:  # never show the key
        return f"SendGridSender(host={self.host!r})"

    # -- building requests -------------------------------------------------------------------

    def _envelope(
        self,
        subject: str,
        html: str,
        text: str,
        *,
        headers: Mapping[str, str],
        categories: Iterable[str],
        reply_to: str = "",
        from_email: str = "",
        from_name: str = "",
        send_at: int | None = None,
        batch_id: str | None = None,
    ) -> dict[str, Any]:
        if not subject:
            raise SendError("A message needs a subject; SendGrid refuses an empty one.")
        if not text or not html:
            raise SendError("A message needs both a text and an HTML part.")
        sender: dict[str, str] = {"email": from_email or self.from_email}
        if from_name or self.from_name:
            sender["name"] = from_name or self.from_name
        body: dict[str, Any] = {
            "from": sender,
            "subject": subject,
            # text/plain must come first, SendGrid says, then text/html
            "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
        }
        if reply_to or self.reply_to:
            body["reply_to"] = {"email": reply_to or self.reply_to}
        global_headers = _check_headers(headers)
        if self.list_id and not any(k.casefold() == "list-id" for k in global_headers):
            global_headers["List-Id"] = self.list_id
        if global_headers:
            body["headers"] = global_headers
        cats = list(dict.fromkeys(c[:255] for c in categories if c))
        if len(cats) > MAX_CATEGORIES:
            raise SendError(f"SendGrid allows at most {MAX_CATEGORIES} categories; got {len(cats)}.")
        if cats:
            body["categories"] = cats
        if send_at is not None:
            if send_at - time.time() > MAX_SEND_AHEAD:
                raise SendError(
                    "SendGrid can schedule a send at most 72 hours ahead; pick an earlier --send-at."
                )
            body["send_at"] = int(send_at)
        if batch_id:
            body["batch_id"] = batch_id
        return body

    def _batch_envelope(self, batch: BatchMessage) -> dict[str, Any]:
        """Everything a batch's request carries apart from its recipients."""
        return self._envelope(
            batch.subject,
            batch.html,
            batch.text,
            headers=batch.headers,
            categories=batch.categories,
            send_at=batch.send_at,
            batch_id=batch.batch_id,
        )

    def batch_body(self, batch: BatchMessage) -> dict[str, Any]:
        """The /v3/mail/send body for a batch: one personalization per recipient."""
        n = len(batch.recipients)
        if n == 0:
            raise SendError("A batch needs at least one recipient.")
        if n > MAX_PERSONALIZATIONS:
            raise SendError(f"A SendGrid request takes at most {MAX_PERSONALIZATIONS} recipients; got {n}.")
        body = self._batch_envelope(batch)
        shared_args = dict(batch.custom_args)
        personalizations: list[dict[str, Any]] = []
        seen: set[str] = set()
        append = personalizations.append
        for r in batch.recipients:
            key = address_key(r.email)
            if key in seen:
                raise SendError(f"{r.email} appears twice in one batch; SendGrid refuses duplicates.")
            seen.add(key)
            to: dict[str, str] = {"email": r.email}
            if r.name:
                to["name"] = _clean_name(r.name)
            p: dict[str, Any] = {"to": [to]}
            if r.substitutions:
                p["substitutions"] = r.substitutions
            if r.headers:
                p["headers"] = r.headers
            if r.custom_args:
                p["custom_args"] = {**shared_args, **r.custom_args}
            elif shared_args:
                p["custom_args"] = shared_args
            append(p)
        body["personalizations"] = personalizations
        return body

    def prepared_prefix(self, batch: BatchMessage) -> str:
        """A batch's body up to its personalizations, serialised once per rendered email.

        ``post_prepared`` appends the recipients' pre-encoded personalizations (see
        ``PersonalizationWriter``), so a million readers cost a million short strings rather
        than a million dicts serialised again with the 50 KB of HTML beside them.
        """
        body = self._batch_envelope(batch)
        return json.dumps(body, separators=(",", ":"))[:-1] + ',"personalizations":['

    def prepared_body(
        self, prefix: str, personalizations: str, count: int, custom_args: Mapping[str, str] | None = None
    ) -> str:
        """The request body from a prefix and ``count`` comma-joined personalizations (see
        ``digest.send.personalize``, which also refuses an address twice), limits checked."""
        if count == 0:
            raise SendError("A batch needs at least one recipient.")
        if count > MAX_PERSONALIZATIONS:
            raise SendError(
                f"A SendGrid request takes at most {MAX_PERSONALIZATIONS} recipients; got {count}."
            )
        tail = "]}"
        if custom_args:  # message-level: every event of the request carries them (edition, batch)
            tail = '],"custom_args":' + json.dumps(dict(custom_args), separators=(",", ":")) + "}"
        data = prefix + personalizations + tail
        if len(data) > MAX_BODY_CHARS:
            raise SendError(f"A SendGrid request body is at most 30 MB; this one is {len(data)} characters.")
        return data

    def post_prepared(self, data: str | bytes) -> str:
        """POST a body from ``prepared_body`` (or its UTF-8 bytes); the provider's message id
        (thread-safe)."""
        response = self._request("post", ("mail", "send"), data=data)
        return _header(response.headers, "X-Message-Id") or ""

    def message_body(self, message: OutgoingMessage) -> dict[str, Any]:
        body = self._envelope(
            message.subject,
            message.html,
            message.text,
            headers={},
            categories=message.categories,
            reply_to=message.reply_to,
            from_email=message.from_email,
            from_name=message.from_name,
        )
        to: dict[str, str] = {"email": message.to}
        if message.to_name:
            to["name"] = _clean_name(message.to_name)
        p: dict[str, Any] = {"to": [to]}
        if message.headers:
            p["headers"] = _check_headers(message.headers)
        if message.custom_args:
            p["custom_args"] = dict(message.custom_args)
        body["personalizations"] = [p]
        return body

    # -- sending -----------------------------------------------------------------------------

    def send_one(self, message: OutgoingMessage) -> str:
        return self._post_mail(self.message_body(message))

    def send_batch(self, batch: BatchMessage) -> BatchResult:
        message_id = self._post_mail(self.batch_body(batch))
        return BatchResult(message_ids=dict.fromkeys((r.email for r in batch.recipients), message_id))

    def _post_mail(self, body: dict[str, Any]) -> str:
        data = json.dumps(body, separators=(",", ":"))
        response = self._request("post", ("mail", "send"), data=data)
        return _header(response.headers, "X-Message-Id") or ""

    def _request(
        self,
        method: str,
        path: tuple[str, ...],
        *,
        data: str | bytes | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        """One API call with the retry policy above; returns the python_http_client Response."""
        attempt = 0  # backoff retries (5xx, network)
        waits = 0  # rate-limit waits
        where = "/v3/" + "/".join(path)
        while True:
            endpoint = self._client.client
            for part in path:
                endpoint = endpoint._(part)
            self._wait_at_gate(method)
            if self.lease_guard is not None and method == "post":
                self.lease_guard(self.timeout + 5.0)
            with self._count_lock:
                self.requests += 1
            try:
                response = getattr(endpoint, method)(
                    request_body=data,
                    query_params=dict(query) if query else None,
                    request_headers=_JSON,
                    timeout=self.timeout,
                )
                if _header(response.headers, "X-RateLimit-Remaining") == "0":
                    self._pause(self._reset_delay(response.headers))
                return response
            except HTTPError as exc:
                status = exc.status_code
                if status in (401, 403):
                    raise ProviderAuthError(
                        f"SendGrid refused the API key ({status} on {where}): check ${SENDGRID_KEY_ENV} "
                        "(it must be a current key with the Mail Send permission). Nothing more was sent."
                    ) from None
                if status == 429:
                    waits += 1
                    if waits > max(20, 4 * self.max_retries):
                        raise SendError(
                            f"SendGrid kept answering 429 (rate limited) on {where}; try later."
                        ) from None
                    delay = self._rate_limit_delay(exc.headers, waits)
                    log.info("SendGrid rate limit on %s; every request waits %.2fs", where, delay)
                    self._pause(delay)
                    continue  # the gate makes this thread (and every other) wait
                if status < 500:
                    raise SendError(
                        f"SendGrid refused the request ({status} on {where}): {_errors(exc.body)}"
                    ) from None
                problem = f"SendGrid answered {status} on {where}"
            except NoAnswer as exc:
                if method == "post" and path == ("mail", "send"):
                    # It may have been taken: never retried blindly (see digest.send.dispatch).
                    raise UndecidedError(
                        f"no answer from SendGrid at {self.host} after the request was sent ({exc}); "
                        "it may have been accepted"
                    ) from None
                problem = f"no answer from SendGrid at {self.host} ({exc})"
            except _TRANSIENT as exc:
                reason = getattr(exc, "reason", exc)
                problem = f"no answer from SendGrid at {self.host} ({type(reason).__name__}: {reason})"
            if attempt >= self.max_retries:
                raise SendError(f"{problem}; gave up after {attempt + 1} attempts (sender.max_retries).")
            delay = min(MAX_BACKOFF, self.backoff * 2**attempt) * random.uniform(0.5, 1.5)
            attempt += 1
            log.warning("%s; retry %d/%d in %.2fs", problem, attempt, self.max_retries, delay)
            self.sleep(delay)

    def _pause(self, delay: float | None) -> None:
        if delay is None or delay <= 0:
            return
        with self._gate:
            self._paused_until = max(self._paused_until, time.monotonic() + delay)

    def _wait_at_gate(self, method: str) -> None:
        """Wait out a pause (never longer than the lease covers: ``lease_guard`` first)."""
        while True:
            with self._gate:
                delay = self._paused_until - time.monotonic()
            if delay <= 0:
                return
            if self.lease_guard is not None and method == "post":
                self.lease_guard(delay + self.timeout + 5.0)  # never wait past the lease
            self.sleep(delay)
            if self.sleep is not time.sleep:  # an injected sleep (tests) does not pass time
                with self._gate:
                    self._paused_until = 0.0

    @staticmethod
    def _reset_delay(headers: Any) -> float | None:
        reset = _header(headers, "X-RateLimit-Reset")
        try:
            return min(MAX_RATE_LIMIT_WAIT, float(reset) - time.time()) if reset else None
        except ValueError:
            return None

    def _rate_limit_delay(self, headers: Any, waits: int) -> float:
        reset = _header(headers, "X-RateLimit-Reset")
        try:
            delay = float(reset) - time.time() if reset else None
        except ValueError:
            delay = None
        if delay is None:
            delay = min(MAX_BACKOFF, self.backoff * 2 ** min(waits, 10))
        # a little jitter so that parallel senders do not all come back in the same instant
        return min(MAX_RATE_LIMIT_WAIT, max(0.0, delay)) + random.uniform(0, 0.05)

    # -- suppressions and scheduled sends ----------------------------------------------------

    def suppressions(self, *, page_size: int = 500) -> dict[str, str]:
        """Every address on SendGrid's global unsubscribe, bounce and spam report lists.

        Returns {address key (``digest.addresses.key``): our status name} (unsubscribed, bounced, complained).
        """
        found: dict[str, str] = {}
        for name, status in SUPPRESSION_LISTS.items():
            offset = 0
            while True:
                response = self._request(
                    "get", ("suppression", name), query={"limit": page_size, "offset": offset}
                )
                page = json.loads(response.body or b"[]")
                for entry in page:
                    email = entry.get("email") if isinstance(entry, dict) else None
                    if email:
                        found.setdefault(address_key(email.strip()), status)
                if len(page) < page_size:
                    break
                offset += page_size
        return found

    def new_batch_id(self) -> str:
        """A SendGrid batch id (POST /v3/mail/batch), so a scheduled send can be cancelled."""
        response = self._request("post", ("mail", "batch"), data="{}")
        batch_id = json.loads(response.body or b"{}").get("batch_id")
        if not batch_id:
            raise SendError("SendGrid did not return a batch id from /v3/mail/batch.")
        return str(batch_id)

    def cancel_scheduled(self, batch_id: str) -> None:
        """Cancel a scheduled batch (allowed until about 10 minutes before its send_at)."""
        data = json.dumps({"batch_id": batch_id, "status": "cancel"})
        self._request("post", ("user", "scheduled_sends"), data=data)

    def scheduled_status(self, batch_id: str) -> str | None:
        """'cancel', 'pause' or None (scheduled and not stopped)."""
        response = self._request("get", ("user", "scheduled_sends", batch_id))
        entries = json.loads(response.body or b"[]")
        return entries[0].get("status") if entries else None

    def close(self) -> None:
        self._pool.close()


def _check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    bad = [h for h in headers if h.casefold() in RESERVED_HEADERS]
    if bad:
        raise SendError(f"SendGrid does not let a message set the {bad[0]} header.")
    return dict(headers)


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is None and hasattr(headers, "items"):
        lname = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lname), None)
    return None if value is None else str(value)


def _errors(body: bytes | None) -> str:
    """SendGrid's error messages from a response body, joined into one line."""
    try:
        data = json.loads(body or b"{}")
        messages = [
            f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
            for e in data.get("errors", [])
        ]
        return "; ".join(messages) or (body or b"").decode("utf-8", "replace")[:300]
    except (ValueError, AttributeError):
        return (body or b"").decode("utf-8", "replace")[:300]
