"""The web app's security plumbing: rate limits, CSRF, response headers and body limits.

None of it knows about subscribers: these are the parts every route sits behind, kept apart
from the routes so each can be read (and tested) on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "digest_csrf"
CSRF_FIELD = "csrf_token"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class RateLimiter:
    """A sliding window of hits per key, in memory: enough for one `digest serve` process.

    Refused hits are not counted, so a flood does not push the reopening further away. The
    number of keys is capped so that a spray of addresses cannot grow memory without bound.
    """

    def __init__(
        self,
        limit: int,
        window: float = 3600.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 50_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float:
        """Count one request for ``key``: 0.0 if allowed, else seconds until one will be."""
        if self.limit <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= self.max_keys:
                    self._prune(now)
                hits = self._hits[key] = deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window - now, 1.0)
            hits.append(now)
            return 0.0

    def forget(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
            del self._hits[key]
        while len(self._hits) >= self.max_keys:  # still full: drop the oldest keys
            self._hits.pop(next(iter(self._hits)))


def client_key(request: Request) -> str:
    """The rate-limit key of a client: its IP, or its /64 for IPv6 (one host owns a whole /64)."""
    host = request.client.host if request.client else "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Csrf:
    """Signed double-submit: the cookie holds a random nonce, each form an HMAC of it.

    A forging page can neither read our cookie nor compute the HMAC without the secret, so it
    cannot build a form that passes, and no server-side session is needed. Where the browser
    says where a POST comes from (Origin, Sec-Fetch-Site) it must be us. ``Origin: null`` is
    allowed through to the token check: our own Referrer-Policy (no-referrer) makes browsers
    send exactly that on same-origin form posts.
    """

    def __init__(self, secret: str, *, origins: set[str], secure: bool) -> None:
        self.key = hmac.new(secret.encode("utf-8"), b"digest csrf v1", hashlib.sha256).digest()
        self.origins = origins
        self.secure = secure

    def _mac(self, nonce: str) -> str:
        digest = hmac.new(self.key, nonce.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def nonce(self, request: Request) -> tuple[str, bool]:
        """The nonce of this browser, and whether it is new (and must be set as a cookie)."""
        current = request.cookies.get(CSRF_COOKIE, "")
        if 20 <= len(current) <= 100 and current.replace("-", "").replace("_", "").isalnum():
            return current, False
        return secrets.token_urlsafe(32), True

    def token(self, nonce: str) -> str:
        return self._mac(nonce)

    def set_cookie(self, response: Response, nonce: str) -> None:
        response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="lax", secure=self.secure, path="/")

    def refusal(self, request: Request, form: FormData) -> str | None:
        """Why this POST must be refused, or None when it came from our own form."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return "cross-site"
        origin = request.headers.get("origin")
        if origin and origin != "null":
            own = f"{request.url.scheme}://{request.headers.get('host', '')}"
            if origin != own and origin not in self.origins:
                return "origin"
        cookie = request.cookies.get(CSRF_COOKIE)
        sent = form.get(CSRF_FIELD)
        if not cookie or not isinstance(sent, str) or not sent:
            return "missing"
        if not hmac.compare_digest(sent.encode("utf-8"), self._mac(cookie).encode("ascii")):
            return "mismatch"
        return None


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class SecurityHeaders:
    """Adds the headers every response needs; pages with tokens are never cached."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.extend(h for h in self.headers if h[0] not in names)
                if not static and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuses request bodies over a limit with our own 413 page (an HTTPException from receive).

    Checked as the body streams in, so a lying or missing Content-Length does not help; the
    provider webhook gets a larger allowance, since SendGrid posts events in batches.
    """

    def __init__(self, app: ASGIApp, *, default: int, larger: Mapping[str, int]) -> None:
        self.app = app
        self.default = default
        self.larger = dict(larger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = next((n for prefix, n in self.larger.items() if path.startswith(prefix)), self.default)
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413)
            return message

        await self.app(scope, limited_receive, send)
