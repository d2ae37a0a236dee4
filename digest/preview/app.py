"""The preview page: a small Starlette app on 127.0.0.1 that shows the coming edition and reloads itself.

One process, one editor. It writes nothing unless asked: the page's Save button (or ``--out``,
which saves every build) writes digest.html, digest.txt and manifest.json. The routes that
change something (Save, Send test) take the page's token and refuse a request from another
origin, and every route answers only to the host names it listens on (no DNS rebinding).
Builds run in a worker thread and are cached for a few seconds per
(version, category set, as-of), so the page and its two iframes cost one build. A watchfiles
task watches the posts folder, the templates and config.toml; each change bumps a version that
is pushed to the open pages over Server-Sent Events, and the page reloads itself (the only
JavaScript on the page). Nothing here raises into the server: errors become part of the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from digest.config import BUILTIN_TEMPLATES, Config, load_config
from digest.errors import DigestError
from digest.preview import actions
from digest.preview.build import (
    PreviewBuild,
    Problem,
    build_preview,
    example_links,
    frame_html,
    problem_from,
    with_links,
    write_outputs,
)
from digest.render import RendererCache

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CACHE_SECONDS = 20.0
PING_SECONDS = 15.0
FRAME_WIDTHS = (375, 600)
SCHEMES = ("light", "dark")


@dataclass(frozen=True)
class PreviewSettings:
    """How `digest preview --serve` was started."""

    config: Config
    config_path: Path | None = None  # the file to reload when it changes (None: built-in defaults)
    posts_dir: Path | None = None  # --posts; None: the config's posts.folder
    as_of: str | None = None  # --as-of, fixed; None: now, at every build
    out_dir: Path | None = None  # --out: every build is saved there; None: only the Save button saves
    categories: tuple[str, ...] = ()  # the category set the page opens with
    against: Path | None = None  # --against: a manifest the page compares every build with
    watch: bool = True
    debounce_ms: int = 300  # how long watchfiles gathers a burst of changes (an editor's save)
    host: str = "127.0.0.1"  # --host: the page answers to this name and the loopback names only


@dataclass(frozen=True)
class Selection:
    """What the picker asks for: a category set (or a subscriber's), an as-of, a colour scheme."""

    categories: tuple[str, ...] = ()
    email: str = ""
    as_of: str = ""
    scheme: str = "light"
    note: str = ""  # e.g. "ada@example.com reads US, Europe"
    problem: Problem | None = None  # the address could not be looked up
    name: str | None = None  # the picked reader's name, for their greeting (None: a sample reader)

    def query(self, **changes: Any) -> str:
        """This selection as a query string (for links, iframes and redirects)."""
        values = {"c": list(self.categories), "email": self.email, "as_of": self.as_of, "scheme": self.scheme}
        values.update(changes)
        pairs: list[tuple[str, str]] = []
        for key, value in values.items():
            if isinstance(value, list | tuple):
                pairs += [(key, v) for v in value]
            elif value and not (key == "scheme" and value == "light"):
                pairs.append((key, str(value)))
        return urlencode(pairs)

    def frame_query(self) -> str:
        """For the iframes and data links: the categories already resolved, so no second lookup.

        An empty ``c`` says "all categories" explicitly, so --categories does not creep back in.
        """
        extra = {} if self.name is None else {"name": self.name}  # the reader's fields, not a sample
        return self.query(email="", c=list(self.categories) or [""], **extra)


@dataclass
class PreviewServer:
    """The app's state: the current config, the change version, the open event streams."""

    settings: PreviewSettings
    config: Config = field(init=False)
    config_problem: Problem | None = None
    version: int = 0
    boot: str = field(default_factory=lambda: secrets.token_hex(4))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))  # the forms' token
    last_change: str = ""

    def __post_init__(self) -> None:
        self.config = self.settings.config
        self._queues: set[asyncio.Queue[str]] = set()
        self._cache: dict[tuple[Any, ...], tuple[float, PreviewBuild]] = {}
        self.renderers = RendererCache(size=4)  # this server's built templates, cleared on a change
        self._lock = threading.Lock()
        self._flashes: dict[str, tuple[str, str]] = {}
        self._stop: asyncio.Event | None = None
        self.closing = False

    # -- versions and events ----------------------------------------------------------------

    @property
    def token(self) -> str:
        """Changes whenever the page would look different; also across server restarts."""
        return f"{self.boot}-{self.version}"

    def bump(self, reason: str) -> None:
        """Something changed on disk: forget builds and tell every open page to reload."""
        self.renderers.clear()
        with self._lock:
            self.version += 1
            self._cache.clear()
        self.last_change = reason
        log.info("preview: %s; version %s", reason, self.version)
        for queue in list(self._queues):
            queue.put_nowait(self.token)

    def flash(self, kind: str, text: str) -> str:
        key = secrets.token_hex(6)
        self._flashes[key] = (kind, text)
        while len(self._flashes) > 50:
            self._flashes.pop(next(iter(self._flashes)))
        return key

    # -- building ------------------------------------------------------------------------------

    def build(self, selection: Selection) -> PreviewBuild:
        """The build for a selection, from the short cache when the page and frames ask together."""
        config = self.config
        as_of_text = selection.as_of or self.settings.as_of or ""
        key = (self.token, tuple(sorted(c.casefold() for c in selection.categories)), as_of_text)
        now = time.time()
        with self._lock:
            hit = self._cache.get(key)
            if hit and now - hit[0] < CACHE_SECONDS:
                return hit[1]
        try:
            moment = self._as_of(config, as_of_text)
        except Exception as exc:
            result = PreviewBuild(categories=selection.categories, as_of=None)
            result.problem = problem_from(exc, config)
            return result
        result = build_preview(
            config,
            as_of=moment,
            categories=selection.categories,
            posts_dir=self.settings.posts_dir,
            out_dir=self.settings.out_dir,  # None: nothing written unless the editor saves
            renderers=self.renderers,
        )
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < CACHE_SECONDS}
            self._cache[key] = (now, result)
        return result

    @staticmethod
    def _as_of(config: Config, text: str) -> datetime:
        if not text:
            return datetime.now(config.tz)
        from digest.select import parse_as_of

        return parse_as_of(text, config.tz)

    def selection(self, params: Any) -> Selection:
        """Read the picker's fields; a subscriber's address wins over ticked categories."""
        scheme = params.get("scheme", "light")
        scheme = scheme if scheme in SCHEMES else "light"
        as_of = (params.get("as_of") or "").strip()
        email = (params.get("email") or "").strip()
        if "c" in params or "email" in params or "as_of" in params:
            categories = tuple(c for c in params.getlist("c") if c.strip())
        else:
            categories = self.settings.categories
        if email:
            try:
                address, names, name = actions.subscriber_lookup(self.config, email)
            except Exception as exc:
                return Selection(categories, email, as_of, scheme, problem=problem_from(exc, self.config))
            note = f"{address} reads {', '.join(names) if names else 'every category'}"
            return Selection(names, address, as_of, scheme, note=note, name=name)
        return Selection(categories, "", as_of, scheme, name=params.get("name"))

    # -- watching ------------------------------------------------------------------------------

    def watch_roots(self) -> list[Path]:
        """Folders whose changes change the email: posts, and templates (the site's and built-in)."""
        config = self.config
        roots = [self.settings.posts_dir or config.posts_path, config.templates_path, BUILTIN_TEMPLATES]
        roots.append(config.path(config.edition.notes))  # the editor's notes (digest.notes)
        unique: list[Path] = []
        for root in roots:
            resolved = root.resolve()
            if resolved.is_dir() and resolved not in unique:
                unique.append(resolved)
        return unique

    def save_dir(self) -> Path:
        """Where the Save button writes: --out, else the config's edition.output."""
        return self.settings.out_dir or self.config.path(self.config.edition.output)

    def _ignored(self) -> list[Path]:
        config = self.config
        folders = [
            config.path(config.posts.cache),
            self.settings.out_dir or config.path(config.edition.output),
        ]
        return [f.resolve() for f in folders]

    def _config_file(self) -> Path | None:
        path = self.settings.config_path
        return path.resolve() if path is not None else None

    async def watch_forever(self) -> None:
        """Watch until shutdown; start over when a config change moves the watched folders."""
        while not self.closing:
            self._stop = stop = asyncio.Event()
            try:
                await self._watch_round(stop)
            except Exception:  # a folder vanished mid-watch, say: log it, look again shortly
                log.exception("preview: file watching stopped; restarting it")
                await asyncio.sleep(1.0)

    async def _watch_round(self, stop: asyncio.Event) -> None:
        """Watch the current folders (recursively) and config.toml (its folder, flat) until ``stop``."""
        from watchfiles import DefaultFilter, awatch

        default = DefaultFilter()
        roots, config_file, ignored = self.watch_roots(), self._config_file(), self._ignored()

        def wanted(change: Any, path: str) -> bool:
            p = Path(path)
            if config_file is not None and p == config_file:
                return True
            if not default(change, path) or p.name.startswith(".") or p.name.endswith(".tmp"):
                return False
            return any(p.is_relative_to(r) for r in roots) and not any(p.is_relative_to(i) for i in ignored)

        async def watch(paths: Sequence[Path], recursive: bool) -> None:
            async for changes in awatch(
                *paths,
                watch_filter=wanted,
                stop_event=stop,
                recursive=recursive,
                debounce=1600,
                step=min(self.settings.debounce_ms, 1000),
                rust_timeout=500,
            ):
                self._changed(changes, roots, config_file, stop)

        jobs = []
        if roots:
            jobs.append(watch(roots, True))
        if config_file is not None and config_file.parent.is_dir():
            jobs.append(watch([config_file.parent], False))
        if jobs:
            await asyncio.gather(*jobs)
        else:
            await stop.wait()

    def _changed(
        self, changes: set[tuple[Any, str]], roots: list[Path], config_file: Path | None, stop: asyncio.Event
    ) -> None:
        paths = sorted({Path(p) for _, p in changes})
        if config_file is not None and config_file in paths:
            self.reload_config()
            if self.watch_roots() != roots:
                stop.set()  # posts or templates folder moved: watch the new ones
        shown = []
        for p in paths[:3]:
            for root in [*roots, *([config_file.parent] if config_file else [])]:
                if p.is_relative_to(root):
                    p = p.relative_to(root.parent)
                    break
            shown.append(str(p))
        more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
        self.bump(f"{', '.join(shown)}{more} changed")

    def reload_config(self) -> None:
        """Read config.toml again; a broken one is shown on the page and the last good one kept."""
        path = self.settings.config_path
        if path is None:
            return
        try:
            self.config = load_config(path)
            self.config_problem = None
        except DigestError as exc:
            self.config_problem = problem_from(exc, self.config)
            self.config_problem = Problem(
                "config.toml is broken (showing the last good config)",
                self.config_problem.message,
                self.config_problem.file or str(path),
                self.config_problem.line,
                self.config_problem.snippet,
            )

    def stop(self) -> None:
        self.closing = True
        if self._stop is not None:
            self._stop.set()
        for queue in list(self._queues):
            queue.put_nowait("")

    # -- the event stream ------------------------------------------------------------------------

    async def events(self, request: Request) -> StreamingResponse:
        """Server-Sent Events: the current token now, then every new one; pings keep it open."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._queues.add(queue)

        async def stream() -> AsyncIterator[str]:
            try:
                yield f"retry: 1000\nevent: version\ndata: {self.token}\n\n"
                while not self.closing:
                    try:
                        token = await asyncio.wait_for(queue.get(), timeout=PING_SECONDS)
                    except TimeoutError:
                        yield ": ping\n\n"
                        continue
                    if not token:
                        break
                    yield f"event: version\ndata: {token}\n\n"
            finally:
                self._queues.discard(queue)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["kb"] = lambda n: f"{(n or 0) / 1024:.1f} KB"
    return env


def create_app(settings: PreviewSettings) -> Starlette:
    """The preview app for one config; `digest preview --serve` runs it under uvicorn."""
    server = PreviewServer(settings)
    env = _templates()
    page_template = env.get_template("page.html.j2")

    async def page(request: Request) -> HTMLResponse:
        selection = await run_in_threadpool(server.selection, request.query_params)
        build = await run_in_threadpool(server.build, selection)
        flash = server._flashes.pop(request.query_params.get("flash", ""), None)
        diff = _against(settings.against, build)
        html = page_template.render(
            server=server,
            config=server.config,
            selection=selection,
            build=build,
            flash=flash,
            diff=diff,
            widths=FRAME_WIDTHS,
            checked={c.casefold() for c in selection.categories},
            text_part=with_links(
                build.rendered.text, example_links(server.config, selection.email, selection.name)
            )
            if build.rendered
            else "",
            now=time.time(),
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def frame(request: Request) -> Response:
        selection = await run_in_threadpool(server.selection, request.query_params)
        build = await run_in_threadpool(server.build, selection)
        if build.rendered is None:
            message = build.problem.text if build.problem else "Nothing to show."
            return HTMLResponse(_frame_message(message), headers={"Cache-Control": "no-store"})
        links = example_links(server.config, selection.email, selection.name)
        html = frame_html(build.rendered.html, scheme=selection.scheme, links=links)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def text(request: Request) -> Response:
        selection = await run_in_threadpool(server.selection, request.query_params)
        build = await run_in_threadpool(server.build, selection)
        if build.rendered is not None:
            body = with_links(
                build.rendered.text, example_links(server.config, selection.email, selection.name)
            )
        else:
            body = build.problem.text if build.problem else ""
        return PlainTextResponse(body, headers={"Cache-Control": "no-store"})

    async def manifest(request: Request) -> Response:
        selection = await run_in_threadpool(server.selection, request.query_params)
        build = await run_in_threadpool(server.build, selection)
        if build.manifest is None:
            problem = build.problem.text if build.problem else "no manifest"
            return JSONResponse({"error": problem}, status_code=409)
        return JSONResponse(build.manifest)

    async def state(request: Request) -> Response:
        return JSONResponse(
            {"token": server.token, "version": server.version, "last_change": server.last_change}
        )

    async def refused(request: Request, form: Any) -> Response | None:
        """A 403 for a state-changing request without the page's token or from another origin."""
        why = _cross_site(request, str(form.get("csrf_token") or ""), server.csrf)
        if why is None:
            return None
        log.warning("preview: refused %s %s (%s)", request.method, request.url.path, why)
        return PlainTextResponse(
            f"Refused: {why}. Use the buttons on the preview page itself.", status_code=403
        )

    async def save(request: Request) -> Response:
        """Write this selection's digest.html, digest.txt and manifest.json (the Save button)."""
        form = await request.form()
        if (denied := await refused(request, form)) is not None:
            return denied
        selection = _posted_selection(form)
        build = await run_in_threadpool(server.build, selection)
        out = server.save_dir()
        if build.manifest is None:
            key = server.flash(
                "error", "Nothing saved: " + (build.problem.text if build.problem else "no edition.")
            )
        else:
            try:
                written = await run_in_threadpool(
                    functools.partial(
                        write_outputs, out, build.rendered, build.manifest, config=server.config
                    )
                )
                key = server.flash("ok", f"Saved {', '.join(p.name for p in written)} to {out}")
            except OSError as exc:
                key = server.flash("error", f"Nothing saved: cannot write to {out} ({exc})")
        return RedirectResponse("/?" + selection.query(flash=key), status_code=303)

    async def send(request: Request) -> Response:
        form = await request.form()
        if (denied := await refused(request, form)) is not None:
            return denied
        selection = _posted_selection(form)
        address = str(form.get("address") or "").strip()
        build = await run_in_threadpool(server.build, selection)
        if build.rendered is None:
            key = server.flash(
                "error", "Nothing sent: " + (build.problem.text if build.problem else "no email.")
            )
        else:
            try:
                receipt = await run_in_threadpool(
                    functools.partial(
                        actions.send_test,
                        server.config,
                        build.rendered,
                        address,
                        categories=selection.categories,
                        as_of=build.as_of,
                        same_posts=settings.posts_dir is None,
                    )
                )
                key = server.flash("ok", receipt)
            except Exception as exc:
                key = server.flash("error", f"The test was not sent: {exc}")
        return RedirectResponse("/?" + selection.query(flash=key), status_code=303)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(server.watch_forever()) if settings.watch else None
        try:
            yield
        finally:
            server.stop()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/frame", frame),
            Route("/text", text),
            Route("/manifest.json", manifest),
            Route("/state", state),
            Route("/events", server.events),
            Route("/send-test", send, methods=["POST"]),
            Route("/save", save, methods=["POST"]),
            Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        lifespan=lifespan,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=_allowed_hosts(settings.host))],
    )
    app.state.preview = server
    return app


def _posted_selection(form: FormData) -> Selection:
    """The selection a page form posts back (Save and Send test carry the page's own)."""
    return Selection(
        categories=tuple(str(c) for c in form.getlist("c") if str(c).strip()),
        as_of=str(form.get("as_of") or ""),
        scheme=str(form.get("scheme") or "light"),
    )


def _allowed_hosts(host: str) -> list[str]:
    """The Host names the page answers to: the one it listens on and the loopback names.

    A page elsewhere that rebinds its own name to 127.0.0.1 sends its name as the Host, so it
    gets a 400 instead of the page (and its token). Listening on every address means any name.
    """
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return sorted({host.strip("[]"), "127.0.0.1", "localhost", "::1", "[::1]", host})


def _cross_site(request: Request, token: str, expected: str) -> str | None:
    """Why a POST is not the editor's own click on the page, or None (as digest serve's forms)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "the request came from another site"
    origin = request.headers.get("origin")
    if origin and origin != "null":
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != own:
            return f"the request came from {origin}, not {own}"
    if not token or not secrets.compare_digest(token, expected):
        return "the form's token is missing or stale (reload the page)"
    return None


def _against(path: Path | None, build: PreviewBuild) -> Any:
    """The build compared with --against's manifest (or a Problem if that file is unusable)."""
    if path is None or build.manifest is None:
        return None
    from digest.manifest_diff import diff_manifests, load_manifest

    try:
        return diff_manifests(load_manifest(path), build.manifest)
    except DigestError as exc:
        return Problem("--against", str(exc))


def _frame_message(message: str) -> str:
    from html import escape

    return (
        '<!doctype html><meta charset=utf-8><body style="font:15px/1.5 system-ui,sans-serif;'
        'color:#59636e;padding:24px;margin:0">'
        f"<p>{escape(message)}</p>"
    )
