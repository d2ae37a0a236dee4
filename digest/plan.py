"""An edition, decided once: what the check, the manifest and the send all read.

``EditionPlan`` is built once per run (``digest.weekly`` builds it, for `digest run` and for
`digest send` alike) and handed to the delivery engine. It holds the edition's id, the window
its posts are chosen from, the posts it may carry, the all-categories edition and its
rendering, the manifest recorded in ``editions`` and the deliverability check's findings. Each
reader's email is built from it (``edition_for``), so no part of a send can look at a
different window or post list from the one that was checked and recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from digest import pipeline
from digest.check import Finding, check_edition, has_errors
from digest.config import Config
from digest.errors import EmptyEditionError
from digest.model import Edition, LoadResult, RenderedEdition
from digest.schedule import Window


@dataclass(frozen=True)
class EditionPlan:
    """One edition, computed once. ``window`` is where posts are chosen from (a back-dated post
    may widen its start); ``scheduled`` is the window the ``editions`` row records."""

    config: Config
    id: str
    window: Window
    scheduled: Window
    posts: LoadResult
    edition: Edition  # every category
    rendered: RenderedEdition | None  # None: no post in the window
    manifest: Mapping[str, Any]
    findings: tuple[Finding, ...]
    items: pipeline.ItemCache = field(repr=False, compare=False)  # the summaries every set shares
    notes: tuple[str, ...] = ()  # what the run should say (back-dated posts)

    @property
    def post_count(self) -> int:
        return self.edition.post_count

    @property
    def blocked(self) -> bool:
        """The check found errors: a real send stops here."""
        return has_errors(self.findings)

    @property
    def candidates(self) -> frozenset[str]:
        """Every post this edition can carry (what the ledger of posts received is asked about)."""
        start, end = self.window.start, self.window.end
        return frozenset(p.path for p in self.posts.posts if p.published and start <= p.date < end)

    def edition_for(self, categories: Sequence[str], *, exclude: frozenset[str] = frozenset()) -> Edition:
        """The email a reader of ``categories`` gets, less the posts in ``exclude`` (they had them)."""
        posts = self.posts
        if exclude:
            posts = LoadResult(tuple(p for p in posts.posts if p.path not in exclude), posts.skipped)
        return pipeline.build_edition(
            self.config,
            as_of=self.window.end,
            categories=list(categories),
            window=(self.window.start, self.window.end),
            edition_id=self.id,
            posts=posts,
            items=self.items,
        )


def make_plan(
    config: Config,
    *,
    edition_id: str,
    window: Window,
    posts: LoadResult,
    scheduled: Window | None = None,
    headers: Mapping[str, str] | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> EditionPlan:
    """Build, render, check and describe the edition once. ``headers``: a sample reader's message
    headers (the check inspects List-Unsubscribe as it will go out)."""
    items = pipeline.ItemCache(config)
    edition = pipeline.build_edition(
        config,
        as_of=window.end,
        window=(window.start, window.end),
        edition_id=edition_id,
        posts=posts,
        items=items,
    )
    rendered: RenderedEdition | None = None
    findings: list[Finding] = []
    if edition.post_count:
        try:
            edition, rendered = pipeline.render_isolated(config, edition)  # a broken post is left out
        except EmptyEditionError:
            rendered = None
    if rendered is not None:
        findings = check_edition(rendered, config, headers=headers)
    manifest = pipeline.manifest(edition, rendered, config)
    manifest.update(manifest_extra or {})
    return EditionPlan(
        config=config,
        id=edition_id,
        window=window,
        scheduled=scheduled or window,
        posts=posts,
        edition=edition,
        rendered=rendered,
        manifest=manifest,
        findings=tuple(findings),
        notes=tuple(notes),
        items=items,
    )
