"""One post never stops an edition: when rendering fails, find the posts that break it and drop them.

Rendering is tried as is first, so an edition that builds costs nothing extra. When it fails
(the MJML compiler refuses the source, a template filter trips over a value, the compiler
panics), the failure is either the template's, which no post can fix, or some posts'. A probe
edition, the same window and sections with one plain made-up item, tells the two apart: if the
probe fails too, the original error is raised (it names the template). Otherwise the items are
bisected: a half that renders is cleared at once, a failing half is split until single items
remain, so k bad posts among n cost about 2k·log2(n) renders. Each culprit is dropped with a
warning and a ``Skip`` naming its file and the error, and the rest of the edition is rendered.

``PostIsolator`` keeps the culprits it found, so a send that renders thousands of category sets
bisects once per bad post, not once per set.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from digest.errors import EmptyEditionError, RenderError
from digest.model import Edition, Item, RenderedEdition, Section, Skip

log = logging.getLogger("digest.isolate")

Render = Callable[[Edition], RenderedEdition]

_PROBE_TEXT = "This is a plain paragraph used to test the template."
_MAX_REMEMBERED = 10_000
_TEMPLATE_PREFIX = re.compile(r"^\S+\.j2(?:, line \d+)?: ")
_TEMPLATE_ADVICE = re.compile(r"\. (?:Check the mj-\*|In the generated MJML|See templates/README).*$")


def render_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a rendering failure that a post's content can cause.

    RenderError covers Jinja2 and mjml-python's ValueError; a Rust panic inside mjml-python
    arrives as ``pyo3_runtime.PanicException``, a BaseException.
    """
    return isinstance(exc, RenderError) or type(exc).__name__ == "PanicException"


class PostIsolator:
    """Renders editions through ``render``, leaving out (and remembering) posts that break it."""

    def __init__(self, render: Render) -> None:
        self._render = render
        self._culprits: dict[Item, str] = {}  # item -> why it was left out

    def render(self, edition: Edition) -> tuple[Edition, RenderedEdition]:
        """``edition`` rendered, or the edition less the posts that break it, and its rendering.

        Raises the original error when the template itself fails (the probe fails too), and
        EmptyEditionError, naming the posts, when every post was left out.
        """
        if self._culprits:
            known = [item for item in edition.items if item in self._culprits]
            if known:
                edition = _without(edition, {item: self._culprits[item] for item in known})
        try:
            return edition, self._render(edition)
        except BaseException as exc:
            if not render_failure(exc):
                raise
            original = exc
        if not self._renders(_probe(edition)):
            raise original  # the template fails whatever the posts say
        culprits = self._bisect(edition, list(dict.fromkeys(edition.items)))  # a post in two sections once
        if not culprits:  # only a combination fails, not any post alone: nothing to single out
            raise original
        reasons: dict[Item, str] = {}
        for item, reason in culprits:
            reasons[item] = reason
            log.warning(
                "%s: left out of edition %s: the email cannot be built with this post in it (%s)",
                item.post_path,
                edition.id,
                reason,
            )
        if len(self._culprits) + len(reasons) > _MAX_REMEMBERED:
            self._culprits.clear()
        self._culprits.update(reasons)
        reduced = _without(edition, reasons)
        if not reduced.post_count:
            names = ", ".join(sorted({item.post_path for item in reasons}))
            raise EmptyEditionError(
                f"Edition {edition.id}: every post in it was left out because the email cannot be "
                f"built with it ({names}); see the warnings above, fix those posts and try again."
            ) from original
        return reduced, self._render(reduced)

    def _renders(self, edition: Edition) -> bool:
        try:
            self._render(edition)
        except BaseException as exc:
            if not render_failure(exc):
                raise
            return False
        return True

    def _bisect(self, edition: Edition, items: Sequence[Item]) -> list[tuple[Item, str]]:
        """The items that make ``edition`` fail on their own (with the error), searched by halves."""
        try:
            self._render(_keeping(edition, items))
        except BaseException as exc:
            if not render_failure(exc):
                raise
            if len(items) == 1:
                return [(items[0], _reason(exc))]
            middle = len(items) // 2
            return self._bisect(edition, items[:middle]) + self._bisect(edition, items[middle:])
        return []


def render_isolated(render: Render, edition: Edition) -> tuple[Edition, RenderedEdition]:
    """One edition through a fresh PostIsolator (see its ``render``)."""
    return PostIsolator(render).render(edition)


def _reason(exc: BaseException) -> str:
    """The error in a few words: without the template's path and the advice about the template."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = _TEMPLATE_PREFIX.sub("", text)
    text = _TEMPLATE_ADVICE.sub("", text).rstrip(". ")
    return text if len(text) <= 300 else text[:299] + "…"


def _keeping(edition: Edition, items: Sequence[Item]) -> Edition:
    """``edition`` with only ``items`` (same sections, same order)."""
    wanted = {id(item) for item in items}
    sections = []
    for section in edition.sections:
        kept = tuple(item for item in section.items if id(item) in wanted)
        if kept:
            sections.append(Section(name=section.name, items=kept))
    return replace(edition, sections=tuple(sections))


def _without(edition: Edition, reasons: dict[Item, str]) -> Edition:
    """``edition`` less the items in ``reasons``, each added to ``skipped`` (once per post)."""
    sections = []
    for section in edition.sections:
        kept = tuple(item for item in section.items if item not in reasons)
        if kept:
            sections.append(Section(name=section.name, items=kept))
    named = {skip.path for skip in edition.skipped}
    skipped = list(edition.skipped)
    for item, reason in reasons.items():
        if item.post_path not in named:
            named.add(item.post_path)
            skipped.append(Skip(item.post_path, f"the email cannot be built with this post in it ({reason})"))
    return replace(edition, sections=tuple(sections), skipped=tuple(skipped))


def _probe(edition: Edition) -> Edition:
    """The edition's frame with one plain item: renders unless the template itself is broken."""
    first = edition.sections[0] if edition.sections else None
    item = Item(
        post_path="(probe)",
        title="Probe",
        url="https://example.com/probe",
        date=edition.window_start,
        lead_html=_PROBE_TEXT,
        lead_text=_PROBE_TEXT,
        categories=first.items[0].categories if first and first.items else (),
    )
    return replace(edition, sections=(Section(name=first.name if first else "Probe", items=(item,)),))
