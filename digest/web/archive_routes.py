"""The archive's routes for `digest serve`: /archive, /archive/feed.xml, /archive/<edition>.

Public pages with no personal data, so they may be cached a little and may carry the email's
inline styles and https images (their own Content-Security-Policy, looser than the forms').
Rendering reads posts and the database, so it runs in a worker thread. With ``web.archive``
off there are no routes (404). Without the posts folder (moved, not mounted yet) a page keeps
each post's headline and link from the edition's manifest, as for a post deleted since,
rather than answering 500.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest import pipeline
from digest.archive import Archive, ArchiveError, find_edition, published_editions
from digest.config import Config
from digest.errors import ConfigError
from digest.model import LoadResult

log = logging.getLogger(__name__)

PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {"content-security-policy": PAGE_CSP, "cache-control": "public, max-age=300"}
_EDITION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ArchivePages:
    """The three archive endpoints over one config and store; the renderer is built on first use."""

    def __init__(self, config: Config, store: Any) -> None:
        self.config = config
        self.store = store
        self._archive: Archive | None = None
        self._lock = threading.Lock()

    def archive(self) -> Archive:
        with self._lock:
            if self._archive is None:
                self._archive = Archive(self.config)
            return self._archive

    def posts(self) -> LoadResult:
        """Today's posts; none (pages from the manifests alone) when the folder is missing."""
        try:
            return pipeline.load(self.config)
        except ConfigError as exc:
            log.warning("archive: %s Showing each edition's headlines and links from its manifest.", exc)
            return LoadResult(posts=())

    async def index(self, request: Request) -> Response:
        html = await run_in_threadpool(lambda: self.archive().list_page(published_editions(self.store)))
        return HTMLResponse(html, headers=_HEADERS)

    async def feed(self, request: Request) -> Response:
        def build() -> bytes:
            return self.archive().feed(published_editions(self.store), self.posts())

        body = await run_in_threadpool(build)
        return Response(body, media_type="application/atom+xml; charset=utf-8", headers=_HEADERS)

    async def edition(self, request: Request) -> Response:
        edition_id = request.path_params["edition_id"]
        if not _EDITION_ID.match(edition_id):
            raise HTTPException(404, "There is no such edition.")

        def build() -> str:
            entry = find_edition(published_editions(self.store), edition_id)
            return self.archive().edition_page(entry, self.posts())

        try:
            html = await run_in_threadpool(build)
        except ArchiveError as exc:
            raise HTTPException(404, str(exc)) from None
        return HTMLResponse(html, headers=_HEADERS)


def archive_routes(config: Config, store: Any) -> list[Route]:
    """Mount these in the app: ``routes.extend(archive_routes(config, store))``; none when
    ``web.archive`` is off (the archive's addresses then answer 404)."""
    if not config.web.archive:
        return []
    pages = ArchivePages(config, store)
    return [
        Route("/archive", pages.index, methods=["GET"], name="archive"),
        Route("/archive/feed.xml", pages.feed, methods=["GET"], name="archive_feed"),
        Route("/archive/{edition_id}", pages.edition, methods=["GET"], name="archive_edition"),
    ]
