"""Edition -> email: Jinja2 makes MJML and a plain-text part, mjml-python makes the HTML.

A ``Renderer`` is built once per ``Config``: the Jinja2 environments, the two templates and the
subject/preheader strings are compiled up front, so rendering an edition costs one pass of each
template plus one MJML compile (about a millisecond for ten posts). Personal links stay as the
plain placeholder tokens from ``digest.model`` for the sender to fill in per recipient.

Pure: no disk (after the templates are loaded), network, database or clock.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

import jinja2
import mjml
from markupsafe import Markup

from digest.assemble import MJML_TEMPLATE, TEXT_TEMPLATE, EditionAssembler
from digest.config import BUILTIN_TEMPLATES, Config
from digest.edition_view import EditionView
from digest.errors import EmptyEditionError, RenderError
from digest.model import PREFERENCES_URL, UNSUBSCRIBE_URL, Edition, RenderedEdition, reader_token
from digest.text_format import TEXT_WIDTH, credit, filters, host, one_line, tidy_text, wrap
from digest.textclean import header_text

# "In this issue": rendered on their own and handed to the edition templates as `contents` and
# `contents_text` (a per-set value each, printed as it is: the assembler fills it in per set).
CONTENTS_TEMPLATE = "contents.html.j2"
CONTENTS_TEXT_TEMPLATE = "contents.txt.j2"

__all__ = [
    "MJML_TEMPLATE",
    "SHARED",
    "TEXT_TEMPLATE",
    "TEXT_WIDTH",
    "EditionAssembler",
    "EditionView",
    "Renderer",
    "RendererCache",
    "assembly_reason",
    "clear_cache",
    "credit",
    "host",
    "render_edition",
    "wrap",
]


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
        template_filters = filters(config)
        self._html_env.filters.update(template_filters)
        self._text_env.filters.update(template_filters)
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
            "reader": {field: reader_token(field) for field in config.edition.reader_fields},
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
        text = tidy_text(self._run(self._text_template, context, TEXT_TEMPLATE))
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
        archive = self._globals["archive_url"]  # empty: web.archive is off, nothing to link to
        context["web_url"] = f"{archive}/{edition.id}" if archive else ""
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
            return one_line(self.renderer._run(template, context, name))
        recorder = _ReadRecorder(view)
        text = one_line(self.renderer._run(template, {**context, "edition": recorder}, name))
        names = tuple(dict.fromkeys(recorder.read))
        try:
            key = (extra, tuple([getattr(view, n) for n in names]))
            hash(key)
        except TypeError:
            return text
        found: dict[Any, str] | None = next((t for known, t in tables if known == names), None)
        if found is None:
            found = {}
            tables.append((names, found))
        if len(found) >= self.MAX:
            found.clear()
        found[key] = text
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
        return template.environment.concat(template.root_render_func(ctx))  # type: ignore[attr-defined,unused-ignore]
    except Exception:
        template.environment.handle_exception()
    raise AssertionError("unreachable")  # handle_exception always raises


_TEMPLATE_GLOBALS: weakref.WeakKeyDictionary[jinja2.Template, dict[str, Any]] = weakref.WeakKeyDictionary()


# -- who holds built renderers ----------------------------------------------------------------


class RendererCache:
    """Built renderers by config, the least recently used dropped first: their one owner.

    Building a ``Renderer`` compiles every template (tens of milliseconds); rendering with one
    takes about a millisecond, so whoever renders over and over keeps them here. The key is the
    ``Config`` itself (frozen and hashable; it holds the templates folder and the root it is
    read against), so two configs never share a renderer. Templates are read once when a
    renderer is built: after they change on disk, ``clear()`` (the preview server owns its own
    cache and clears it on every change). One-shot callers (a CLI command, a test) use
    ``SHARED``, which ``clear_cache()`` empties. Thread-safe.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._renderers: OrderedDict[Config, Renderer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, config: Config) -> Renderer:
        """The renderer for ``config``, built on first use."""
        with self._lock:
            renderer = self._renderers.get(config)
            if renderer is not None:
                self._renderers.move_to_end(config)
                return renderer
        renderer = Renderer(config)  # compiles outside the lock: a slow build blocks no other config
        with self._lock:
            self._renderers[config] = renderer
            self._renderers.move_to_end(config)
            while len(self._renderers) > self.size:
                self._renderers.popitem(last=False)
        return renderer

    def clear(self) -> None:
        """Forget every renderer, e.g. after the templates on disk changed."""
        with self._lock:
            self._renderers.clear()

    def __len__(self) -> int:
        return len(self._renderers)


# For callers that render once and exit; anything long-lived should hold its own RendererCache.
SHARED = RendererCache()


def render_edition(
    edition: Edition, config: Config, *, renderers: RendererCache | None = None
) -> RenderedEdition:
    """Render with the renderer ``renderers`` (default ``SHARED``) keeps for ``config``."""
    return (SHARED if renderers is None else renderers).get(config).render(edition)


def assembly_reason(
    edition: Edition, config: Config, *, renderers: RendererCache | None = None
) -> str | None:
    """Why a send would render this config's templates in full for every category set (None:
    it assembles them from pieces). For the preview's checks; see templates/README.md."""
    assembler = EditionAssembler((SHARED if renderers is None else renderers).get(config))
    assembler._plan(assembler.renderer._context(edition))
    return assembler.reason


def clear_cache() -> None:
    """Forget ``SHARED``'s renderers, e.g. after the templates on disk changed."""
    SHARED.clear()


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
