"""One email per category set: each (categories, posts a reader already has) built and rendered once.

Readers arrive grouped by category set, so a set's emails are built when its first reader
comes and dropped when the set ends. Every email comes from the edition's plan
(``digest.weekly.EditionPlan.edition_for``): the same window and posts the check and the
manifest saw. A reader with nothing new gets no email, or the short note
(``edition.nothing_new = "note"``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from digest.config import Config
from digest.errors import EmptyEditionError
from digest.model import PREFERENCES_URL, UNSUBSCRIBE_URL, Edition, RenderedEdition
from digest.subscribers import category_set_label

if TYPE_CHECKING:
    from digest.plan import EditionPlan

# A variant's key: the category set's keys, and the posts its readers already had.
VariantKey = tuple[tuple[str, ...], frozenset[str]]


@dataclass
class Variant:
    """One rendered email: a category set, minus posts some readers already have."""

    key: VariantKey
    rendered: RenderedEdition | None  # None: nothing new for these readers
    post_ids: tuple[str, ...]
    category_set: str  # unique per email within the edition: what deliveries and edition_posts name
    note: bool = False
    prefix: str | None = None  # SendGrid: the request body up to the personalizations
    recorded: bool = False  # its edition_posts rows are written


class VariantBuilder:
    """Builds and renders each (category set, posts left out) once; each section compiled once."""

    def __init__(self, plan: EditionPlan, *, recorded: dict[str, frozenset[str]] | None = None) -> None:
        from digest.isolate import PostIsolator
        from digest.render import Renderer

        self.plan = plan
        self.config = plan.config
        self._cache: dict[VariantKey, Variant] = {}
        self.category_sets: set[tuple[str, ...]] = set()
        self.renders = 0
        self._assembler = Renderer(plan.config).assembler()  # this send's compiled sections
        self._isolator = PostIsolator(self._assembler.render)  # a post that breaks the email is left out
        # What an earlier run of this edition recorded per email name (a rerun must not reuse a
        # name for a different list of posts: the ledger would then claim posts nobody got).
        self.recorded = recorded or {}

    def variant(self, categories: tuple[str, ...], exclude: frozenset[str]) -> Variant:
        key = (categories, exclude)
        found = self._cache.get(key)
        if found is not None:
            return found
        if self._cache and next(iter(self._cache))[0] != categories:
            # Readers arrive grouped by category set, so a finished set's emails are not asked
            # for again; keeping them all would grow memory with the number of sets.
            self._cache.clear()
        self.category_sets.add(categories)
        edition = self.plan.edition_for(categories, exclude=exclude)
        label = category_set_label(categories)
        if exclude:
            label += f" (less {len(exclude)} received, {_digest(sorted(exclude))})"
        if edition.post_count == 0:
            if self.config.edition.nothing_new == "note":
                variant = Variant(key, nothing_new_note(self.config, edition), (), label, note=True)
            else:
                variant = Variant(key, None, (), label)
        else:
            try:
                edition, rendered = self._isolator.render(edition)
            except EmptyEditionError:
                rendered = None
            self.renders += 1
            post_ids = tuple(i.post_path for i in edition.items)
            before = self.recorded.get(label)
            if before is not None and before != frozenset(post_ids):
                label += f" #{_digest(sorted(post_ids))}"
            variant = Variant(key, rendered, post_ids, label)
        self._cache[key] = variant
        return variant


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:8]


def nothing_new_note(config: Config, edition: Edition) -> RenderedEdition:
    """The short note for a reader with nothing new (edition.nothing_new = "note")."""
    site = config.site
    subject = f"{site.name}: nothing new this week"
    text = (
        f"Nothing new in your categories this week.\n\n"
        f"Choose your categories: {PREFERENCES_URL}\nUnsubscribe: {UNSUBSCRIBE_URL}\n\n{site.postal_address}\n"
    )
    html = (
        f'<!doctype html><html lang="{escape(site.language)}"><body>'
        f"<p>Nothing new in your categories this week.</p>"
        f'<p><a href="{PREFERENCES_URL}">Choose your categories</a> · '
        f'<a href="{UNSUBSCRIBE_URL}">Unsubscribe</a></p>'
        f"<p>{escape(site.postal_address)}</p></body></html>"
    )
    return RenderedEdition(subject=subject, preheader="", html=html, text=text)
