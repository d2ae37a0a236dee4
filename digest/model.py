"""The plain data that flows between the stages. Frozen, so a stage cannot change another's input.

posts.load -> [Post] -> select.choose -> Selection -> summarize.lead per post -> Item
-> pipeline assembles an Edition -> render.edition -> RenderedEdition -> send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class PostImage:
    """A post's picture (front matter ``image`` and kin): where it is, what it shows, its size.

    ``url`` is as written in the post (it may be relative); the pipeline makes it an absolute
    https address for the email or drops it. Width and height are known only when the post says.
    """

    url: str
    alt: str = ""
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Post:
    """One post as read from disk, normalised once: aware date, categories as written."""

    path: str  # relative to the posts folder, with forward slashes: the post's stable id
    title: str
    date: datetime  # timezone-aware
    categories: tuple[str, ...]  # display names as the post spells them, de-duplicated by key
    body: str  # Markdown (or HTML) after the front matter
    slug: str
    excerpt: str | None = None  # the `excerpt` field, or the text before the excerpt separator
    published: bool = True
    source_url: str | None = None
    source_site: str | None = None
    permalink: str | None = None  # the post's own `permalink` front-matter, if any
    content_hash: str = ""  # sha256 of the file's bytes, for manifests and caches
    image: PostImage | None = None  # front matter image/images/feature_image/cover, if any


@dataclass(frozen=True)
class Skip:
    """A post left out, and why, in words a site owner understands."""

    path: str
    reason: str


@dataclass(frozen=True)
class LoadResult:
    posts: tuple[Post, ...]
    skipped: tuple[Skip, ...] = ()


@dataclass(frozen=True)
class Item:
    """A post as the email shows it: title, link, lead paragraph(s) in HTML and plain text."""

    post_path: str
    title: str
    url: str
    date: datetime
    lead_html: str  # safe inline HTML (already escaped), links and emphasis kept
    lead_text: str  # the same lead as clean plain text
    truncated: bool = False
    categories: tuple[str, ...] = ()
    source_url: str | None = None
    source_site: str | None = None
    image: PostImage | None = None  # absolute https only (pipeline.item_for), else None


@dataclass(frozen=True)
class Section:
    """One category's block in the email: display name and its items, newest first."""

    name: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Edition:
    """Everything one email needs apart from the per-recipient links."""

    id: str
    window_start: datetime
    window_end: datetime
    categories: tuple[str, ...]  # the category set asked for, display names; () means all
    sections: tuple[Section, ...]
    skipped: tuple[Skip, ...] = ()
    # The editor's note for this edition (editions/<id>.md), as safe HTML and as plain text.
    note_html: str = ""
    note_text: str = ""

    @property
    def items(self) -> tuple[Item, ...]:
        return tuple(item for section in self.sections for item in section.items)

    @property
    def post_count(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class RenderedEdition:
    """The email for one category set. Personal links are placeholders (see render.PLACEHOLDERS)."""

    subject: str
    preheader: str
    html: str
    text: str
    warnings: tuple[str, ...] = field(default=())

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


@dataclass(frozen=True)
class Subscriber:
    """A reader as the sender sees one: normalised address, status and category keys."""

    id: int
    email: str
    status: str  # pending | active | paused | unsubscribed | bounced | complained
    categories: tuple[str, ...]  # category keys (digest.config.category_key), sorted
    name: str = ""
    created_at: datetime | None = None
    confirmed_at: datetime | None = None


# Per-recipient values the renderer leaves as placeholders and the sender fills in (as SendGrid
# substitutions, or by string replacement for SMTP and the outbox). Plain tokens, so that HTML
# escaping and MJML leave them untouched.
PREFERENCES_URL = "__DIGEST_PREFERENCES_URL__"
UNSUBSCRIBE_URL = "__DIGEST_UNSUBSCRIBE_URL__"
PLACEHOLDERS = (PREFERENCES_URL, UNSUBSCRIBE_URL)
