"""Every edition on the web: the archive list, each edition as a page, and an Atom feed.

An archived edition is rebuilt from what the ``editions`` table already keeps: its window and
the manifest written before it went out, which lists the all-categories edition's sections and
the posts in each (path, title, url, date). The posts are read from the posts folder and go
through the same summarizer and templates as the email (``Renderer.render(edition, web=True)``),
so the page looks like the email and picks up a corrected typo; a post that has since left the
folder keeps its title, date and link from the manifest. Why not store a rendered snapshot: it
would need a new column (a migration) and would freeze yesterday's template and any mistake in
a post, and the manifest already pins *which* posts an edition carried, which is what a reader
of the archive needs to be true.

Pure apart from ``published_editions`` (one query) and ``write_static`` (files).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import jinja2
from sqlalchemy import select

from digest import pipeline
from digest.config import BUILTIN_TEMPLATES, Config
from digest.errors import DigestError
from digest.isolate import render_isolated
from digest.model import Edition, Item, LoadResult, Post, Section
from digest.notes import load_note
from digest.render import Renderer

# Editions that readers have (or are getting): the web version must exist for their link.
PUBLISHED = ("sending", "sent")
ARCHIVE_TEMPLATE = "archive.html.j2"
FEED_ENTRIES = 20
ATOM = "http://www.w3.org/2005/Atom"


class ArchiveError(DigestError):
    """An archived edition cannot be shown (unknown id, or nothing left to show)."""


@dataclass(frozen=True)
class ArchivedEdition:
    """One edition as the archive knows it: its window and the posts its manifest lists."""

    id: str
    window_start: datetime
    window_end: datetime
    sent_at: datetime | None
    sections: tuple[tuple[str, tuple[Mapping[str, Any], ...]], ...]  # (name, manifest posts)

    @property
    def post_count(self) -> int:
        return sum(len(posts) for _, posts in self.sections)

    @property
    def titles(self) -> tuple[str, ...]:
        return tuple(str(p.get("title") or "") for _, posts in self.sections for p in posts)


def archive_url(config: Config) -> str:
    """Where the archive lives: ``web.archive_url``, else ``web.base_url`` + ``/archive``."""
    return config.archive_url


def edition_url(config: Config, edition_id: str) -> str:
    return f"{archive_url(config)}/{edition_id}"


def published_editions(store: Any) -> list[ArchivedEdition]:
    """Editions that went out (or are going out) with posts in them, newest window first.

    A run in a week with nothing new records its edition as sent to nobody; it has no page (and
    no posts to make one of), so it is not listed, linked or put in the feed.
    """
    from digest.store import editions

    query = (
        select(
            editions.c.id,
            editions.c.window_start,
            editions.c.window_end,
            editions.c.sent_at,
            editions.c.manifest,
        )
        .where(editions.c.status.in_(PUBLISHED))
        .order_by(editions.c.window_end.desc(), editions.c.id.desc())
    )
    with store.session() as s:
        rows = s.execute(query).all()
    found = [
        ArchivedEdition(
            id=row.id,
            window_start=_aware(row.window_start),
            window_end=_aware(row.window_end),
            sent_at=_aware(row.sent_at) if row.sent_at else None,
            sections=_manifest_sections(row.manifest),
        )
        for row in rows
    ]
    return [entry for entry in found if entry.post_count]


def find_edition(entries: Sequence[ArchivedEdition], edition_id: str) -> ArchivedEdition:
    for entry in entries:
        if entry.id == edition_id:
            return entry
    raise ArchiveError(
        f"No edition {edition_id!r} in the archive: it was never sent, was cancelled, or had no posts."
    )


def build_archived(config: Config, entry: ArchivedEdition, posts: LoadResult) -> Edition:
    """The all-categories edition ``entry`` was, rebuilt from its manifest and today's posts."""
    by_path: dict[str, Post] = {post.path: post for post in posts.posts}
    sections: list[Section] = []
    for name, listed in entry.sections:
        items: list[Item] = []
        for data in listed:
            post = by_path.get(str(data.get("path") or ""))
            item = pipeline.item_for(post, config) if post is not None else _item_from_manifest(data)
            if item is not None:
                items.append(item)
        if items:
            sections.append(Section(name=name, items=tuple(items)))
    if not sections:
        raise ArchiveError(f"Edition {entry.id} lists no posts in its manifest; there is nothing to show.")
    note_html, note_text = load_note(config, entry.id)
    return Edition(
        id=entry.id,
        window_start=entry.window_start,
        window_end=entry.window_end,
        categories=(),
        sections=tuple(sections),
        note_html=note_html,
        note_text=note_text,
    )


class Archive:
    """Renders the archive for one config: the list, an edition's page, the feed.

    Build once (it compiles the templates) and reuse; ``posts`` is read per call by the caller,
    through the parsed-post cache, so an edited post shows on the next request.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.renderer = Renderer(config)
        folders = [str(config.templates_path)]
        if config.templates_path.resolve() != BUILTIN_TEMPLATES.resolve():
            folders.append(str(BUILTIN_TEMPLATES))
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders, encoding="utf-8"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(self.renderer._html_env.filters)
        self._list = env.get_template(ARCHIVE_TEMPLATE)

    def edition_page(self, entry: ArchivedEdition, posts: LoadResult) -> str:
        """The edition as a web page: the email's HTML, rendered for the web (no personal links)."""
        edition = build_archived(self.config, entry, posts)
        # A post the page cannot be built with is left out (and logged), not the whole page.
        _, rendered = render_isolated(lambda e: self.renderer.render(e, web=True), edition)
        return rendered.html

    def list_page(self, entries: Sequence[ArchivedEdition]) -> str:
        config = self.config
        return self._list.render(
            site=config.site,
            entries=entries,
            archive_url=archive_url(config),
            feed_url=archive_url(config) + "/feed.xml",
            subscribe_url=config.web.base_url.rstrip("/") + "/subscribe",
        )

    def feed(self, entries: Sequence[ArchivedEdition], posts: LoadResult) -> bytes:
        """An Atom feed of the latest editions; each entry carries the edition's headlines."""
        config = self.config
        base = archive_url(config)
        ET.register_namespace("", ATOM)
        root = ET.Element(f"{{{ATOM}}}feed")
        _sub(root, "title", config.site.name)
        _sub(root, "id", base + "/")
        _sub(root, "link", href=base + "/feed.xml", rel="self", type="application/atom+xml")
        _sub(root, "link", href=base, rel="alternate", type="text/html")
        latest = entries[:FEED_ENTRIES]
        updated = max((_published(e) for e in latest), default=datetime(2000, 1, 1, tzinfo=UTC))
        _sub(root, "updated", _iso(updated))
        author = _sub(root, "author")
        _sub(author, "name", config.site.name)
        for entry in latest:
            node = _sub(root, "entry")
            try:
                edition = build_archived(config, entry, posts)
                rendered = self.renderer.render(edition, web=True)
                days = self.renderer._html_env.filters["daterange"](entry.window_start, entry.window_end)
                title, summary = f"{config.site.name}: {days}", rendered.preheader
                items = edition.items
            except DigestError:
                title, summary, items = f"{config.site.name} {entry.id}", "", ()
            _sub(node, "title", title)
            _sub(node, "id", edition_url(config, entry.id))
            _sub(node, "link", href=edition_url(config, entry.id), rel="alternate", type="text/html")
            _sub(node, "published", _iso(_published(entry)))
            _sub(node, "updated", _iso(_published(entry)))
            if summary:
                _sub(node, "summary", summary)
            listing = "".join(
                f'<li><a href="{_attr(item.url)}">{_text(item.title)}</a></li>' for item in items
            )
            _sub(node, "content", f"<ul>{listing}</ul>", type="html")
        body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        return body


def write_static(
    config: Config, entries: Sequence[ArchivedEdition], posts: LoadResult, out: Path
) -> list[Path]:
    """The archive as files for a static host: index.html, <id>/index.html, feed.xml."""
    archive = Archive(config)
    out.mkdir(parents=True, exist_ok=True)
    written = [_write(out / "index.html", archive.list_page(entries))]
    for entry in entries:
        written.append(_write(out / entry.id / "index.html", archive.edition_page(entry, posts)))
    feed = out / "feed.xml"
    feed.write_bytes(archive.feed(entries, posts))
    written.append(feed)
    return written


# -- helpers ---------------------------------------------------------------------------------


def _manifest_sections(manifest: str | None) -> tuple[tuple[str, tuple[Mapping[str, Any], ...]], ...]:
    try:
        data = json.loads(manifest) if manifest else {}
    except json.JSONDecodeError:
        return ()
    sections = data.get("sections") if isinstance(data, Mapping) else None
    result = []
    for section in sections or ():
        if not isinstance(section, Mapping):
            continue
        posts = tuple(p for p in section.get("posts") or () if isinstance(p, Mapping))
        result.append((str(section.get("name") or ""), posts))
    return tuple(result)


def _item_from_manifest(data: Mapping[str, Any]) -> Item | None:
    """A post no longer in the folder: its headline, date and link as the manifest kept them."""
    title, url = str(data.get("title") or ""), str(data.get("url") or "")
    try:
        when = datetime.fromisoformat(str(data.get("date")))
    except ValueError:
        return None
    if not title or not url.startswith(("https://", "http://")):
        return None
    return Item(
        post_path=str(data.get("path") or ""),
        title=title,
        url=url,
        date=_aware(when),
        lead_html="",
        lead_text="",
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _published(entry: ArchivedEdition) -> datetime:
    return entry.sent_at or entry.window_end


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
    if text is not None:
        node.text = text
    return node


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(value: str) -> str:
    return _text(value).replace('"', "&quot;")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
