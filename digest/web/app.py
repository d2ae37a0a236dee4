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

import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from digest import pipeline
from digest import subscribers as subs
from digest.config import Config, category_key
from digest.errors import DigestError, LinkError, StoreError
from digest.links import CONFIRM, PREFERENCES, UNSUBSCRIBE, LinkMaker, Signer, load_secret
from digest.model import Subscriber
from digest.send.base import Sender
from digest.store import DatabaseBusyError
from digest.web.archive_routes import archive_routes
from digest.web.forms import categories_from_form, read_subscribe_form, text_field
from digest.web.jobs import Jobs
from digest.web.mail import subscribe_message
from digest.web.provider import SendGridWebhook, webhook_key
from digest.web.security import (
    CSP,
    CSRF_COOKIE,
    CSRF_FIELD,
    BodyLimit,
    Csrf,
    RateLimiter,
    SecurityHeaders,
    client_key,
    origin_of,
)

__all__ = [
    "CSP",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "RateLimiter",
    "WebApp",
    "client_key",
    "create_app",
]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MAX_BODY_BYTES = 64 * 1024  # the largest honest form is a few hundred bytes
WEBHOOK_MAX_BODY_BYTES = 8 * 1024 * 1024  # SendGrid batches events: up to a few MB a post
MAX_TOKEN_CHARS = 1024
RESEND_SECONDS = 3600.0  # at most one subscribe email per address per hour
LIVE = ("pending", "active", "paused")  # statuses a reader can still manage
STATUS_TEXT = {
    "pending": "Waiting for you to confirm",
    "active": "Subscribed",
    "paused": "Paused",
    "unsubscribed": "Unsubscribed",
    "bounced": "Stopped: emails to this address bounced",
    "complained": "Stopped: our email was marked as spam",
}


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
        self.csrf = Csrf(secret, origins={origin_of(config.web.base_url)}, secure=secure)
        self.webhook_key = webhook_key(config)
        self.jobs = Jobs()
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
        response = HTMLResponse(html, status_code=status, headers=dict(headers or {}))
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
        return pipeline.display_names(self.config, keys, config_order=True)

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
        reader = self.signer.reader_id(token)  # a reader token (id, no address), or None
        if reader is not None and purpose != CONFIRM:
            return self.signer.verify_reader(purpose, token, self.reader_email(reader), max_age=max_age)
        email = self.signer.verify(purpose, token, max_age=max_age)
        try:
            return subs.normalise_email(email)
        except StoreError:  # signed by us, for an address our rules no longer accept
            raise LinkError(
                "This link was made for an email address we can no longer accept, so it can't be "
                "used any more."
            ) from None

    def reader_email(self, subscriber_id: int) -> str | None:
        """The stored address of a reader token's id (one primary-key read), or None."""
        from sqlalchemy import select

        from digest.store import subscribers as table

        if subscriber_id > 2**31 - 1:  # no such id (the column is a 32-bit integer on PostgreSQL)
            return None
        with self.store.reading() as c:
            found = c.execute(select(table.c.email).where(table.c.id == subscriber_id)).scalar_one_or_none()
        return None if found is None else str(found)

    def categories_from_form(self, values: list[str]) -> tuple[list[str], str]:
        return categories_from_form(self.config, values)

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
        read = read_subscribe_form(self.config, form)
        if read.errors:
            return self.render(
                request, "subscribe.html", {"form": read.shown, "errors": read.errors}, status=400, csrf=True
            )
        email, names, name = read.email, read.names, read.name
        # Whatever the address's state, the answer is this page, by this path: the look-up, the
        # write and the email happen on the job thread (digest.web.jobs), queued only once the
        # answer has been sent, so they cannot compete with writing it.
        response = self.render(
            request,
            "subscribe_sent.html",
            {"email": email, "confirm_hours": self.config.web.confirm_hours},
        )
        response.background = BackgroundTask(
            self.jobs.put, lambda: self._subscribe_and_mail(email, names, name)
        )
        return response

    def _subscribe_and_mail(self, email: str, names: list[str], name: str) -> None:
        """The job behind every accepted form: record the request, then send its email (if any)."""
        try:
            subscriber, mail = self._subscribe(email, names, name)
        except StoreError as exc:
            log.error("could not record a subscribe request for %s: %s", email, exc)
            return
        if mail:
            self._send_subscribe_mail(subscriber, mail)

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
        key = subs.email_key(subscriber.email)
        if self.resend_limit.hit(key):
            log.info("not re-sending a %s email to %s within the hour", kind, subscriber.email)
            return
        topics = self.topic_names(subscriber.categories)
        message = subscribe_message(self.config, self.env, self.links, subscriber, kind, topics)
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
            action = text_field(form, "action")
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
        if text_field(fields, "List-Unsubscribe") != "One-Click":
            return self.error(
                request,
                400,
                "Nothing was changed",
                "This request did not say List-Unsubscribe=One-Click.",
                "To unsubscribe, open the link from the email and press the button on the page.",
            )
        if subscriber is not None and subscriber.status in LIVE:
            source = "unsubscribe-page" if text_field(fields, "from") == "page" else "one-click"
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

    async def busy(self, request: Request, exc: Exception) -> Response:
        """Another writer holds the database (DatabaseBusyError): passing, so 503 and try again."""
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return self.error(
            request,
            503,
            "We're busy for a moment",
            "Nothing has been changed. Please try again in a minute.",
            headers={"Retry-After": "60"},
        )

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
        await run_in_threadpool(web.jobs.close)  # queued subscribe requests are not lost
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
        Route(
            "/webhooks/sendgrid",
            SendGridWebhook(store, web.webhook_key).handle,
            methods=["POST"],
            name="sendgrid_webhook",
        ),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    routes.extend(archive_routes(config, store))  # past editions: digest/web/archive_routes.py
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: web.http_error,
            DatabaseBusyError: web.busy,
            Exception: web.server_error,
        },
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, default=MAX_BODY_BYTES, larger={"/webhooks/": WEBHOOK_MAX_BODY_BYTES})
    app.add_middleware(SecurityHeaders, hsts=config.web.base_url.startswith("https://"))
    app.state.web = web
    return app


async def _no_favicon(request: Request) -> Response:
    """Browsers ask for it on every page; an empty answer keeps 404s out of the logs."""
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})
