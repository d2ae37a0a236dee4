"""Edition -> email: Jinja2 makes MJML and a plain-text part, mjml-python makes the HTML.

A ``Renderer`` is built once per ``Config``: the Jinja2 environments, the two templates and the
subject/preheader strings are compiled up front, so rendering an edition costs one pass of each
template plus one MJML compile (about a millisecond for ten posts). Personal links stay as the
plain placeholder tokens from ``digest.model`` for the sender to fill in per recipient.

Pure: no disk (after the templates are loaded), network, database or clock.
"""

from __future__ import annotations

import functools
import re
import threading
import weakref
from collections.abc import Mapping
from datetime import date, datetime, timedelta, tzinfo
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import jinja2
import jinja2.nodes
import mjml
from markupsafe import Markup, escape

from digest.config import BUILTIN_TEMPLATES, Config
from digest.errors import EmptyEditionError, RenderError
from digest.model import PREFERENCES_URL, UNSUBSCRIBE_URL, Edition, Item, RenderedEdition, Section, Skip
from digest.textclean import header_text
from digest.typeset import nowidow, typeset

MJML_TEMPLATE = "edition.mjml.j2"
TEXT_TEMPLATE = "edition.txt.j2"
# "In this issue": rendered on their own and handed to the edition templates as `contents` and
# `contents_text`, so a send can assemble editions from pieces (see EditionAssembler).
CONTENTS_TEMPLATE = "contents.html.j2"
CONTENTS_TEXT_TEMPLATE = "contents.txt.j2"
TEXT_WIDTH = 72

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


class EditionView:
    """What templates see as ``edition``: the Edition without empty sections, dates in site time.

    Precomputed once per render, so templates read plain attributes instead of calling helpers.
    """

    __slots__ = (
        "categories",
        "first_day",
        "id",
        "items",
        "last_day",
        "note_html",
        "note_text",
        "post_count",
        "sections",
        "skipped",
        "titles",
        "window_end",
        "window_start",
    )

    def copy(self) -> EditionView:
        """A shallow copy (``copy.copy`` goes through ``__reduce_ex__``: slower, per set)."""
        twin = object.__new__(EditionView)
        for name in self.__slots__:
            object.__setattr__(twin, name, getattr(self, name))
        return twin

    def __init__(self, edition: Edition, tz: tzinfo) -> None:
        self.id: str = edition.id
        self.sections: tuple[Section, ...] = tuple(s for s in edition.sections if s.items)
        self.items: tuple[Item, ...] = tuple(i for s in self.sections for i in s.items)
        self.titles: tuple[str, ...] = tuple(i.title for i in self.items)
        self.post_count: int = len(self.items)
        self.categories: tuple[str, ...] = edition.categories
        self.skipped: tuple[Skip, ...] = edition.skipped
        self.note_html: Markup = Markup(edition.note_html)  # made safe by digest.notes
        self.note_text: str = edition.note_text
        self.window_start: datetime = _local(edition.window_start, tz)
        self.window_end: datetime = _local(edition.window_end, tz)
        self.first_day: date = self.window_start.date()
        # The window's end is exclusive: a window ending at midnight covers the day before.
        self.last_day: date = _local(edition.window_end - timedelta(microseconds=1), tz).date()


class Renderer:
    """Renders editions for one config. Build once and reuse: construction compiles templates.

    ``auto_reload=True`` re-reads templates changed on disk (for a preview server); the default
    trusts them to stay put, which saves a stat per template per render.
    """

    def __init__(self, config: Config, *, auto_reload: bool = False) -> None:
        self.config = config
        self.tz = config.tz
        self._auto_reload = auto_reload
        if not config.templates_path.is_dir():
            raise RenderError(
                f"{config.templates_path}: the templates folder set by edition.templates does not exist. "
                "Fix the path (relative to the config file), or leave it empty for the built-in templates."
            )
        folders = [str(config.templates_path)]
        if config.templates_path.resolve() != BUILTIN_TEMPLATES.resolve():
            # A site's own folder may override only some templates; the rest come from digest.
            folders.append(str(BUILTIN_TEMPLATES))
        loader = jinja2.FileSystemLoader(folders, encoding="utf-8")
        common: dict[str, Any] = {
            "loader": loader,
            "undefined": jinja2.StrictUndefined,
            "trim_blocks": True,
            "lstrip_blocks": True,
            "auto_reload": auto_reload,
        }
        self._html_env = jinja2.Environment(autoescape=True, **common)
        self._text_env = jinja2.Environment(autoescape=False, keep_trailing_newline=True, **common)
        filters = _filters(config)
        self._html_env.filters.update(filters)
        self._text_env.filters.update(filters)
        self._mjml_template = self._load(self._html_env, MJML_TEMPLATE)
        self._text_template = self._load(self._text_env, TEXT_TEMPLATE)
        self._contents_template = self._load(self._html_env, CONTENTS_TEMPLATE)
        self._contents_text_template = self._load(self._text_env, CONTENTS_TEXT_TEMPLATE)
        self._short = _ShortRenders(self)
        self._contents = _Contents(self)
        self._subject = self._string_template(config.edition.subject, "edition.subject")
        self._preheader = self._string_template(config.edition.preheader, "edition.preheader")
        self._globals = {
            "site": config.site,
            "preferences_url": PREFERENCES_URL,
            "unsubscribe_url": UNSUBSCRIBE_URL,
            "archive_url": config.archive_url,
            "subscribe_url": config.web.base_url.rstrip("/") + "/subscribe",
        }

    def render(self, edition: Edition, *, web: bool = False) -> RenderedEdition:
        """The email for one edition: subject, preheader, HTML and text, and any size warning.

        ``web=True`` renders the edition's page in the archive (``web`` is true in templates:
        no "view in browser" link, and no personal links).
        """
        if self._auto_reload:  # the preview server: pick up edited templates (Jinja checks mtimes)
            self._mjml_template = self._load(self._html_env, MJML_TEMPLATE)
            self._text_template = self._load(self._text_env, TEXT_TEMPLATE)
            self._contents_template = self._load(self._html_env, CONTENTS_TEMPLATE)
            self._contents_text_template = self._load(self._text_env, CONTENTS_TEXT_TEMPLATE)
        context = self._context(edition, web=web)
        source = self._run(self._mjml_template, context, MJML_TEMPLATE)
        html = self._compile(source)
        text = _tidy_text(self._run(self._text_template, context, TEXT_TEMPLATE))
        return RenderedEdition(
            subject=context["subject"],
            preheader=context["preheader"],
            html=html,
            text=text,
            warnings=self._warnings(len(html.encode("utf-8"))),
        )

    def assembler(self) -> EditionAssembler:
        """Renders many editions of one window (one per category set) from compiled pieces.

        For a send: the same output as ``render`` for every edition, at a fraction of the cost
        once the pieces are compiled (see EditionAssembler).
        """
        return EditionAssembler(self)

    def mjml_source(self, edition: Edition) -> str:
        """The MJML before compiling: for debugging a template, and for the Node baseline bench."""
        return self._run(self._mjml_template, self._context(edition), MJML_TEMPLATE)

    # -- helpers -------------------------------------------------------------------------------

    def _context(self, edition: Edition, *, web: bool = False) -> dict[str, Any]:
        view = EditionView(edition, self.tz)
        if not view.sections:
            raise EmptyEditionError(_empty_message(edition, view))
        context: dict[str, Any] = {**self._globals, "edition": view, "web": web}
        context["web_url"] = f"{self._globals['archive_url']}/{edition.id}"
        context["contents"], context["contents_text"] = self._contents.render(context)
        # Titles reach the Subject header: plain text, no encoded-word of their own, no bidi controls.
        context["subject"] = header_text(
            self._short.render(self._subject, context, "config key edition.subject")
        )
        context["preheader"] = self._short.render(self._preheader, context, "config key edition.preheader")
        return context

    def _warnings(self, size: int) -> tuple[str, ...]:
        limit = self.config.edition.clip_warning_bytes
        if size < limit:
            return ()
        return (
            f"The HTML is {size:,} bytes, at or over edition.clip_warning_bytes ({limit:,}): Gmail "
            "clips messages at about 102 KB and hides the rest, footer and unsubscribe link "
            "included. Lower edition.section_cap or edition.lead_words, or send fewer categories.",
        )

    def _load(self, env: jinja2.Environment, name: str) -> jinja2.Template:
        try:
            return env.get_template(name)
        except jinja2.TemplateNotFound:
            raise RenderError(
                f"{self.config.templates_path}: no template {name} there (nor in {BUILTIN_TEMPLATES}). "
                "Check edition.templates in the config, or leave it empty to use the built-in templates."
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(_syntax_message(exc, name)) from exc

    def _string_template(self, source: str, key: str) -> jinja2.Template:
        try:
            return self._text_env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(
                f"config key {key}: not a valid Jinja2 template ({exc.message}). It sees `site` and "
                "`edition` (edition.post_count, edition.titles, edition.first_day, ...)."
            ) from exc

    def _run(self, template: jinja2.Template, context: Mapping[str, Any], name: str) -> str:
        try:
            return _render(template, context)
        except jinja2.TemplateSyntaxError as exc:  # raised by an {% import %} or {% include %}
            raise RenderError(_syntax_message(exc, name)) from exc
        except (
            jinja2.TemplateError,
            TypeError,
            ValueError,
            AttributeError,
            KeyError,
            IndexError,
            ZeroDivisionError,
        ) as exc:
            where = _template_frame(exc, name) or name
            message = exc.message if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: {exc}"
            raise RenderError(f"{where}: {message}. See templates/README.md for the variables.") from exc

    def _compile(self, source: str) -> str:
        try:
            html = mjml.mjml2html(source, fonts={}, disable_comments=True)
        except ValueError as exc:
            raise RenderError(
                f"{self._mjml_template.filename or MJML_TEMPLATE}: the MJML it produced does not compile "
                f"({exc}). {_mjml_hint(source)}"
            ) from exc
        return html


class _ReadRecorder:
    """Stands in for the EditionView during a render and notes the attributes the template reads."""

    __slots__ = ("_view", "read")

    def __init__(self, view: EditionView) -> None:
        self._view = view
        self.read: list[str] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._view, name)
        self.read.append(name)
        return value


class _ShortRenders:
    """Subject and preheader, cached by the values of what each render read of the edition.

    A send renders them once per category set, but they usually read only the post count and
    the first titles, which many sets share. A template can only branch on what it reads, so
    an edition that agrees on every attribute the first render read (and on the subject, which
    the preheader can use) renders the same text. A template that calls ``random`` gets one
    pick per distinct input, not one per set.
    """

    MAX = 10_000

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        # template -> [(attribute names read, {(subject, values): text})]
        self._tables: dict[int, list[tuple[tuple[str, ...], dict[Any, str]]]] = {}

    def render(self, template: jinja2.Template, context: dict[str, Any], name: str) -> str:
        view = context["edition"]
        extra = context.get("subject")
        tables = self._tables.setdefault(id(template), [])
        try:
            for names, table in tables:
                hit = table.get((extra, tuple([getattr(view, n) for n in names])))
                if hit is not None:
                    return hit
        except TypeError:  # an unhashable value: no caching for this edition
            return _one_line(self.renderer._run(template, context, name))
        recorder = _ReadRecorder(view)
        text = _one_line(self.renderer._run(template, {**context, "edition": recorder}, name))
        names = tuple(dict.fromkeys(recorder.read))
        try:
            key = (extra, tuple([getattr(view, n) for n in names]))
            hash(key)
        except TypeError:
            return text
        table = next((t for known, t in tables if known == names), None)
        if table is None:
            table = {}
            tables.append((names, table))
        if len(table) >= self.MAX:
            table.clear()
        table[key] = text
        return text


class _Contents:
    """ "In this issue" (HTML and text), cached by the values of what the templates read.

    A send renders it once per category set; most sets share their first headlines with none
    but the same posts do. As for subject and preheader, a template can only branch on what it
    reads, so an edition that agrees on every attribute the cached render read renders the
    same list. Tuples of items and sections are compared by their items' identities (a send's
    items are the same objects set after set; see EditionAssembler._key), kept alive here.
    """

    MAX = 10_000

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self._names: tuple[str, ...] = ()  # every edition attribute any render read, in order
        self._table: dict[tuple[Any, ...], tuple[Markup, str]] = {}
        self._alive: list[Any] = []

    def render(self, context: dict[str, Any]) -> tuple[Markup, str]:
        view = context["edition"]
        key = self._key(view, context) if self._names else None
        if key is not None:
            hit = self._table.get(key)
            if hit is not None:
                return hit
        r = self.renderer
        recorder = _ReadRecorder(view)
        ctx = {**context, "edition": recorder}
        html = Markup(r._run(r._contents_template, ctx, CONTENTS_TEMPLATE).strip())
        text = r._run(r._contents_text_template, ctx, CONTENTS_TEXT_TEMPLATE).strip()
        if not set(recorder.read) <= set(self._names):  # a new branch read more: widen the key
            self._names = tuple(dict.fromkeys((*self._names, *recorder.read)))
            self._table.clear()
            self._alive.clear()
        key = self._key(view, context)
        if key is not None:
            if len(self._table) >= self.MAX:
                self._table.clear()
                self._alive.clear()
            self._table[key] = (html, text)
            self._alive.append((view.items, view.sections))
        return html, text

    def _key(self, view: EditionView, context: dict[str, Any]) -> tuple[Any, ...] | None:
        key: list[Any] = [context["web"], context["web_url"]]
        for name in self._names:
            value = getattr(view, name)
            if name == "items":
                value = tuple(map(id, value))
            elif name == "sections":
                value = tuple((s.name, tuple(map(id, s.items))) for s in value)
            key.append(value)
        try:
            hash(tuple(key))
        except TypeError:  # an unhashable value: no caching for this edition
            return None
        return tuple(key)


def _render(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """``template.render(context)`` without copying Jinja's globals into a new dict every time.

    ``Template.render`` merges the template's globals (a ChainMap) into each render's context;
    that merge was half of a short render, and a send runs three short renders per category
    set. Here the globals are merged once per template and the context is shared, as
    ``Template.render`` does otherwise (same output, same error handling).
    """
    base = _TEMPLATE_GLOBALS.get(template)
    if base is None:
        base = _TEMPLATE_GLOBALS[template] = dict(template.globals)
    # jinja2.runtime.new_context, as Template.new_context calls it, but with the globals as a
    # plain dict: the Context would otherwise iterate the ChainMap again.
    ctx = jinja2.runtime.new_context(
        template.environment, template.name, template.blocks, {**base, **context}, True, base
    )
    try:
        return template.environment.concat(template.root_render_func(ctx))  # type: ignore[attr-defined]
    except Exception:
        template.environment.handle_exception()
    raise AssertionError("unreachable")  # handle_exception always raises


_TEMPLATE_GLOBALS: weakref.WeakKeyDictionary[jinja2.Template, dict[str, Any]] = weakref.WeakKeyDictionary()


# -- assembling editions from pieces ------------------------------------------------------------

# Plain letters and digits: they pass Jinja's escaping and MJML unchanged.
_SUBJECT_TOKEN = "QzDigestSubjectQz"
_PREHEADER_TOKEN = "QzDigestPreheaderQz"
_CATEGORIES_TOKEN = "QzDigestCategoriesQz"
_CONTENTS_TOKEN = "QzDigestContentsQz"  # "In this issue": HTML that MJML copies through as it is
_TOKENS = re.compile(f"({_SUBJECT_TOKEN}|{_PREHEADER_TOKEN}|{_CATEGORIES_TOKEN}|{_CONTENTS_TOKEN})")


class _Skeleton:
    """The HTML of an edition without its sections, split where the sections go."""

    __slots__ = ("head", "head_parts", "tail", "tail_parts", "text_head", "text_head_tidy", "verified")

    def __init__(self, head: str, tail: str) -> None:
        self.head = head
        self.tail = tail
        # Split at the tokens once, so each set fills them with one join instead of six scans.
        self.head_parts = _TOKENS.split(head)
        self.tail_parts = _TOKENS.split(tail)
        self.text_head: str | None = None  # the plain-text part before its sections
        self.text_head_tidy: str | None = None  # the same, trailing spaces stripped (if whole lines)
        self.verified = False


class EditionAssembler:
    """Many editions of one window, one per category set, without an MJML compile for each.

    A send renders one edition per distinct category set: 4,095 of them for 12 categories. Most of
    an edition's HTML is its sections, and a section (its name and items) recurs in many sets, so
    each distinct section is compiled once and kept; what differs per set (subject, preheader, the
    post count, the category names in the footer) is compiled once per post count with tokens in
    place of the text, and the text is put in, escaped as Jinja escapes it (MJML copies text
    through unchanged). The plain-text part is assembled the same way from each section's text
    and this set's header and footer (rendered without sections: a short Jinja pass).

    Correctness does not rest on the template's shape: a section's HTML is found by comparing
    the compiled skeleton with and without it, and the first edition assembled for each skeleton
    is compared with a direct ``Renderer.render``; any difference (a template that uses the
    category names in logic, say) makes that skeleton, or all of them, fall back to direct
    rendering. ``compiles``, ``direct`` and ``assembled`` count what happened.
    """

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self._skeletons: dict[tuple[Any, ...], _Skeleton | None] = {}
        self._sections: dict[tuple[str, tuple[int, ...]], str | None] = {}
        self._alive: dict[tuple[str, tuple[int, ...]], tuple[Item, ...]] = {}
        # a section's text, and the same tidied when it is whole lines
        self._text_sections: dict[tuple[str, tuple[int, ...]], tuple[str, str | None] | None] = {}
        self.compiles = 0
        self.assembled = 0
        self.direct = 0

    def render(self, edition: Edition) -> RenderedEdition:
        """The same RenderedEdition as ``Renderer.render(edition)``."""
        r = self.renderer
        context = r._context(edition)  # raises EmptyEditionError like render()
        view: EditionView = context["edition"]
        key = (
            edition.id,
            view.window_start,
            view.window_end,
            view.post_count,
            bool(view.categories),
            bool(context["contents"]),
            bool(context["contents_text"]),
        )
        skeleton = self._skeletons.get(key, ...)
        if skeleton is ...:
            skeleton = self._skeletons[key] = self._skeleton(context)
        html = None
        if skeleton is not None:
            html = self._assemble(skeleton, context, view)
        if html is None:
            self.direct += 1
            return r.render(edition)
        text = self._text(skeleton, context, view)
        rendered = RenderedEdition(
            subject=context["subject"],
            preheader=context["preheader"],
            html=html,
            text=text,
            warnings=r._warnings(_utf8_size(html, self.renderer.config.edition.clip_warning_bytes)),
        )
        if not skeleton.verified:  # the first edition of each skeleton is checked against render()
            direct = r.render(edition)
            if direct != rendered:
                self._skeletons[key] = None
                self.direct += 1
                return direct
            skeleton.verified = True
        self.assembled += 1
        return rendered

    def _assemble(self, skeleton: _Skeleton, context: dict[str, Any], view: EditionView) -> str | None:
        values = {
            _SUBJECT_TOKEN: str(escape(context["subject"])),
            _PREHEADER_TOKEN: str(escape(context["preheader"])),
            _CATEGORIES_TOKEN: str(escape(", ".join(view.categories))),
            _CONTENTS_TOKEN: str(context["contents"]),
        }
        parts = [values.get(part, part) for part in skeleton.head_parts]
        for section in view.sections:
            piece = self._section(skeleton, section, context)
            if piece is None:
                return None
            parts.append(piece)
        parts.extend([values.get(part, part) for part in skeleton.tail_parts])
        return "".join(parts)

    def _text(self, skeleton: _Skeleton, context: dict[str, Any], view: EditionView) -> str:
        """The plain-text part: this set's text without sections (header and footer, a short
        Jinja pass) with each section's text, rendered once per section, put in between.

        When the pieces meet at line starts, each is tidied (trailing spaces) once, when it is
        made, and only the join is tidied per set: the same text as tidying the whole part.
        """
        r = self.renderer
        bare = self._text_view(context, ())
        head = skeleton.text_head
        if head is None:
            with_one = self._text_view(context, view.sections[:1])
            cut = _common_prefix(bare, with_one)
            head = skeleton.text_head = bare[:cut]
            skeleton.text_head_tidy = _strip_lines(head) if head.endswith("\n") else None
        if not bare.startswith(head):  # a template whose text header differs per set
            return _tidy_text(r._run(r._text_template, context, TEXT_TEMPLATE))
        tail = bare[len(head) :]
        parts = [head]
        tidy_parts = [skeleton.text_head_tidy]
        for section in view.sections:
            key = self._key(section)
            piece = self._text_sections.get(key, ...)
            if piece is ...:
                raw = self._text_view(context, (section,))
                ok = raw.startswith(head) and raw.endswith(tail) and len(head) + len(tail) <= len(raw)
                text = raw[len(head) : len(raw) - len(tail)] if ok else None
                tidy = _strip_lines(text) if text is not None and text.endswith("\n") else None
                piece = self._text_sections[key] = None if text is None else (text, tidy)
            if piece is None:
                return _tidy_text(r._run(r._text_template, context, TEXT_TEMPLATE))
            parts.append(piece[0])
            tidy_parts.append(piece[1])
        if None in tidy_parts:  # a piece that ends mid-line: tidy the whole part
            text = _tidy_text("".join(parts) + tail)
        else:
            tidy_parts.append(_strip_lines(tail))
            text = _collapse_blank_lines("".join(tidy_parts))  # type: ignore[arg-type]
        contents = context["contents_text"]
        if not contents:
            return text
        # This set's "In this issue" goes where its token is. Tidying is line by line, so when the
        # token stands alone on its lines and the tidied list has no blank-line runs at its edges,
        # putting it into the tidied text equals tidying the text with it (else: tidy it all).
        tidy = _strip_lines(contents)
        alone = text.count(f"\n{_CONTENTS_TOKEN}\n") == text.count(_CONTENTS_TOKEN)
        if alone and "\n\n\n" not in tidy and not tidy.startswith("\n") and not tidy.endswith("\n"):
            return text.replace(_CONTENTS_TOKEN, tidy)
        return _tidy_text(("".join(parts) + tail).replace(_CONTENTS_TOKEN, contents))

    def _key(self, section: Section) -> tuple[str, tuple[int, ...]]:
        """A section's cache key: its name and its items' identities.

        A send's items are the same objects set after set (``pipeline.item_for``), and hashing
        them by value (every field, long leads included) was a tenth of an assembled render.
        The items are kept alive here, so an identity cannot be reused by other items.
        """
        key = (section.name, tuple(map(id, section.items)))
        if key not in self._alive:
            self._alive[key] = section.items
        return key

    def _text_view(self, context: dict[str, Any], sections: tuple[Section, ...]) -> str:
        r = self.renderer
        view = context["edition"].copy()
        view.sections = sections
        contents = _CONTENTS_TOKEN if context["contents_text"] else ""
        return r._run(
            r._text_template, {**context, "edition": view, "contents_text": contents}, TEXT_TEMPLATE
        )

    def _compile_view(self, context: dict[str, Any], sections: tuple[Section, ...]) -> str:
        """The HTML of the edition with only ``sections``, tokens in place of per-set text."""
        r = self.renderer
        view: EditionView = context["edition"]
        tokened = view.copy()
        tokened.sections = sections
        tokened.categories = (_CATEGORIES_TOKEN,) if view.categories else ()
        ctx = {
            **context,
            "edition": tokened,
            "subject": _SUBJECT_TOKEN,
            "preheader": _PREHEADER_TOKEN,
            "contents": Markup(_CONTENTS_TOKEN) if context["contents"] else Markup(""),
        }
        self.compiles += 1
        return r._compile(r._run(r._mjml_template, ctx, MJML_TEMPLATE))

    def _skeleton(self, context: dict[str, Any]) -> _Skeleton | None:
        bare = self._compile_view(context, ())
        # Where sections go: the point where bare and a one-section edition start to differ.
        probe = context["edition"].sections[:1]
        with_one = self._compile_view(context, probe)
        cut = _common_prefix(bare, with_one)
        tail = bare[cut:]
        if not with_one.endswith(tail):
            return None
        skeleton = _Skeleton(bare[:cut], tail)
        self._sections[self._key(probe[0])] = with_one[cut : len(with_one) - len(tail)]
        return skeleton

    def _section(self, skeleton: _Skeleton, section: Section, context: dict[str, Any]) -> str | None:
        key = self._key(section)
        piece = self._sections.get(key, ...)
        if piece is ...:
            html = self._compile_view(context, (section,))
            # The skeleton's text is the same for every post count apart from the count itself,
            # so a section compiled under any skeleton fits every skeleton; checked here.
            bare_head, bare_tail = _head_and_tail(html, skeleton)
            piece = None if bare_head is None else html[len(bare_head) : len(html) - len(bare_tail)]
            self._sections[key] = piece
        return piece


def _utf8_size(text: str, limit: int) -> int:
    """The UTF-8 size of ``text``, or a size under ``limit`` when it is surely under (no encode)."""
    if len(text) * 4 < limit:  # at most 4 bytes a character
        return len(text)
    return len(text.encode("utf-8"))


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n
    while lo < hi:  # binary search on slices: C-speed comparisons, not a Python loop per char
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _head_and_tail(html: str, skeleton: _Skeleton) -> tuple[str | None, str]:
    fits = len(skeleton.head) + len(skeleton.tail) <= len(html)
    if fits and html.startswith(skeleton.head) and html.endswith(skeleton.tail):
        return skeleton.head, skeleton.tail
    return None, ""


# -- the module-level entry point -------------------------------------------------------------

_renderers: dict[Config, Renderer] = {}
_renderers_lock = threading.Lock()
_MAX_RENDERERS = 8


def render_edition(edition: Edition, config: Config) -> RenderedEdition:
    """Render with a Renderer cached per config, so callers need not keep one themselves."""
    renderer = _renderers.get(config)
    if renderer is None:
        renderer = Renderer(config)
        with _renderers_lock:
            if len(_renderers) >= _MAX_RENDERERS:
                _renderers.pop(next(iter(_renderers)))
            _renderers[config] = renderer
    return renderer.render(edition)


def clear_cache() -> None:
    """Forget cached renderers, e.g. after the templates on disk changed."""
    with _renderers_lock:
        _renderers.clear()


# -- filters -----------------------------------------------------------------------------------


def _filters(config: Config) -> dict[str, Any]:
    tz = config.tz
    english = config.site.language.split("-")[0].lower() == "en"

    def day(value: date) -> str:
        if english:
            return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"
        return value.isoformat()

    def date_filter(value: datetime | date) -> str:
        """A post's date as readers of the site expect it: in the site's timezone."""
        return day(_local(value, tz).date() if isinstance(value, datetime) else value)

    def isodate(value: datetime | date) -> str:
        return (_local(value, tz).date() if isinstance(value, datetime) else value).isoformat()

    @functools.lru_cache(maxsize=64)  # one window per send, asked once per category set
    def daterange(start: datetime, end: datetime) -> str:
        """The window as days: "1–7 January 2026"; ``end`` is exclusive."""
        first = _local(start, tz).date()
        last = _local(end - timedelta(microseconds=1), tz).date()
        if last <= first:
            return day(first)
        if not english:
            return f"{first.isoformat()} – {last.isoformat()}"
        if (first.year, first.month) == (last.year, last.month):
            return f"{first.day}–{day(last)}"
        if first.year == last.year:
            return f"{first.day} {_MONTHS[first.month - 1]} – {day(last)}"
        return f"{day(first)} – {day(last)}"

    return {
        "credit": credit,
        "date": date_filter,
        "isodate": isodate,
        "localtime": lambda value: _local(value, tz),
        "daterange": daterange,
        "host": host,
        "typeset": typeset,
        "nowidow": nowidow,
        # Memoised: a send renders the same leads into thousands of category sets.
        "wrap": functools.lru_cache(maxsize=4096)(wrap),
    }


@jinja2.pass_eval_context
def credit(context: jinja2.nodes.EvalContext, item: Item, prefix: str = "") -> str:
    """``prefix`` + the source a post retells, linked in HTML; "" when the post has none.

    A filter rather than a macro: it runs for every item, and a macro call costs ten times more.
    """
    url, site = item.source_url, item.source_site
    if url and not url.startswith(("https://", "http://")):
        url = None  # front matter is not trusted to supply a javascript: or relative link
    if not url and not site:
        return ""
    name = site or host(url or "")
    if not context.autoescape:
        return f"{prefix}{name} <{url}>" if url else f"{prefix}{name}"
    if url:
        return Markup('{}<a href="{}">{}</a>').format(prefix, url, name)
    return Markup("{}{}").format(prefix, name)


def host(url: str) -> str:
    """``https://www.ft.com/content/x`` -> ``ft.com``: a short, readable credit for a link."""
    netloc = urlsplit(url).netloc or url
    return netloc.removeprefix("www.")


def wrap(text: str, width: int = TEXT_WIDTH, indent: str = "", first: str | None = None) -> str:
    """Wrap each paragraph of plain text; URLs and long words are never broken.

    A regular expression does the greedy fill (textwrap.fill is about ten times slower, and
    the text part wraps every lead of every edition): the longest run of at most ``width``
    characters that ends before a space, else a whole word that is longer than that.
    """
    first = indent if first is None else first
    pattern = _LINE_PATTERNS.get(width)
    if pattern is None:
        pattern = _LINE_PATTERNS[width] = re.compile(rf"(.{{1,{width}}}|\S+)(?: +|$)")
    out: list[str] = []
    # A no-break space (digest.typeset) holds two words together on a line, then reads as a space.
    for paragraph in _PARAGRAPH_BREAK.split(str(text).strip().replace("\u00a0", "\x00")):
        flat = " ".join(paragraph.split())
        if not flat:
            continue
        if not indent and not first:
            out.append("\n".join(pattern.findall(flat)))
            continue
        lines: list[str] = []
        line = first + flat.split(" ", 1)[0]
        for word in flat.split(" ")[1:]:
            if len(line) + 1 + len(word) <= width:
                line += " " + word
            else:
                lines.append(line)
                line = indent + word
        lines.append(line)
        out.append("\n".join(lines))
    return "\n\n".join(out).replace("\x00", " ")


_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_LINE_PATTERNS: dict[int, re.Pattern[str]] = {}


# -- small helpers -----------------------------------------------------------------------------


def _local(value: datetime, tz: tzinfo) -> datetime:
    return value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _tidy_text(text: str) -> str:
    """No trailing spaces, at most one blank line in a row, one newline at the end.

    Lets the text template be laid out for reading rather than for exact whitespace.
    (Line by line and str.replace: a regular expression over the whole part is slower.)
    """
    return _collapse_blank_lines(_strip_lines(text))


def _strip_lines(text: str) -> str:
    """Trailing whitespace off every line."""
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _collapse_blank_lines(text: str) -> str:
    """At most one blank line in a row, one newline at the end."""
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip("\n") + "\n"


def _empty_message(edition: Edition, view: EditionView) -> str:
    which = ", ".join(edition.categories) if edition.categories else "any category"
    return (
        f"Edition {edition.id} has no posts: nothing in {which} was published between "
        f"{view.first_day.isoformat()} and {view.last_day.isoformat()}. There is nothing to send; "
        "widen the window (--as-of, edition.window_days) or pick other categories."
    )


def _syntax_message(exc: jinja2.TemplateSyntaxError, name: str) -> str:
    where = exc.filename or name
    return f"{where}, line {exc.lineno}: template syntax error: {exc.message}."


def _template_frame(exc: BaseException, name: str) -> str | None:
    """'file, line N' of the innermost template frame in a traceback that Jinja rewrote.

    Templates made from a config string show up as '<template>'; ``name`` says which key it was.
    """
    found = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2") or filename == "<template>":
            found = f"{name if filename == '<template>' else filename}, line {tb.tb_lineno}"
        tb = tb.tb_next
    return found


class _MjTagChecker(HTMLParser):
    """Finds the first unbalanced ``mj-*`` tag, since mjml-python's errors give no position."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[tuple[str, int]] = []
        self.problem: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.startswith("mj-") or tag == "mjml":
            self.stack.append((tag, self.getpos()[0]))

    def handle_endtag(self, tag: str) -> None:
        if self.problem or not (tag.startswith("mj-") or tag == "mjml"):
            return
        line = self.getpos()[0]
        if not self.stack:
            self.problem = f"line {line}: </{tag}> closes nothing"
        elif self.stack[-1][0] != tag:
            opened, at = self.stack[-1]
            self.problem = f"line {line}: </{tag}> found while <{opened}> from line {at} is still open"
        else:
            self.stack.pop()


def _mjml_hint(source: str) -> str:
    checker = _MjTagChecker()
    try:
        checker.feed(source)
        checker.close()
    except Exception:  # a hint only; never hide the real error behind another
        return ""
    problem = checker.problem
    if problem is None and checker.stack:
        tag, line = checker.stack[-1]
        problem = f"line {line}: <{tag}> is never closed"
    if problem is None:
        return "Check the mj-* tags and attributes the template writes."
    return f"In the generated MJML (Renderer.mjml_source), {problem}; check the matching tag in the template."
