"""A fake SendGrid v3 API on 127.0.0.1 for tests and benchmarks.

It checks every ``POST /v3/mail/send`` against SendGrid's published rules (the OpenAPI
description in ../shared/sendgrid/ plus the limits on SendGrid's documentation pages), records
what it accepted, and answers like SendGrid: 202 with ``X-Message-Id`` and the rate-limit
headers. A test can script faults (429 with ``X-RateLimit-Reset``, 500, 400, 401, a hang, or
"accept, then hang" to simulate a crash after the provider took a batch).

Also served: the suppression lists, ``/v3/mail/batch`` and the scheduled-sends API.

A real network, on loopback: ``Link`` gives every request a round trip (half on the way in,
half on the way out), a handshake for each new connection, and an upload bandwidth cap that all
connections share (bodies queue behind each other as on one uplink). Faults a real network
makes: ``stall`` (accepted and recorded, the answer never comes or comes after N s: ``late``),
``reset_before``/``reset_after`` (a TCP reset before or after the request was accepted),
periodic faults (``fail_every``: every 5th request stalls) and 429 storms (``storm``). A real
rate limit (``rate_limit(600, 60)``: the headers count down, then 429 until the window ends),
and ``max_in_flight``: the most mail/send requests open at once (a bounded window is checked
against it).

Every accepted personalization is logged (``log``: address, the ``edition`` and ``batch`` of
its custom_args, the request it came in), so a test asserts from the fake's own record that no
address got an edition twice (``duplicates``) and nobody was silently dropped (``missing``).
``EventWebhook`` posts SendGrid Event Webhook events (processed, delivered, dropped, deferred),
signed with ECDSA P-256 as SendGrid signs them, to a URL such as ``digest serve``'s
``/webhooks/sendgrid``: by hand (``send_events``) or after every accepted request
(``FakeSendGrid(webhook=..., auto_events=("processed", "delivered"))``).

``fast=True`` (for benchmarks) only counts personalizations and fully checks one request in
``spot_every`` (no log). Run it stand-alone in another process with ``python tests/fake_sendgrid.py
--fast [--round-trip-ms 150 --upload-mbit 100]``: it prints its base URL, and
``GET /_fake/stats`` returns the counts.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import itertools
import json
import math
import queue
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

RESERVED = {
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_BODY = 30 * 1024 * 1024
RATE_LIMIT = 600


FAULT_KINDS = frozenset(
    {
        "ok", "429", "500", "502", "503", "400", "401", "403", "hang", "accept_hang", "close_after",
        "stall", "late", "reset_before", "reset_after",
    }
)  # fmt: skip
ACCEPTING_FAULTS = frozenset({"ok", "accept_hang", "close_after", "stall", "late", "reset_after"})


@dataclass
class Fault:
    """One scripted answer.

    - ``429`` (``X-RateLimit-Reset`` ``seconds`` ahead), ``500``/``502``/``503``, ``400``,
      ``401``/``403``: answered at once, nothing accepted.
    - ``hang``: not accepted; no answer for ``seconds``, then the connection closes.
    - ``reset_before``: not accepted; the connection is reset (TCP RST) instead of an answer.
    - ``stall``: accepted and recorded, then no answer for ``seconds`` (0: until the server
      stops), then the connection closes: the client cannot know. ``accept_hang`` is the same
      with 0 meaning "close at once".
    - ``late``: accepted; the 202 comes after ``seconds`` (a client with a shorter timeout has
      given up by then).
    - ``reset_after``: accepted and recorded, then the connection is reset instead of the 202.
    - ``close_after``: accepted, answered, then the connection closed without saying so (as a
      server does with an idle keep-alive connection).
    - ``ok``: a normal answer (to script "the next four are fine, then ...").
    """

    kind: str
    seconds: float = 0.0  # hang/stall/late length, or for 429 how far ahead X-RateLimit-Reset is

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {sorted(FAULT_KINDS)}")


@dataclass(frozen=True)
class Link:
    """The network between the sender and SendGrid, played on loopback.

    ``round_trip``: seconds; half before the server reads a request, half before the client
    sees the answer. ``upload_bytes_per_second``: the sender's uplink, shared by every
    connection (0: unlimited). ``handshake_round_trips``: what a new connection costs before
    its first request (TCP 1 + TLS 1.3 1).
    """

    round_trip: float = 0.0
    upload_bytes_per_second: float = 0.0
    handshake_round_trips: float = 2.0

    @classmethod
    def of(cls, round_trip_ms: float = 0.0, upload_mbit: float = 0.0) -> Link:
        return cls(round_trip_ms / 1000, upload_mbit * 1e6 / 8)


@dataclass(frozen=True)
class Personalization:
    """One accepted recipient, as the fake's log keeps it (not kept in fast mode)."""

    email: str  # as sent
    edition: str | None  # custom_args["edition"] (personalization over message)
    batch: str | None  # custom_args["batch"] (or "batch_id"): the sender's own batch id
    request: int  # index into ``FakeState.accepted``
    message_id: str  # X-Message-Id of its request
    custom_args: dict[str, str]
    at: float  # time.time() when accepted


@dataclass
class Accepted:
    """One accepted /v3/mail/send request."""

    message_id: str
    body: dict[str, Any] | None  # None in fast mode
    recipients: list[str]
    send_at: int | None
    batch_id: str | None


@dataclass
class FakeState:
    api_key: str = "SG.test-key"
    fast: bool = False
    spot_every: int = 50
    faults: collections.deque[Fault] = field(default_factory=collections.deque)
    # (predicate over the parsed body, fault) tried on every mail/send request
    rules: list[tuple[Callable[[dict[str, Any]], bool], Fault]] = field(default_factory=list)
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[tuple[int, list[str]]] = field(default_factory=list)  # (status, problems)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every call
    personalizations: int = 0
    max_personalizations: int = 0  # the most in one accepted request
    seen: set[bytes] = field(default_factory=set)  # fast mode: every recipient address (exactly-once check)
    repeated: int = 0  # fast mode: recipients seen in an earlier request
    bytes_received: int = 0
    connections: int = 0  # TCP connections accepted (the client reuses one while it can)
    suppressed: dict[str, set[str]] = field(
        default_factory=lambda: {"unsubscribes": set(), "bounces": set(), "spam_reports": set()}
    )
    batches: dict[str, str | None] = field(default_factory=dict)  # batch id -> cancel|pause|None
    lock: threading.Lock = field(default_factory=threading.Lock)
    seq: Any = field(default_factory=lambda: itertools.count(1))
    link: Link = field(default_factory=Link)
    link_free_at: float = 0.0  # monotonic time the shared uplink has sent everything queued on it
    every: list[tuple[int, Fault]] = field(default_factory=list)  # (n, fault): every n-th request
    storm_until: float = 0.0  # time.time() until which every mail/send answers 429
    log: list[Personalization] = field(default_factory=list)
    stalled: int = 0  # requests accepted whose answer was withheld (stall, late, reset_after)
    resets: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)
    # a real rate limit: (requests, per seconds) in fixed windows; over it, 429 until the window ends
    rate: tuple[int, float] | None = None
    rate_window_start: float = 0.0
    rate_used: int = 0
    in_flight: int = 0  # mail/send requests being handled now (stalled ones included)
    max_in_flight: int = 0
    on_accept: Callable[[list[Personalization]], None] | None = None

    def delivered(self) -> collections.Counter[str]:
        """How many accepted, not cancelled messages each address got."""
        counts: collections.Counter[str] = collections.Counter()
        for a in self.accepted:
            if a.batch_id and self.batches.get(a.batch_id) == "cancel":
                continue
            counts.update(a.recipients)
        return counts

    def wait(self, seconds: float) -> None:
        """Sleep, but wake when the server stops (a stalled handler must not outlive it)."""
        if seconds > 0:
            self.stopping.wait(seconds)


def _log_entries(body: dict[str, Any], request: int, message_id: str, now: float) -> list[Personalization]:
    top = body.get("custom_args")
    shared: dict[str, str] = top if isinstance(top, dict) else {}
    entries = []
    for p in body["personalizations"]:
        args = {**shared, **(p.get("custom_args") or {})}
        edition = args.get("edition")
        batch = args.get("batch", args.get("batch_id"))
        for kind in ("to", "cc", "bcc"):
            for person in p.get(kind) or []:
                entries.append(
                    Personalization(person["email"], edition, batch, request, message_id, args, now)
                )
    return entries


def validate_mail(body: Any, now: float | None = None) -> list[str]:
    """Every way a /v3/mail/send body breaks the published rules (empty list: it is fine)."""
    now = time.time() if now is None else now
    problems: list[str] = []
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    p_list = body.get("personalizations")
    if not isinstance(p_list, list) or not p_list:
        problems.append("personalizations: required, a non-empty array")
        p_list = []
    if len(p_list) > 1000:
        problems.append(f"personalizations: at most 1000 (got {len(p_list)})")
    sender = body.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("email"), str):
        problems.append("from: required, an object with email")
    else:
        if not EMAIL.match(sender["email"]):
            problems.append("from.email: not an email address")
        if not sender["email"].isascii():
            problems.append("from: Unicode is not supported in the from address")
    if "reply_to" in body and (
        not isinstance(body["reply_to"], dict) or not EMAIL.match(str(body["reply_to"].get("email", "")))
    ):
        problems.append("reply_to: an object with a valid email")
    has_template = bool(body.get("template_id"))
    content = body.get("content")
    if not has_template:
        if not isinstance(content, list) or not content:
            problems.append("content: at least one content object is required")
        else:
            types = []
            for i, c in enumerate(content):
                if not isinstance(c, dict) or not c.get("type") or not c.get("value"):
                    problems.append(f"content[{i}]: type and value are required and non-empty")
                else:
                    types.append(c["type"])
            if "text/plain" in types and types[0] != "text/plain":
                problems.append("content: text/plain must be first")
            if len(types) != len(set(types)):
                problems.append("content: each MIME type at most once")
    global_subject = body.get("subject")
    if global_subject is not None and (not isinstance(global_subject, str) or not global_subject):
        problems.append("subject: must be a non-empty string")
    problems += _check_headers(body.get("headers"), "headers")
    cats = body.get("categories")
    if cats is not None:
        if not isinstance(cats, list) or len(cats) > 10:
            problems.append("categories: at most 10")
        elif len(set(cats)) != len(cats):
            problems.append("categories: must be unique")
        elif any(not isinstance(c, str) or len(c) > 255 for c in cats):
            problems.append("categories: each a string of at most 255 characters")
    if "custom_args" in body:
        problems += _check_args(body["custom_args"], "custom_args")
    problems += _check_send_at(body.get("send_at"), "send_at", now)
    if "batch_id" in body and (not isinstance(body["batch_id"], str) or not body["batch_id"]):
        problems.append("batch_id: a non-empty string")
    seen: set[str] = set()
    total = 0
    for i, p in enumerate(p_list):
        where = f"personalizations[{i}]"
        if not isinstance(p, dict):
            problems.append(f"{where}: must be an object")
            continue
        to = p.get("to")
        if not isinstance(to, list) or not to:
            problems.append(f"{where}.to: required, a non-empty array")
            to = []
        for kind in ("to", "cc", "bcc"):
            people = p.get(kind) or []
            if not isinstance(people, list):
                problems.append(f"{where}.{kind}: must be an array")
                continue
            total += len(people)
            for person in people:
                email = person.get("email") if isinstance(person, dict) else None
                if not isinstance(email, str) or not EMAIL.match(email):
                    problems.append(f"{where}.{kind}: {email!r} is not an email address")
                    continue
                key = email.lower()
                if key in seen:
                    problems.append(f"{where}.{kind}: {email} appears more than once in the request")
                seen.add(key)
                name = person.get("name")
                if name is not None and (not isinstance(name, str) or ";" in name or "," in name):
                    problems.append(f"{where}.{kind}: a name may not contain ';' or ','")
        subject = p.get("subject", global_subject)
        if not has_template and (not isinstance(subject, str) or not subject):
            problems.append(f"{where}: no subject (neither in the personalization nor the message)")
        problems += _check_headers(p.get("headers"), f"{where}.headers")
        subs = p.get("substitutions")
        if subs is not None:
            if not isinstance(subs, dict) or any(not isinstance(v, str) for v in subs.values()):
                problems.append(f"{where}.substitutions: an object of strings")
            else:
                if len(subs) > 10000:
                    problems.append(f"{where}.substitutions: at most 10000 properties")
                size = sum(len(k.encode()) + len(v.encode()) for k, v in subs.items())
                if size > 10000:
                    problems.append(f"{where}.substitutions: over 10,000 bytes ({size})")
        if "custom_args" in p:
            problems += _check_args(p["custom_args"], f"{where}.custom_args")
        problems += _check_send_at(p.get("send_at"), f"{where}.send_at", now)
    if total > 1000:
        problems.append(f"at most 1000 recipients per request (to+cc+bcc); got {total}")
    return problems


def _check_headers(headers: Any, where: str) -> list[str]:
    if headers is None:
        return []
    if not isinstance(headers, dict):
        return [f"{where}: must be an object"]
    problems = [f"{where}: {h} may not be set" for h in headers if h.lower() in RESERVED]
    problems += [f"{where}: {h} must be a string" for h, v in headers.items() if not isinstance(v, str)]
    return problems


def _check_args(args: Any, where: str) -> list[str]:
    if isinstance(args, str):  # the description says string at the top level; SendGrid takes objects
        size = len(args.encode())
    elif isinstance(args, dict):
        if any(not isinstance(v, str) for v in args.values()):
            return [f"{where}: values must be strings"]
        size = len(json.dumps(args).encode())
    else:
        return [f"{where}: must be an object"]
    return [f"{where}: over 10,000 bytes"] if size > 10000 else []


def _check_send_at(value: Any, where: str, now: float) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, int) or isinstance(value, bool):
        return [f"{where}: a unix timestamp (integer)"]
    if value > now + 72 * 3600 + 60:
        return [f"{where}: at most 72 hours ahead"]
    return []


def _recipients(body: dict[str, Any]) -> list[str]:
    return [
        person["email"].lower()
        for p in body.get("personalizations", [])
        for kind in ("to", "cc", "bcc")
        for person in p.get(kind) or []
    ]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        state = self.server.state
        with state.lock:
            state.connections += 1
        state.wait(state.link.round_trip * state.link.handshake_round_trips)
        self._reset = False
        self._rate_headers: dict[str, str] = {}

    def finish(self) -> None:
        with contextlib.suppress(OSError):  # a reset connection has nothing left to flush
            super().finish()

    def _reset_connection(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), not an orderly close."""
        with self.server.state.lock:
            self.server.state.resets += 1
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.close()
        self._reset = True
        self.close_connection = True

    def _travel(self, size: int) -> None:
        """A request of ``size`` bytes crosses the link: queued on the shared uplink behind what
        other connections are sending, then half a round trip."""
        state = self.server.state
        link = state.link
        if link.upload_bytes_per_second > 0:
            with state.lock:
                now = time.monotonic()
                state.link_free_at = max(now, state.link_free_at) + size / link.upload_bytes_per_second
                done = state.link_free_at
            state.wait(done - time.monotonic())
        state.wait(link.round_trip / 2)

    # -- plumbing ---------------------------------------------------------------------------
    def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.server.state.wait(self.server.state.link.round_trip / 2)  # the answer's way back
        self.send_response(status)
        all_headers = {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": "0" if status == 429 else str(RATE_LIMIT - 1),
            "X-RateLimit-Reset": str(int(time.time()) + 60),
            **self._rate_headers,
            **(headers or {}),
        }
        if self._rate_headers and status == 429:  # a rate-limit 429 resets when the window ends
            all_headers["X-RateLimit-Reset"] = self._rate_headers["X-RateLimit-Reset"]
        for k, v in all_headers.items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _error(self, status: int, messages: list[str]) -> None:
        self._send(status, {"errors": [{"field": None, "message": m} for m in messages]})

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self._travel(len(raw) + 300)  # about 300 bytes of request line and headers
        return raw

    def _authorised(self) -> bool:
        state = self.server.state
        if self.headers.get("Authorization") != f"Bearer {state.api_key}":
            self._error(401, ["The provided authorization grant is invalid, expired, or revoked"])
            return False
        return True

    def _fault(self, fault: Fault) -> bool:
        """Answer with a scripted fault; False when the request should proceed normally."""
        if fault.kind == "429":
            self._send(
                429,
                {"errors": [{"field": None, "message": "too many requests"}]},
                {"X-RateLimit-Reset": str(int(time.time() + fault.seconds))},
            )
        elif fault.kind in ("500", "502", "503"):
            self._error(int(fault.kind), ["internal error"])
        elif fault.kind == "400":
            self._error(400, ["scripted bad request"])
        elif fault.kind in ("401", "403"):
            self._error(int(fault.kind), ["authorization required"])
        elif fault.kind == "hang":
            self.server.state.wait(fault.seconds)
            self.close_connection = True
        elif fault.kind == "reset_before":
            self._reset_connection()
        else:
            return False
        return True

    # -- routes -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        state = self.server.state
        with state.lock:
            state.requests.append(("GET", url.path))
        if url.path == "/_fake/stats":
            with state.lock:
                self._send(
                    200,
                    {
                        "requests": len(state.requests),
                        "accepted": len(state.accepted),
                        "rejected": len(state.rejected),
                        "personalizations": state.personalizations,
                        "max_personalizations": state.max_personalizations,
                        "distinct_recipients": len(state.seen),
                        "repeated_recipients": state.repeated,
                        "bytes": state.bytes_received,
                        "stalled": state.stalled,
                        "resets": state.resets,
                        "connections": state.connections,
                        "max_in_flight": state.max_in_flight,
                        "problems": [p for _, ps in state.rejected for p in ps][:20],
                    },
                )
            return
        if not self._authorised():
            return
        parts = url.path.strip("/").split("/")
        if parts[:2] == ["v3", "suppression"] and len(parts) == 3 and parts[2] in state.suppressed:
            q = parse_qs(url.query)
            limit = int(q.get("limit", ["500"])[0])
            offset = int(q.get("offset", ["0"])[0])
            if limit > 500:
                self._error(400, ["limit: at most 500"])
                return
            emails = sorted(state.suppressed[parts[2]])[offset : offset + limit]
            self._send(200, [{"email": e, "created": int(time.time()), "reason": parts[2]} for e in emails])
            return
        if parts[:3] == ["v3", "user", "scheduled_sends"] and len(parts) == 4:
            status = state.batches.get(parts[3])
            self._send(200, [{"batch_id": parts[3], "status": status}] if status else [])
            return
        self._error(404, [f"no route {url.path}"])

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        state = self.server.state
        raw = self._body()
        with state.lock:
            state.requests.append(("POST", url.path))
            state.bytes_received += len(raw)
        if not self._authorised():
            return
        if url.path == "/v3/mail/send":
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                self._rate_headers = {}
                self._mail_send(raw)
            finally:
                with state.lock:
                    state.in_flight -= 1
        elif url.path == "/v3/mail/batch":
            batch_id = uuid.uuid4().hex
            with state.lock:
                state.batches[batch_id] = None
            self._send(201, {"batch_id": batch_id})
        elif url.path == "/v3/user/scheduled_sends":
            self._scheduled(raw)
        else:
            self._error(404, [f"no route {url.path}"])

    def _scheduled(self, raw: bytes) -> None:
        state = self.server.state
        try:
            body = json.loads(raw)
        except ValueError:
            self._error(400, ["body is not JSON"])
            return
        batch_id, status = body.get("batch_id"), body.get("status")
        if not batch_id or status not in ("pause", "cancel"):
            self._error(400, ["batch_id and status (pause|cancel) are required"])
            return
        with state.lock:
            if batch_id not in state.batches:
                self._error(400, [f"unknown batch_id {batch_id}"])
                return
            active = sum(1 for s in state.batches.values() if s)
            if active >= 10:
                self._error(400, ["at most 10 batches may be paused or cancelled at once"])
                return
            send_ats = [a.send_at for a in state.accepted if a.batch_id == batch_id and a.send_at]
            if send_ats and min(send_ats) - time.time() < 600:
                self._error(400, ["too late: the send is less than 10 minutes away"])
                return
            state.batches[batch_id] = status
        self._send(201, {"batch_id": batch_id, "status": status})

    def _next_fault(self) -> tuple[Fault | None, int]:
        """The scripted fault for this mail/send request (a storm, the queue, then periodic ones)."""
        state = self.server.state
        with state.lock:
            n = next(state.seq)
            if state.rate is not None:
                limit, per = state.rate
                now = time.time()
                if now >= state.rate_window_start + per:
                    state.rate_window_start, state.rate_used = now, 0
                reset = state.rate_window_start + per
                self._rate_headers = {
                    "X-RateLimit-Limit": str(limit),
                    "X-RateLimit-Remaining": str(max(0, limit - state.rate_used - 1)),
                    "X-RateLimit-Reset": str(math.ceil(reset)),
                }
                if state.rate_used >= limit:
                    self._rate_headers["X-RateLimit-Remaining"] = "0"
                    return Fault("429", reset - now), n
                state.rate_used += 1
            if time.time() < state.storm_until:
                return Fault("429", state.storm_until - time.time()), n
            if state.faults:
                return state.faults.popleft(), n
            for every, fault in state.every:
                if n % every == 0:
                    return fault, n
        return None, n

    def _withheld(self, fault: Fault | None, message_id: str) -> bool:
        """After accepting: play ``stall``/``late``/``reset_after``; True if the 202 is not sent."""
        state = self.server.state
        if fault is None or fault.kind not in ("accept_hang", "stall", "late", "reset_after"):
            return False
        with state.lock:
            state.stalled += 1
        if fault.kind == "reset_after":
            self._reset_connection()
            return True
        if fault.kind == "late":
            state.wait(fault.seconds)
            with contextlib.suppress(OSError):  # the client may have hung up by now
                self._send(202, None, {"X-Message-Id": message_id})
            return True
        # stall: accepted, but the answer never arrives (0 s: not before the server stops);
        # accept_hang, as before: no answer for exactly ``seconds``, then the connection closes
        forever = fault.kind == "stall" and fault.seconds <= 0
        state.wait(24 * 3600 if forever else fault.seconds)
        self.close_connection = True
        return True

    def _mail_send(self, raw: bytes) -> None:
        state = self.server.state
        fault, n = self._next_fault()
        if fault is not None and self._fault(fault):
            return
        if len(raw) > MAX_BODY:
            self._error(413, ["the request is larger than 30 MB"])
            return
        if state.fast and n % state.spot_every != 1 and not state.rules:
            emails = _TO_EMAIL.findall(raw)
            count = raw.count(b'"to":')
            message_id = f"fake{n:08d}"
            with state.lock:
                state.personalizations += count
                state.max_personalizations = max(state.max_personalizations, count)
                _count_recipients(state, emails)
                state.accepted.append(Accepted(message_id, None, [], None, None))
            if not self._withheld(fault, message_id):
                self._send(202, None, {"X-Message-Id": message_id})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._error(400, ["body is not JSON"])
            return
        for predicate, rule_fault in state.rules:
            if predicate(body) and self._fault(rule_fault):
                return
        problems = validate_mail(body)
        if problems:
            with state.lock:
                state.rejected.append((400, problems))
            self._error(400, problems)
            return
        message_id = uuid.uuid4().hex[:22]
        accepted = Accepted(
            message_id,
            None if state.fast else body,
            [] if state.fast else _recipients(body),
            body.get("send_at"),
            body.get("batch_id"),
        )
        entries: list[Personalization] = []
        with state.lock:
            state.personalizations += len(body["personalizations"])
            state.max_personalizations = max(state.max_personalizations, len(body["personalizations"]))
            if state.fast:
                _count_recipients(
                    state, [to["email"].encode() for p in body["personalizations"] for to in p["to"]]
                )
            else:
                entries = _log_entries(body, len(state.accepted), message_id, time.time())
                state.log.extend(entries)
            state.accepted.append(accepted)
        if entries and state.on_accept is not None:
            state.on_accept(entries)
        if self._withheld(fault, message_id):
            return
        self._send(202, None, {"X-Message-Id": message_id})
        if fault is not None and fault.kind == "close_after":
            self.close_connection = True


_TO_EMAIL = re.compile(rb'"to":\[\{"email":"((?:[^"\\]|\\.)*)"')


def _count_recipients(state: FakeState, emails: list[bytes]) -> None:
    """Fast mode's exactly-once check: each address once across all accepted requests (lock held)."""
    before = len(state.seen)
    state.seen.update(emails)
    state.repeated += len(emails) - (len(state.seen) - before)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a scripted hang must not hold up shutdown
    allow_reuse_address = True
    # socketserver's default backlog is 5: 32 clients connecting at once overflowed it, and a
    # request written on a connection the server never accepted came back reset (an undecided
    # batch in the bench, once in many runs). A real API front end keeps a deep accept queue.
    request_queue_size = 128
    state: FakeState


EVENT_KINDS = ("processed", "delivered", "dropped", "deferred", "bounce")


class EventWebhook:
    """SendGrid's Event Webhook as a client: signed POSTs of event batches to ``url``.

    SendGrid signs ``timestamp + body`` with ECDSA P-256 / SHA-256 (DER, base64) and sends the
    signature and timestamp in two headers; the verification key it shows is the base64 DER
    public key (``public_key_b64``, what ``[web] sendgrid_webhook_public_key`` takes).
    Custom args ride at the top level of each event, as SendGrid sends them.
    """

    SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
    TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

    def __init__(self, url: str, private_key: Any = None, *, chunk: int = 500) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self.url = url
        self.private_key = private_key or ec.generate_private_key(ec.SECP256R1())
        self.chunk = chunk
        self.posted: list[tuple[int, int]] = []  # (HTTP status, events) per POST

    @property
    def public_key_b64(self) -> str:
        from cryptography.hazmat.primitives import serialization

        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        ts = timestamp or str(int(time.time()))
        signature = self.private_key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            self.SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            self.TIMESTAMP_HEADER: ts,
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
        }

    def post(self, events: list[dict[str, Any]], timeout: float = 30) -> list[int]:
        """POST ``events`` in chunks as SendGrid does; the HTTP status of each POST."""
        statuses = []
        for i in range(0, len(events), self.chunk):
            part = events[i : i + self.chunk]
            body = json.dumps(part, separators=(",", ":")).encode()
            request = urllib.request.Request(self.url, data=body, headers=self.headers(body), method="POST")
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            statuses.append(status)
            self.posted.append((status, len(part)))
        return statuses


def event_for(entry: Personalization, kind: str, n: int, **extra: Any) -> dict[str, Any]:
    """One Event Webhook event about a logged personalization, shaped as SendGrid's."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event {kind!r}; one of {EVENT_KINDS}")
    event: dict[str, Any] = {
        **entry.custom_args,  # custom args ride at the top level
        "email": entry.email,
        "timestamp": int(entry.at),
        "event": kind,
        "sg_event_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
        "sg_message_id": f"{entry.message_id}.filterdrecv-{n}-0",
        "smtp-id": f"<{entry.message_id}@fake.sendgrid.net>",
    }
    if kind == "delivered":
        event.update(response="250 2.0.0 OK", tls=1)
    elif kind == "dropped":
        event.update(reason="Bounced Address", status="5.0.0")
    elif kind == "deferred":
        event.update(response="421 4.7.0 try again later", attempt="1")
    elif kind == "bounce":
        event.update(reason="550 5.1.1 no such user", status="5.1.1", type="bounce")
    event.update(extra)
    return event


class FakeSendGrid:
    """``with FakeSendGrid() as sg: ...`` runs the server in a thread; ``sg.url`` is its base URL.

    ``link``: latency and bandwidth (``Link.of(150, 100)``: 150 ms round trip, 100 Mbit/s up).
    ``webhook`` + ``auto_events``: after each accepted request, a background thread posts these
    events for its recipients to the webhook (``event_delay`` seconds later).
    """

    def __init__(
        self,
        *,
        api_key: str = "SG.test-key",
        fast: bool = False,
        port: int = 0,
        link: Link | None = None,
        webhook: EventWebhook | None = None,
        auto_events: tuple[str, ...] = (),
        event_delay: float = 0.0,
    ) -> None:
        self.state = FakeState(api_key=api_key, fast=fast, link=link or Link())
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.state = self.state
        self._thread: threading.Thread | None = None
        self.webhook = webhook
        self.auto_events = auto_events
        self.event_delay = event_delay
        self._events: queue.Queue[tuple[float, list[Personalization]] | None] = queue.Queue()
        self._event_thread: threading.Thread | None = None
        self._event_seq = itertools.count(1)
        if webhook is not None and auto_events:
            self.state.on_accept = lambda entries: self._events.put((time.monotonic() + event_delay, entries))

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeSendGrid:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        if self.state.on_accept is not None:
            self._event_thread = threading.Thread(target=self._post_events, daemon=True)
            self._event_thread.start()
        return self

    def stop(self) -> None:
        self.state.stopping.set()  # wakes stalled handlers
        self._server.shutdown()
        self._server.server_close()
        if self._event_thread is not None:
            self._events.put(None)
            self._event_thread.join(30)

    def _post_events(self) -> None:
        assert self.webhook is not None
        while (item := self._events.get()) is not None:
            due, entries = item
            self.state.wait(due - time.monotonic())
            events = [event_for(e, kind, next(self._event_seq)) for e in entries for kind in self.auto_events]
            with contextlib.suppress(OSError):  # the web app may be down: SendGrid would retry later
                self.webhook.post(events)

    def post_events_to(self, webhook: EventWebhook, auto_events: tuple[str, ...], delay: float = 0.0) -> None:
        """Start posting ``auto_events`` to ``webhook`` after each accepted request (a running fake)."""
        self.webhook, self.auto_events, self.event_delay = webhook, auto_events, delay
        self.state.on_accept = lambda entries: self._events.put((time.monotonic() + delay, entries))
        if self._event_thread is None:
            self._event_thread = threading.Thread(target=self._post_events, daemon=True)
            self._event_thread.start()

    def drain_events(self, timeout: float = 30) -> None:
        """Wait until every queued automatic event has been posted."""
        deadline = time.monotonic() + timeout
        while not self._events.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.05)

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting --------------------------------------------------------------------------
    def fail_next(self, kind: str, times: int = 1, seconds: float = 0.0) -> None:
        """The next ``times`` mail/send requests get ``kind`` (429, 500, 400, 401, hang, accept_hang, close_after)."""
        self.state.faults.extend(Fault(kind, seconds) for _ in range(times))

    def fail_when(self, predicate: Callable[[dict[str, Any]], bool], kind: str, seconds: float = 0.0) -> None:
        self.state.rules.append((predicate, Fault(kind, seconds)))

    def fail_every(self, n: int, kind: str, seconds: float = 0.0) -> None:
        """Every ``n``-th mail/send request (by arrival) gets ``kind``: ``fail_every(5, "stall")``."""
        if n < 1:
            raise ValueError("n must be at least 1")
        self.state.every.append((n, Fault(kind, seconds)))

    def rate_limit(self, requests: int, per_seconds: float = 1.0) -> None:
        """SendGrid's limit for real: at most ``requests`` mail/send requests in each window of
        ``per_seconds``; the headers count down, and over the limit the answer is 429 with
        ``X-RateLimit-Reset`` at the window's end (epoch seconds, rounded up)."""
        self.state.rate = (requests, per_seconds)
        self.state.rate_window_start, self.state.rate_used = 0.0, 0

    def storm(self, seconds: float) -> None:
        """Every mail/send request for the next ``seconds`` gets a 429 whose
        ``X-RateLimit-Reset`` is the storm's end."""
        self.state.storm_until = time.time() + seconds

    # -- the log ----------------------------------------------------------------------------
    @property
    def log(self) -> list[Personalization]:
        """Every accepted personalization, in order (not in fast mode)."""
        return self.state.log

    def copies(self, edition: str | None = None) -> collections.Counter[str]:
        """How many accepted, not cancelled copies each address got (of ``edition``, or of any).

        Keyed by the address lowercased, as SendGrid compares addresses; ``strasse@x`` and
        ``straße@x`` are two keys."""
        cancelled = {
            i
            for i, a in enumerate(self.state.accepted)
            if a.batch_id and self.state.batches.get(a.batch_id) == "cancel"
        }
        return collections.Counter(
            e.email.lower()
            for e in self.state.log
            if (edition is None or e.edition == edition) and e.request not in cancelled
        )

    def duplicates(self, edition: str | None = None) -> dict[str, int]:
        """Addresses that got ``edition`` more than once, with how many copies."""
        return {email: n for email, n in self.copies(edition).items() if n > 1}

    def missing(self, expected: Any, edition: str | None = None) -> set[str]:
        """Addresses in ``expected`` that never got ``edition``."""
        got = self.copies(edition)
        return {e for e in expected if e.lower() not in got}

    def send_events(
        self,
        kinds: tuple[str, ...] = ("processed", "delivered"),
        *,
        only: Callable[[Personalization], bool] | None = None,
        webhook: EventWebhook | None = None,
    ) -> list[int]:
        """Post events of ``kinds`` for every logged personalization (that ``only`` keeps)."""
        hook = webhook or self.webhook
        if hook is None:
            raise ValueError("no webhook: pass one here or to FakeSendGrid(webhook=...)")
        events = [
            event_for(e, kind, next(self._event_seq))
            for e in self.state.log
            if only is None or only(e)
            for kind in kinds
        ]
        return hook.post(events)

    def suppress(self, kind: str, *emails: str) -> None:
        self.state.suppressed[kind].update(e.lower() for e in emails)

    @property
    def accepted(self) -> list[Accepted]:
        return self.state.accepted

    def delivered(self) -> collections.Counter[str]:
        return self.state.delivered()

    def mail_requests(self) -> int:
        return sum(1 for m, p in self.state.requests if p == "/v3/mail/send")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--key", default="SG.test-key")
    parser.add_argument("--round-trip-ms", type=float, default=0.0, help="latency of every request")
    parser.add_argument("--upload-mbit", type=float, default=0.0, help="shared uplink cap (0: none)")
    parser.add_argument(
        "--spot-every", type=int, default=50, help="fast mode: fully validate one request in N (1: all)"
    )
    args = parser.parse_args()
    server = FakeSendGrid(
        api_key=args.key, fast=args.fast, port=args.port, link=Link.of(args.round_trip_ms, args.upload_mbit)
    )
    server.state.spot_every = max(1, args.spot_every)
    print(server.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server._server.serve_forever()


if __name__ == "__main__":
    main()
