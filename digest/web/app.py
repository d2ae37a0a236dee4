"""The reader-facing web app: subscribe, confirm, preference centre and one-click unsubscribe.

Starlette, because it is small (no ORM, admin or settings module to fight), well kept, async,
and ships a TestClient; the pages are plain Jinja2 templates that work without JavaScript.

Rules every route keeps:
- A GET never changes anything: mail scanners follow links. Every change is a POST from a
  button, protected against cross-site forgery, except RFC 8058 one-click unsubscribe, which
  mail clients POST without cookies and which the signed token alone authorises.
- A bad, forged or expired token gets a clear page (400) and touches nothing.
- The subscribe answer is the same for a new address and a known one, so the form cannot be
  used to learn who is subscribed; mail goes out after the response, so timing does not tell
  either.
- POST /webhooks/sendgrid takes SendGrid's signed Event Webhook (digest.send.webhook): no
  cookies or CSRF there, the ECDSA signature and a fresh timestamp are what it trusts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import secrets
import threading
import time
import unicodedata
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest import subscribers as subs
from digest.config import Config, category_key
from digest.errors import ConfigError, DigestError, LinkError, StoreError
from digest.links import CONFIRM, PREFERENCES, UNSUBSCRIBE, LinkMaker, Signer, load_secret
from digest.model import Subscriber
from digest.send import webhook
from digest.send.base import OutgoingMessage, Sender
from digest.web.archive_routes import archive_routes

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MAX_BODY_BYTES = 64 * 1024  # the largest honest form is a few hundred bytes
WEBHOOK_MAX_BODY_BYTES = 8 * 1024 * 1024  # SendGrid batches events: up to a few MB a post
MAX_EMAIL_CHARS = 254  # RFC 5321 path limit
MAX_NAME_CHARS = 100
MAX_TOKEN_CHARS = 1024
RESEND_SECONDS = 3600.0  # at most one subscribe email per address per hour
CSRF_COOKIE = "digest_csrf"
CSRF_FIELD = "csrf_token"
LIVE = ("pending", "active", "paused")  # statuses a reader can still manage
STATUS_TEXT = {
    "pending": "Waiting for you to confirm",
    "active": "Subscribed",
    "paused": "Paused",
    "unsubscribed": "Unsubscribed",
    "bounced": "Stopped: emails to this address bounced",
    "complained": "Stopped: our email was marked as spam",
}
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


# --- small parts ---------------------------------------------------------------------------


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


def _origin(url: str) -> str:
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


def _text(form: FormData | Mapping[str, Any], key: str) -> str:
    """A form field as text; a file upload or a missing field is empty."""
    value = form.get(key)
    return value if isinstance(value, str) else ""


def _webhook_key(config: Config) -> Any:
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


def _address_problem(message: str) -> str:
    """The store's reason without its echo of the input (the field already shows that)."""
    _, sep, reason = message.partition(" is not a valid email address: ")
    return f"That is not a valid email address: {reason[:1].lower()}{reason[1:]}" if sep else message


def _has_control(text: str) -> bool:
    """CR, LF, NUL, tabs and the Unicode line/paragraph separators: never part of a name."""
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


# --- the app -------------------------------------------------------------------------------


class WebApp:
    """Everything the routes share: config, store, sender, signer, limits and templates."""

    def __init__(self, config: Config, store: Any, sender: Sender) -> None:
        self.config = config
        self.store = store
        self.sender = sender
        secret = load_secret(config)
        self.signer = Signer(secret)
        self.links = LinkMaker(config.web.base_url, self.signer)
        secure = config.web.base_url.startswith("https://")
        self.csrf = Csrf(secret, origins={_origin(config.web.base_url)}, secure=secure)
        self.webhook_key = _webhook_key(config)
        self.subscribe_limit = RateLimiter(config.web.subscribe_per_hour)
        self.resend_limit = RateLimiter(1, RESEND_SECONDS)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
            keep_trailing_newline=True,
        )

    # -- rendering --

    def render(
        self,
        request: Request | None,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        csrf: bool = False,
    ) -> HTMLResponse:
        ctx: dict[str, Any] = {
            "site_name": self.config.site.name,
            "lang": self.config.site.language or "en",
            "postal_address": self.config.site.postal_address,
            "root": request.scope.get("root_path", "").rstrip("/") if request else "",
            "categories": self.config.categories,
            "errors": {},
        }
        ctx.update(context or {})
        nonce, fresh = self.csrf.nonce(request) if csrf and request else ("", False)
        if csrf:
            ctx["csrf_token"] = self.csrf.token(nonce)
        html = self.env.get_template(template).render(ctx)
        response = HTMLResponse(html, status_code=status, headers=dict(headers or {}), background=background)
        if fresh:
            self.csrf.set_cookie(response, nonce)
        return response

    def error(
        self,
        request: Request | None,
        status: int,
        heading: str,
        message: str,
        hint: str = "",
        *,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        return self.render(
            request,
            "error.html",
            {"heading": heading, "message": message, "hint": hint},
            status=status,
            headers=headers,
        )

    def link_error(self, request: Request, exc: LinkError) -> HTMLResponse:
        return self.error(
            request,
            400,
            "This link doesn't work",
            str(exc),
            "Nothing has been changed. Use the newest email from us, or subscribe again.",
        )

    def forgery(self, request: Request) -> HTMLResponse:
        return self.error(
            request,
            403,
            "Please try that again",
            "This form was out of date or did not come from this site, so nothing was changed.",
            "Go back, reload the page and press the button again. This site needs cookies for its "
            "forms; please allow them for this site.",
        )

    def topic_names(self, keys: tuple[str, ...] | list[str]) -> list[str]:
        """Category keys as their display names, in config order (unknown keys as stored)."""
        by_key = {c.key: c.name for c in self.config.categories}
        ordered = [c.name for c in self.config.categories if c.key in keys]
        return ordered + [k for k in keys if k not in by_key]

    # -- request helpers --

    async def form(self, request: Request) -> FormData:
        try:
            return await request.form(max_files=0, max_fields=50, max_part_size=MAX_BODY_BYTES)
        except HTTPException:
            raise
        except Exception as exc:  # python-multipart's parse errors have no common base
            raise HTTPException(400, "The form could not be read.") from exc

    def verify(self, purpose: str, token: str) -> str:
        """The address a token belongs to; LinkError if it is damaged, forged or expired."""
        if len(token) > MAX_TOKEN_CHARS:
            raise LinkError("This link is damaged: it is far longer than any link we send.")
        max_age = self.config.web.confirm_hours * 3600 if purpose == CONFIRM else None
        return self.signer.verify(purpose, token, max_age=max_age)

    def categories_from_form(self, values: list[str]) -> tuple[list[str], str]:
        """The config's display names for the ticked boxes, or an error saying what is wrong."""
        names: list[str] = []
        for value in values:
            cat = self.config.find_category(value) if len(value) <= 200 else None
            if cat is None:
                shown = value if len(value) <= 40 else value[:40] + "…"
                return [], f"There is no topic called “{shown}”. Pick from the list."
            if cat.name not in names:
                names.append(cat.name)
        if self.config.categories and not names:
            return [], "Pick at least one topic."
        return names, ""

    # -- routes: subscribe --

    async def home(self, request: Request) -> Response:
        chosen = {c.key for c in self.config.categories}  # everything ticked to start with
        return self.render(
            request, "subscribe.html", {"form": {"email": "", "name": "", "chosen": chosen}}, csrf=True
        )

    async def subscribe(self, request: Request) -> Response:
        wait = self.subscribe_limit.hit(client_key(request))
        if wait:
            minutes = max(1, math.ceil(wait / 60))
            return self.error(
                request,
                429,
                "Too many attempts",
                "We've had a lot of sign-ups from your network in the last hour, so we've paused "
                "them for a while to stop abuse.",
                f"Please try again in about {minutes} minute{'s' if minutes != 1 else ''}.",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        form = await self.form(request)
        if self.csrf.refusal(request, form):
            return self.forgery(request)
        raw_email = _text(form, "email").strip()
        name = _text(form, "name").strip()
        values = [v.strip() for v in form.getlist("category") if isinstance(v, str)]
        errors: dict[str, str] = {}
        email = ""
        if not raw_email:
            errors["email"] = "Enter your email address."
        elif len(raw_email) > MAX_EMAIL_CHARS:
            errors["email"] = (
                f"That address is too long: an email address has at most {MAX_EMAIL_CHARS} characters."
            )
        elif _has_control(raw_email):
            errors["email"] = "An email address can't contain line breaks or control characters."
        else:
            try:
                email = subs.normalise_email(raw_email)
            except StoreError as exc:
                errors["email"] = _address_problem(str(exc))
        if len(name) > MAX_NAME_CHARS:
            errors["name"] = f"Your name can be at most {MAX_NAME_CHARS} characters."
        elif _has_control(name):
            errors["name"] = "Your name can't contain line breaks or control characters."
        names, problem = self.categories_from_form(values)
        if problem:
            errors["category"] = problem
        if errors:
            shown = {
                "email": raw_email[:MAX_EMAIL_CHARS],
                "name": "" if "name" in errors else name,
                "chosen": {category_key(v) for v in values},
            }
            return self.render(
                request, "subscribe.html", {"form": shown, "errors": errors}, status=400, csrf=True
            )
        try:
            subscriber, mail = await run_in_threadpool(self._subscribe, email, names, name)
        except StoreError as exc:  # the store's own validation: same input, same answer
            shown = {"email": raw_email, "name": name, "chosen": {category_key(v) for v in values}}
            return self.render(
                request,
                "subscribe.html",
                {"form": shown, "errors": {"form": str(exc)}},
                status=400,
                csrf=True,
            )
        task = BackgroundTask(self._send_subscribe_mail, subscriber, mail) if mail else None
        return self.render(
            request,
            "subscribe_sent.html",
            {"email": email, "confirm_hours": self.config.web.confirm_hours},
            background=task,
        )

    def _subscribe(self, email: str, names: list[str], name: str) -> tuple[Subscriber, str]:
        """Record the request; say which email (if any) to send. Never reveals what was there.

        New, pending or unsubscribed: (re)start double opt-in. Active or paused: change
        nothing (anyone can type an address) and remind the owner how to manage it. Bounced or
        complained: stay silent, so the form cannot be used to mail someone who objected.
        """
        existing = subs.get(self.store, email)
        if existing is not None and existing.status in ("active", "paused"):
            return existing, "already"
        if existing is not None and existing.status in ("bounced", "complained"):
            return existing, ""
        subscriber, outcome = subs.subscribe(self.store, self.config, email, names, name=name, source="web")
        return subscriber, "already" if outcome == subs.ALREADY_ACTIVE else "confirm"

    def _send_subscribe_mail(self, subscriber: Subscriber, kind: str) -> None:
        """Runs after the response. At most one such email per address per hour."""
        key = subscriber.email.casefold()
        if self.resend_limit.hit(key):
            log.info("not re-sending a %s email to %s within the hour", kind, subscriber.email)
            return
        ctx = {
            "site_name": self.config.site.name,
            "lang": self.config.site.language or "en",
            "postal_address": self.config.site.postal_address,
            "email": subscriber.email,
            "topics": self.topic_names(subscriber.categories),
            "confirm_hours": self.config.web.confirm_hours,
        }
        if kind == "confirm":
            ctx["confirm_url"] = self.links.confirm_url(subscriber.email)
            subject = f"Confirm your subscription to {self.config.site.name}"
        else:
            ctx["preferences_url"] = self.links.preferences_url(subscriber.email)
            subject = f"You're already subscribed to {self.config.site.name}"
        message = OutgoingMessage(
            to=subscriber.email,
            subject=subject,
            html=self.env.get_template(f"email_{kind}.html").render(ctx),
            text=self.env.get_template(f"email_{kind}.txt").render(ctx),
            headers={"Auto-Submitted": "auto-generated"},
            categories=(f"digest-{kind}",),
        )
        try:
            self.sender.send_one(message)
        except DigestError as exc:
            self.resend_limit.forget(key)  # let the reader try again at once
            log.error("could not send the %s email to %s: %s", kind, subscriber.email, exc)

    # -- routes: confirm --

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        if request.method == "POST":
            form = await self.form(request)
            if self.csrf.refusal(request, form):
                return self.forgery(request)
        try:
            email = self.verify(CONFIRM, token)
        except LinkError as exc:
            return self.link_error(request, exc)
        subscriber = await run_in_threadpool(subs.get, self.store, email)
        if subscriber is None or subscriber.status not in LIVE:
            return self.error(
                request,
                400,
                "This link is no longer valid",
                "This address was unsubscribed or removed after the link was sent, so it can't be "
                "used to subscribe. Nothing has been changed.",
                "To get the emails again, subscribe on the subscribe page.",
            )
        if subscriber.status == "pending" and request.method == "POST":
            try:
                await run_in_threadpool(subs.confirm, self.store, email, source="web")
            except StoreError as exc:
                return self.error(request, 400, "We couldn't confirm this address", str(exc))
            return self.render(
                request,
                "confirmed.html",
                {
                    "heading": "You're subscribed",
                    "message": f"Thank you. The next edition of {self.config.site.name} will reach "
                    f"{subscriber.email}.",
                    "preferences_url": self.links.preferences_url(subscriber.email),
                },
            )
        if subscriber.status == "pending":
            return self.render(
                request,
                "confirm.html",
                {
                    "subscriber": subscriber,
                    "token": token,
                    "topics": self.topic_names(subscriber.categories),
                },
                csrf=True,
            )
        return self.render(  # a second click, or a replayed link: nothing to do
            request,
            "confirmed.html",
            {
                "heading": "You're already subscribed",
                "message": f"{subscriber.email} is already confirmed; there is nothing more to do.",
                "preferences_url": self.links.preferences_url(subscriber.email),
            },
        )

    # -- routes: preference centre --

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        form: FormData | None = None
        if request.method == "POST":
            form = await self.form(request)
            if self.csrf.refusal(request, form):
                return self.forgery(request)
        try:
            email = self.verify(PREFERENCES, token)
        except LinkError as exc:
            return self.link_error(request, exc)
        subscriber = await run_in_threadpool(subs.get, self.store, email)
        if subscriber is None:
            return self.error(
                request,
                400,
                "We can't find this subscription",
                "This address is not on our list any more (it may have been removed at your request).",
                "Nothing has been changed. To get the emails again, subscribe on the subscribe page.",
            )
        message, errors, status = "", {}, 200
        chosen: set[str] | None = None
        if form is not None:
            action = _text(form, "action")
            try:
                if subscriber.status not in LIVE:
                    errors["form"] = (
                        f"This address is {subscriber.status}, so there is nothing to change here. "
                        "To get the emails again, subscribe on the subscribe page."
                    )
                elif action == "save":
                    values = [v.strip() for v in form.getlist("category") if isinstance(v, str)]
                    names, problem = self.categories_from_form(values)
                    if problem:
                        errors["category"] = problem
                        chosen = {category_key(v) for v in values}
                    else:
                        await run_in_threadpool(
                            subs.set_categories, self.store, self.config, email, names, source="preferences"
                        )
                        message = "Your topics are saved."
                elif action in ("pause", "resume"):
                    status_to = "paused" if action == "pause" else "active"
                    await run_in_threadpool(
                        subs.set_status, self.store, email, status_to, source="preferences"
                    )
                    message = (
                        "Your emails are paused. Come back here to resume them."
                        if action == "pause"
                        else "Your emails are back on."
                    )
                elif action == "unsubscribe":
                    await run_in_threadpool(subs.unsubscribe, self.store, email, source="preferences")
                    message = "You're unsubscribed from all emails."
                else:
                    errors["form"] = "That button is not one we know. Nothing has been changed."
            except StoreError as exc:
                errors["form"] = str(exc)
            if errors:
                status = 400
            subscriber = await run_in_threadpool(subs.get, self.store, email) or subscriber
        return self.render(
            request,
            "preferences.html",
            {
                "subscriber": subscriber,
                "token": token,
                "chosen": chosen if chosen is not None else set(subscriber.categories),
                "status_text": STATUS_TEXT.get(subscriber.status, subscriber.status),
                "message": message,
                "errors": errors,
            },
            status=status,
            csrf=True,
        )

    # -- routes: unsubscribe --

    async def unsubscribe(self, request: Request) -> Response:
        """RFC 8058: a POST whose body is ``List-Unsubscribe=One-Click`` unsubscribes, no cookie needed.

        The GET page only shows a button (which posts the same body), so a scanner that
        follows the link unsubscribes nobody.
        """
        token = request.path_params["token"]
        fields: Mapping[str, Any] = {}
        if request.method == "POST":
            fields = await self._one_click_fields(request)
        try:
            email = self.verify(UNSUBSCRIBE, token)
        except LinkError as exc:
            return self.link_error(request, exc)
        subscriber = await run_in_threadpool(subs.get, self.store, email)
        shown = subscriber.email if subscriber else email
        ctx = {"email": shown, "token": token, "preferences_url": self.links.preferences_url(shown)}
        if request.method != "POST":
            done = subscriber is not None and subscriber.status == "unsubscribed"
            return self.render(request, "unsubscribe.html", {**ctx, "done": done})
        if _text(fields, "List-Unsubscribe") != "One-Click":
            return self.error(
                request,
                400,
                "Nothing was changed",
                "This request did not say List-Unsubscribe=One-Click.",
                "To unsubscribe, open the link from the email and press the button on the page.",
            )
        if subscriber is not None and subscriber.status in LIVE:
            source = "unsubscribe-page" if _text(fields, "from") == "page" else "one-click"
            try:
                await run_in_threadpool(subs.unsubscribe, self.store, email, source=source)
            except StoreError as exc:
                return self.error(request, 400, "We couldn't unsubscribe this address", str(exc))
        return self.render(request, "unsubscribe.html", {**ctx, "done": True})

    async def _one_click_fields(self, request: Request) -> Mapping[str, Any]:
        """The body as fields, whatever the mail client called its type (form, multipart, none)."""
        ctype = request.headers.get("content-type", "").lower()
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            return await self.form(request)
        body = await request.body()
        parsed = parse_qs(body.decode("utf-8", "replace").strip(), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    # -- routes: the provider --

    async def sendgrid_webhook(self, request: Request) -> Response:
        """SendGrid's Event Webhook: bounces, spam reports and unsubscribes end subscriptions.

        Refused with 403, changing nothing: no key configured, no signature, a timestamp more
        than ten minutes off (a replay), or a signature that does not match the raw body.
        Events seen before (by sg_event_id) are recorded once.
        """
        if self.webhook_key is None:
            log.warning("refused a SendGrid webhook: [web] sendgrid_webhook_public_key is not set")
            return PlainTextResponse("webhook not configured\n", status_code=403)
        signature = request.headers.get(webhook.SIGNATURE_HEADER, "")
        timestamp = request.headers.get(webhook.TIMESTAMP_HEADER, "")
        if not signature or not timestamp:
            return PlainTextResponse("unsigned request\n", status_code=403)
        try:
            age = abs(time.time() - float(timestamp))
        except ValueError:
            age = math.inf
        if not age <= webhook.MAX_AGE_SECONDS:
            log.warning("refused a SendGrid webhook with a stale timestamp %r (a replay?)", timestamp[:40])
            return PlainTextResponse("stale timestamp\n", status_code=403)
        body = await request.body()
        if not webhook.verify_signature(self.webhook_key, body, signature, timestamp):
            log.warning("refused a SendGrid webhook with a bad signature")
            return PlainTextResponse("bad signature\n", status_code=403)
        try:
            events = json.loads(body)
        except ValueError:
            return PlainTextResponse("body is not JSON\n", status_code=400)
        if not isinstance(events, list):
            return PlainTextResponse("body is not a JSON list of events\n", status_code=400)
        summary = await run_in_threadpool(webhook.record_events, self.store, events)
        return JSONResponse(
            {
                "received": summary.received,
                "recorded": summary.recorded,
                "duplicates": summary.duplicates,
                "marked": dict(summary.marked),
            }
        )

    # -- routes: operations --

    async def healthz(self, request: Request) -> Response:
        """200 when the database answers; what a load balancer or systemd watchdog polls."""
        try:
            await run_in_threadpool(self._ping)
        except Exception as exc:
            log.error("health check failed: %s", exc)
            return PlainTextResponse("database unavailable\n", status_code=503)
        return PlainTextResponse("ok\n")

    def _ping(self) -> None:
        from sqlalchemy import text

        with self.store.reading() as connection:
            connection.execute(text("SELECT 1"))

    # -- errors --

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        pages = {
            400: ("We couldn't read that", "The request was malformed, so nothing was changed."),
            404: ("Page not found", "There is no page at this address."),
            405: ("Not allowed", "This page can't be used that way."),
            413: ("Too much data", "That form was far larger than any real one, so it was not read."),
        }
        heading, message = pages.get(status, ("Something went wrong", "Please try again."))
        headers = getattr(exc, "headers", None) or {}
        return self.error(request, status, heading, message, headers=headers)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, DigestError):
            log.error("%s %s: %s", request.method, request.url.path, exc)
        else:
            log.exception("%s %s failed", request.method, request.url.path)
        return self.error(
            request,
            500,
            "Something went wrong on our side",
            "Nothing you did caused this. Please try again in a few minutes.",
        )


def create_app(config: Config, *, store: Any = None, sender: Sender | None = None) -> Starlette:
    """The ASGI app for `digest serve`. Opens the configured store and sender unless given them."""
    own_store = store is None
    if store is None:
        from digest.store import open_store

        store = open_store(config)
    own_sender = sender is None
    if sender is None:
        from digest.send import make_sender

        sender = make_sender(config)
    web = WebApp(config, store, sender)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if own_sender:
            sender.close()
        if own_store:
            store.dispose()

    routes = [
        Route("/", web.home, methods=["GET"], name="home"),
        Route("/subscribe", web.home, methods=["GET"]),
        Route("/subscribe", web.subscribe, methods=["POST"], name="subscribe"),
        Route("/confirm/{token}", web.confirm, methods=["GET", "POST"], name="confirm"),
        Route("/preferences/{token}", web.preferences, methods=["GET", "POST"], name="preferences"),
        Route("/unsubscribe/{token}", web.unsubscribe, methods=["GET", "POST"], name="unsubscribe"),
        Route("/healthz", web.healthz, methods=["GET"], name="healthz"),
        Route("/favicon.ico", _no_favicon, methods=["GET"]),
        Route("/webhooks/sendgrid", web.sendgrid_webhook, methods=["POST"], name="sendgrid_webhook"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    routes.extend(archive_routes(config, store))  # past editions: digest/web/archive_routes.py
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: web.http_error, Exception: web.server_error},
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, default=MAX_BODY_BYTES, larger={"/webhooks/": WEBHOOK_MAX_BODY_BYTES})
    app.add_middleware(SecurityHeaders, hsts=config.web.base_url.startswith("https://"))
    app.state.web = web
    return app


async def _no_favicon(request: Request) -> Response:
    """Browsers ask for it on every page; an empty answer keeps 404s out of the logs."""
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})
