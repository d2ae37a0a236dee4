"""The orchestrator: posts -> select -> summarize -> render, reading like a table of contents.

Everything here is glue. The stages themselves are pure functions in their own modules; this
module only decides which inputs they get (config, the clock passed in as ``as_of``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest import __version__, isolate, schedule
from digest.config import Config
from digest.images import absolute_image
from digest.lead.clean import Resolver
from digest.model import Edition, Item, LoadResult, Post, RenderedEdition, Section
from digest.notes import load_note
from digest.permalink import post_url
from digest.posts import load_posts
from digest.render import RendererCache, render_edition
from digest.select import choose, window_for
from digest.sites import link_resolver
from digest.summarize import summarize


def load(config: Config, *, folder: Path | None = None, use_cache: bool = True) -> LoadResult:
    """Read every post under the configured folder (or ``folder``), through the parsed-post cache."""
    return load_posts(
        folder or config.posts_path,
        tz=config.tz,
        extensions=config.posts.extensions,
        excerpt_separator=config.posts.excerpt_separator,
        cache_dir=config.path(config.posts.cache) if use_cache else None,
    )


def edition_id_for(moment: datetime, config: Config) -> str:
    """A weekly edition's stable id: the ISO week its window ends in, in the site's zone."""
    return schedule.edition_id_for(moment, config.tz)


def build_edition(
    config: Config,
    *,
    as_of: datetime,
    categories: Sequence[str] | None = None,
    window: tuple[datetime, datetime] | None = None,
    edition_id: str | None = None,
    posts: LoadResult | None = None,
    items: ItemCache | None = None,
) -> Edition:
    """The edition a reader of ``categories`` (None: all) gets for the window ending at ``as_of``.

    ``items``: the summaries to reuse across editions built from the same posts (a send's plan).
    """
    loaded = posts if posts is not None else load(config)
    start, end = window or window_for(as_of, config.edition.window_days)
    wanted = display_names(config, categories)
    selection = choose(
        loaded.posts,
        start=start,
        end=end,
        categories=wanted or None,
        order=config.category_order(),
        cap=config.edition.section_cap,
    )
    cache = items if items is not None else ItemCache(config)
    sections = []
    resolve = link_resolver(loaded.posts, lambda p: _url(p, config))
    for name, chosen in selection.sections:
        shown = tuple(cache.item(post, resolve=resolve) for post in chosen)
        if shown:
            sections.append(Section(name=name, items=shown))
    the_id = edition_id or edition_id_for(end, config)
    note_html, note_text = load_note(config, the_id)
    return Edition(
        id=the_id,
        window_start=start,
        window_end=end,
        categories=tuple(wanted),
        sections=tuple(sections),
        skipped=(*loaded.skipped, *selection.skipped),
        note_html=note_html,
        note_text=note_text,
    )


class ItemCache:
    """Each post as the email shows it (lead + link), summarised once per post version and settings.

    Owned by whoever builds many editions from the same posts: a send renders hundreds of
    category sets from the same few dozen posts, and its plan (``digest.plan.EditionPlan``)
    holds one of these, so each post is summarised once and every set shares the same ``Item``
    objects (which the renderer's compiled sections rely on).
    """

    MAX = 20_000

    def __init__(self, config: Config) -> None:
        self.config = config
        self._items: dict[tuple[str, str], Item] = {}

    def item(self, post: Post, *, resolve: Resolver | None = None) -> Item:
        """``resolve`` turns Liquid/Hugo links to other posts into their URLs (see digest.sites)."""
        config = self.config
        key = (post.path, post.content_hash)
        item = self._items.get(key) if post.content_hash else None  # hand-made posts have no hash
        if item is None or item.date != post.date:
            if len(self._items) >= self.MAX:
                self._items.clear()
            item = summarize(
                post,
                url=_url(post, config),
                word_budget=config.edition.lead_words,
                min_words=config.edition.lead_min_words,
                resolve=resolve,
            )
            image = absolute_image(post.image, config.site.base_url)
            if image is not None and item.image is None:
                item = dataclasses.replace(item, image=image)
            self._items[key] = item
        return item


def _url(post: Post, config: Config) -> str:
    return post_url(post, base_url=config.site.base_url, pattern=config.site.permalink, tz=config.tz)


def item_for(post: Post, config: Config, *, resolve: Resolver | None = None) -> Item:
    """One post as the email shows it, with no cache (building many editions: use an ItemCache)."""
    return ItemCache(config).item(post, resolve=resolve)


def display_names(
    config: Config, categories: Sequence[str] | None, *, config_order: bool = False
) -> list[str]:
    """Spell categories (names or keys, any case) as config does: one helper for every heading and label.

    ``config_order``: in the order config lists them, unknown ones last in the order given (a
    reader's categories on a page or in a listing); else in the order given (a selection).
    """
    names: list[str] = []
    for raw in categories or ():
        if not raw.strip():
            continue
        known = config.find_category(raw)
        names.append(known.name if known else raw.strip())
    if config_order:
        rank = {c.name: i for i, c in enumerate(config.categories)}
        names.sort(key=lambda name: rank.get(name, len(rank)))  # stable: unknown keep their order
    return names


def render(config: Config, edition: Edition, *, renderers: RendererCache | None = None) -> RenderedEdition:
    """Render an edition to HTML and text (raises EmptyEditionError when it has no posts).

    ``renderers``: the caller's own cache of built renderers (default: render.SHARED).
    """
    return render_edition(edition, config, renderers=renderers)


def render_isolated(
    config: Config, edition: Edition, *, renderers: RendererCache | None = None
) -> tuple[Edition, RenderedEdition]:
    """Render an edition, leaving out any post the email cannot be built with (see digest.isolate).

    Returns the edition actually rendered (those posts moved to ``skipped``, each logged as a
    warning) with its rendering: use that edition for manifests and records.
    """
    return isolate.render_isolated(lambda e: render_edition(e, config, renderers=renderers), edition)


def manifest(edition: Edition, rendered: RenderedEdition | None, config: Config) -> dict[str, Any]:
    """What a build contained, as JSON-able data: enough to review or diff an edition later."""
    tz = config.tz
    templates = sorted(config.templates_path.glob("*")) if config.templates_path.is_dir() else []
    template_hash = hashlib.sha256()
    for path in templates:
        if path.is_file():
            template_hash.update(path.name.encode() + b"\0" + path.read_bytes())
    return {
        "edition": edition.id,
        "digest_version": __version__,
        "template_version": template_hash.hexdigest()[:16],
        "categories": list(edition.categories),
        "window": {
            "start_utc": edition.window_start.astimezone(UTC).isoformat(),
            "end_utc": edition.window_end.astimezone(UTC).isoformat(),
            "start_local": edition.window_start.astimezone(tz).isoformat(),
            "end_local": edition.window_end.astimezone(tz).isoformat(),
            "timezone": config.site.timezone,
        },
        "sections": [
            {
                "name": section.name,
                "posts": [
                    {
                        "path": item.post_path,
                        "title": item.title,
                        "url": item.url,
                        "date": item.date.isoformat(),
                    }
                    for item in section.items
                ],
            }
            for section in edition.sections
        ],
        "post_count": edition.post_count,
        "subject": rendered.subject if rendered else None,
        "html_bytes": rendered.html_bytes if rendered else None,
        "skipped": [{"path": s.path, "reason": s.reason} for s in edition.skipped],
    }


def with_hashes(data: dict[str, Any], hashes: dict[str, str]) -> dict[str, Any]:
    """Add each post's content hash to a manifest (kept apart so manifest() needs no post list)."""
    for section in data["sections"]:
        for post in section["posts"]:
            post["content_hash"] = hashes.get(post["path"], "")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
