"""A send's many editions (one per category set) assembled from pieces, byte for byte as rendered.

A send renders one edition per distinct category set: 4,095 of them for 12 categories. Most of
an edition is its sections, and a section (its name and items) recurs in many sets. So each
distinct section is rendered (Jinja) once and compiled (MJML) once per family of frames, and
only the frame (everything around the sections) is handled per set: the plain-text frame is
rendered per set (a short Jinja pass); the HTML frame is compiled once per distinct outcome of
its per-set logic, with tokens where it prints per-set values (subject, post count, the
reader's categories), which are then put in escaped as Jinja escapes them.

Why that is exact, not just usually right:

- Jinja: ``digest.template_reads`` proves from the template's syntax tree that its one loop
  over ``edition.sections`` writes, for each section, text that depends only on that section
  (and on things fixed for the whole send), and finds every expression outside the loop that
  reads a per-set value: a printed one becomes a token, an ``{% if %}`` test or any other use
  becomes part of the frame's key (its truth, or its value). The frame then reads nothing per
  set but through those, so ``frame before + one piece per section + frame after`` is the
  template's output for every set. When that cannot be proved, the template is rendered
  directly, every set (``reason`` says why). The decision is made from the template, never
  from the sets seen so far, so the order sets arrive in changes nothing.
- MJML: MRML renders each child of ``mj-body`` on its own and copies the content of mj-text
  and its kin through, so the compiled HTML is the compiled frame with each section's compiled
  piece in place. That is checked for every frame (a marker where the sections go, one
  section, the same section twice, the tokens filled with this set's values and with a probe,
  and every new character a set's values bring) and for every section piece; any difference
  renders directly. A token inside an attribute is never trusted: that value keys the frame.

``compiles``, ``direct`` and ``assembled`` count what happened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import secrets
from typing import Any, Protocol

import jinja2
from markupsafe import Markup, escape

from digest.config import Config
from digest.edition_view import EditionView
from digest.errors import RenderError
from digest.model import Edition, Item, RenderedEdition, Section
from digest.template_reads import EXPRESSION, SECTIONS_MARK, Direct, Plan, plan
from digest.text_format import collapse_blank_lines, strip_lines, tidy_text

MJML_TEMPLATE = "edition.mjml.j2"
TEXT_TEMPLATE = "edition.txt.j2"

# Plain letters and digits: they pass Jinja's escaping and MJML unchanged. A random part per
# process, so no post or config text can spell a token by chance or on purpose.
_NONCE = secrets.token_hex(6)
_TOKEN = "Qz" + _NONCE + "Value{}Qz"
# Text with every character escaping produces. MRML does not copy every character through
# (in the aria-label it makes of mj-title, a no-break space comes out as ``\u{a0}``, a
# combining accent as ``\u{301}``), so any other character in a set's values is checked
# against each frame before a token stands for it (``_Skeleton.verified``).
_PROBE = "<b>&amp; \"Q\" 'x'  ü 東京 ☕ A-z 0-9 .,:;!?()[]{}/|+=*%$#@~^_`</b>"
# Printable ASCII but the backslash (which MRML escapes in mj-title's aria-label) is checked
# by _PROBE on every frame; any other character when a set first brings it (_verify).
_UNSAFE_ASCII = re.compile(r"[\x00-\x1f\x7f\\\\]")  # the ASCII that _VERIFIED leaves out
_VERIFIED = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"\\"}

_SectionKey = tuple[str, tuple[int, ...]]


class _Unusable(Exception):
    """A frame or piece MRML would not compile: this set is rendered directly."""


class Renders(Protocol):
    """What the assembler needs of ``digest.render.Renderer`` (kept apart to avoid an import circle)."""

    config: Config
    _html_env: jinja2.Environment
    _text_env: jinja2.Environment
    _globals: dict[str, Any]
    _auto_reload: bool
    _mjml_template: jinja2.Template
    _text_template: jinja2.Template

    def _context(self, edition: Edition) -> dict[str, Any]: ...
    def _run(self, template: jinja2.Template, context: dict[str, Any], name: str) -> str: ...
    def _compile(self, source: str) -> str: ...
    def _warnings(self, size: int) -> tuple[str, ...]: ...


class _Skeleton:
    """One compiled HTML frame, split where the sections go, and its sections' compiled pieces."""

    __slots__ = (
        "after",
        "before",
        "head",
        "head_parts",
        "known",
        "pieces",
        "rejected",
        "tail",
        "tail_parts",
        "verified",
    )

    def __init__(self, before: str, after: str, head: str, tail: str) -> None:
        self.before = before  # the frame's MJML before and after the sections
        self.after = after
        self.head = head  # the compiled HTML before and after the sections
        self.tail = tail
        # Split at the tokens once, so each set fills them with one join instead of many scans.
        self.head_parts = _TOKENS.split(head)
        self.tail_parts = _TOKENS.split(tail)
        self.pieces: dict[_SectionKey, str | None] = {}
        # per printed value: characters its token may stand for in this frame, and those MRML
        # changes there
        self.verified: dict[int, set[str]] = {}
        self.known: dict[int, set[str]] = {}  # per printed value: whole values already checked
        self.rejected: dict[int, set[str]] = {}


_SECTIONS_TOKEN = f"Qz{_NONCE}SectionsQz"
# MJML elements whose content MRML copies through as it is: it cannot change how a sibling
# section compiles, so frames that differ only there share their sections' pieces.
_COPIED = re.compile(
    r"(<(mj-text|mj-button|mj-table|mj-raw|mj-title|mj-preview|mj-style|mj-navbar-link"
    r"|mj-accordion-title|mj-accordion-text|mj-social-element)\b[^>]*>).*?(</\2>)",
    re.DOTALL,
)


def _family(before: str, after: str) -> str:
    """A frame's MJML without the content of elements MRML copies through."""
    return _COPIED.sub(r"\1\3", before) + "\0" + _COPIED.sub(r"\1\3", after)


_TOKENS = re.compile(f"(Qz{_NONCE}Value[0-9]+Qz)")  # split keeps the tokens
_TOKEN_AT = re.compile(f"Qz{_NONCE}Value([0-9]+)Qz")


class EditionAssembler:
    """The same RenderedEdition as ``Renderer.render`` for every edition, at a fraction of the cost."""

    def __init__(self, renderer: Renders) -> None:
        self.renderer = renderer
        self._html_plan: Plan | Direct | None = None
        self._text_plan: Plan | Direct | None = None
        self._skeletons: dict[tuple[object, ...], _Skeleton | None] = {}
        self._seen: set[tuple[object, ...]] = set()  # frames rendered once, directly
        self._chars: dict[int, set[str]] = {}  # per printed value: every character seen so far
        self._families: dict[str, dict[_SectionKey, str | None]] = {}  # see _family
        self._values_globals: dict[str, Any] = {}
        self._html_sources: dict[tuple[object, ...], str] = {}
        self._text_pieces: dict[tuple[object, ...], tuple[str, str | None]] = {}
        self._alive: dict[_SectionKey, tuple[Item, ...]] = {}
        self.compiles = 0
        self.assembled = 0
        self.direct = 0

    @property
    def reason(self) -> str | None:
        """Why a part of this template is rendered directly for every set; None when both assemble."""
        found = [
            f"{name}: {p.reason}"
            for name, p in ((MJML_TEMPLATE, self._html_plan), (TEXT_TEMPLATE, self._text_plan))
            if isinstance(p, Direct)
        ]
        return "; ".join(found) or None

    def render(self, edition: Edition) -> RenderedEdition:
        """The same RenderedEdition as ``Renderer.render(edition)``."""
        r = self.renderer
        context = r._context(edition)  # raises EmptyEditionError like render()
        view: EditionView = context["edition"]
        if self._html_plan is None or self._text_plan is None:
            self._plan(context)
        html = self._html(context, view) if isinstance(self._html_plan, Plan) else None
        if html is None:
            self.direct += 1
            html = r._compile(r._run(r._mjml_template, context, MJML_TEMPLATE))
        else:
            self.assembled += 1
        text = self._text(context, view) if isinstance(self._text_plan, Plan) else None
        if text is None:
            text = tidy_text(r._run(r._text_template, context, TEXT_TEMPLATE))
        return RenderedEdition(
            subject=context["subject"],
            preheader=context["preheader"],
            html=html,
            text=text,
            warnings=r._warnings(_utf8_size(html, r.config.edition.clip_warning_bytes)),
        )

    def _plan(self, context: dict[str, Any]) -> None:
        r = self.renderer
        if r._auto_reload:  # the preview server: templates change under it; nothing to gain
            self._html_plan = self._text_plan = Direct("the templates are reloaded when they change")
            return
        fixed = frozenset(r._globals)
        per_set = frozenset(context) - fixed - {"edition"}
        try:
            self._html_plan = plan(r._html_env, MJML_TEMPLATE, per_set, fixed)
            self._text_plan = plan(r._text_env, TEXT_TEMPLATE, per_set, fixed, expressions=False)
        except jinja2.TemplateError as exc:  # the Renderer compiled it already: cannot happen
            self._html_plan = self._text_plan = Direct(f"the template did not parse again ({exc})")
        base = dict(r._html_env.globals)
        self._values_globals = base

    # -- HTML ----------------------------------------------------------------------------------

    def _evaluate(self, p: Plan, context: dict[str, Any]) -> list[Any] | None:
        """This set's value of each of the frame's per-set expressions (None: render directly).

        A bare name or ``edition.attribute`` is read directly; the rest are evaluated at once,
        eagerly, by a template of just those expressions. One that fails (in a branch this set
        does not take, say) sends the set to a direct render, which does what the template says.
        """
        view = context["edition"]
        found: list[Any] = []
        try:
            for form in p.simple:
                if form is None:
                    found.append(None)
                elif form[0] == "name":
                    found.append(context[form[1]])
                else:
                    found.append(getattr(view, form[1]))
        except (KeyError, AttributeError):
            return None
        template = p.values
        if template is None:
            return found
        ctx = jinja2.runtime.new_context(
            template.environment,
            template.name,
            template.blocks,
            {**self._values_globals, **context},
            True,
            self._values_globals,
        )
        try:
            for _ in template.root_render_func(ctx):
                pass
            computed = ctx.vars
            for i in _shape(p)[2]:
                value = found[i] = computed[_expression(i)]
                if isinstance(value, jinja2.Undefined):
                    return None
        except Exception:
            return None
        return found

    def _html(self, context: dict[str, Any], view: EditionView) -> str | None:
        p = self._html_plan
        assert isinstance(p, Plan)
        computed = self._evaluate(p, context)
        if computed is None:
            return None
        try:
            key = (view.id, view.window_start, view.window_end, *_keyed(p, computed))
            skeleton = self._skeletons.get(key, ...)
        except TypeError:  # an unhashable value the frame uses: render this set directly
            return None
        if skeleton is ...:
            if key not in self._seen:  # a frame seen once may be seen only once: render directly
                self._seen.add(key)
                return None
            try:
                skeleton = self._skeleton(p, context, view, computed)
            except _Unusable:
                skeleton = None
            self._skeletons[key] = skeleton
            if self._html_plan is not p:  # a printed value is now kept by value: frame it so
                assert isinstance(self._html_plan, Plan)
                with contextlib.suppress(TypeError):  # unhashable: the retry renders it directly
                    self._seen.add((*key[:3], *_keyed(self._html_plan, computed)))
                return self._html(context, view)
        if skeleton is None:
            return None
        values = _values(p, computed)
        try:
            if not self._verify(skeleton, p, context, computed, values):
                return None
            pieces = [self._piece(skeleton, section, context, view) for section in view.sections]
        except _Unusable:
            return None
        if None in pieces:
            return None
        parts = [values.get(part, part) for part in skeleton.head_parts]
        parts += pieces  # type: ignore[arg-type]
        parts.extend([values.get(part, part) for part in skeleton.tail_parts])
        return "".join(parts)

    def _frame(
        self, p: Plan, context: dict[str, Any], computed: list[Any], tokens: bool
    ) -> tuple[str, str] | None:
        """The frame's MJML before and after the sections, with tokens or this set's values."""
        ctx = dict(context)
        for i, (value, kind) in enumerate(zip(computed, p.kinds, strict=True)):
            if kind == "print":
                ctx[EXPRESSION.format(i)] = _token(i) if tokens else value
            else:
                ctx[EXPRESSION.format(i)] = bool(value) if kind == "test" else value
        try:
            frame = self.renderer._run(p.frame, ctx, MJML_TEMPLATE)
        except RenderError as exc:
            raise _Unusable from exc
        if frame.count(SECTIONS_MARK) != 1:  # the loop sits in an {% if %} not taken
            return None
        before, after = frame.split(SECTIONS_MARK)
        return before, after

    def _skeleton(
        self, p: Plan, context: dict[str, Any], view: EditionView, computed: list[Any]
    ) -> _Skeleton | None:
        frame = self._frame(p, context, computed, tokens=True)
        if frame is None:
            return None
        before, after = frame
        inside = _in_tags(before) | _in_tags(after)
        if inside:  # a value printed in an attribute: MRML may read it (a width), not copy it
            kinds = tuple("value" if i in inside else kind for i, kind in enumerate(p.kinds))
            self._html_plan = dataclasses.replace(p, kinds=kinds)  # frames kept per its value
            return None
        bare = self._compile(before + after)
        # Where the sections go in the HTML: where MRML puts a marker (mj-raw copies its text),
        # else where the HTML with one section starts to differ from the HTML with none.
        marked = self._compile(before + f"<mj-raw>{_SECTIONS_TOKEN}</mj-raw>" + after)
        at = marked.find(_SECTIONS_TOKEN)
        exact = at >= 0 and marked[:at] + marked[at + len(_SECTIONS_TOKEN) :] == bare
        source = self._html_source(p, view.sections[0], context, view)
        with_one = self._compile(before + source + after)
        cut = at if exact else _common_prefix(bare, with_one)
        head, tail = bare[:cut], bare[cut:]
        if not with_one.startswith(head) or not with_one.endswith(tail) or len(with_one) < len(bare):
            return None
        piece = with_one[cut : len(with_one) - len(tail)]
        if self._compile(before + source + source + after) != head + piece + piece + tail:
            return None  # sections do not simply follow one another in the compiled HTML
        # The tokens come out as the values would: with this set's values, and with a probe of
        # every character escaping produces.
        for probe in (computed, _probed(p, computed, _PROBE)):
            real = self._frame(p, context, probe, tokens=False)
            if real is None or self._compile("".join(real)) != _fill(bare, _values(p, probe)):
                return None
        skeleton = _Skeleton(before, after, head, tail)
        probe_key = self._key(view.sections[0])
        if exact:
            # Frames that differ only in text MRML copies through (the post count in a header,
            # say) compile a section alike: they share its pieces, checked here on the probe.
            family = self._families.setdefault(_family(before, after), {})
            if family.get(probe_key, piece) == piece:
                skeleton.pieces = family
        skeleton.pieces[probe_key] = piece
        return skeleton

    def _verify(
        self,
        skeleton: _Skeleton,
        p: Plan,
        context: dict[str, Any],
        computed: list[Any],
        values: dict[str, str],
    ) -> bool:
        """Whether MRML copies every character of this set's printed values through, where each
        is printed in this frame.

        Checked per printed value (MRML treats text differently in different places: mj-title's
        also goes into an aria-label), for characters beyond printable ASCII when a set first
        brings them; a set with a character that MRML changes there is rendered directly.
        """
        for i, kind in enumerate(p.kinds):
            if kind != "print":
                continue
            value = values[_token(i)]
            known = skeleton.known.setdefault(i, set())
            if value in known or (value.isascii() and not _UNSAFE_ASCII.search(value)):
                continue  # a value seen before, or plain ASCII: nothing to check
            verified = skeleton.verified.setdefault(i, set(_VERIFIED))
            new = set(value) - verified
            if not new:
                if len(known) < 4096:
                    known.add(value)
                continue
            rejected = skeleton.rejected.setdefault(i, set())
            if new & rejected:
                return False
            # Every character seen here in any set so far, checked at once: later sets then
            # rarely bring a new one; a batch with a character MRML changes is halved until found.
            seen = self._chars.setdefault(i, set())
            seen |= new
            self._probe_many(skeleton, p, context, computed, i, (seen - verified) - rejected)
            if new - verified:
                return False
        return True

    def _probe_many(
        self,
        skeleton: _Skeleton,
        p: Plan,
        context: dict[str, Any],
        computed: list[Any],
        i: int,
        chars: set[str],
    ) -> None:
        if not chars or self._probe(skeleton, p, context, computed, i, chars):
            return
        if len(chars) == 1:
            skeleton.rejected[i] |= chars
            return
        ordered = sorted(chars)
        half = len(ordered) // 2
        self._probe_many(skeleton, p, context, computed, i, set(ordered[:half]))
        self._probe_many(skeleton, p, context, computed, i, set(ordered[half:]))

    def _probe(
        self,
        skeleton: _Skeleton,
        p: Plan,
        context: dict[str, Any],
        computed: list[Any],
        i: int,
        chars: set[str],
    ) -> bool:
        """Whether printed value ``i`` made of ``chars`` comes out of MRML as it went in."""
        probe = list(computed)
        probe[i] = Markup("A" + "A".join(sorted(chars)) + "A")  # beyond ASCII: nothing to escape
        probed = self._frame(p, context, probe, tokens=False)
        bare = "".join(skeleton.head_parts) + "".join(skeleton.tail_parts)
        if probed is None or self._compile("".join(probed)) != _fill(bare, _values(p, probe)):
            return False
        skeleton.verified[i] |= chars
        return True

    def _piece(
        self, skeleton: _Skeleton, section: Section, context: dict[str, Any], view: EditionView
    ) -> str | None:
        key = self._key(section)
        piece = skeleton.pieces.get(key, ...)
        if piece is ...:
            p = self._html_plan
            assert isinstance(p, Plan)
            html = self._compile(
                skeleton.before + self._html_source(p, section, context, view) + skeleton.after
            )
            head, tail = skeleton.head, skeleton.tail
            fits = len(head) + len(tail) <= len(html) and html.startswith(head) and html.endswith(tail)
            piece = skeleton.pieces[key] = html[len(head) : len(html) - len(tail)] if fits else None
        return piece

    def _html_source(self, p: Plan, section: Section, context: dict[str, Any], view: EditionView) -> str:
        """A section's MJML, rendered once per window (the loop reads nothing else that varies)."""
        key = (view.id, view.window_start, view.window_end, self._key(section))
        source = self._html_sources.get(key)
        if source is None:
            source = self._html_sources[key] = self._sections_run(p, section, context, view, MJML_TEMPLATE)
        return source

    def _compile(self, source: str) -> str:
        """Compile a frame or piece; MJML that does not compile raises _Unusable (render directly:
        the direct render then says what is wrong, if anything is)."""
        self.compiles += 1
        try:
            return self.renderer._compile(source)
        except RenderError as exc:
            raise _Unusable from exc

    # -- plain text ----------------------------------------------------------------------------

    def _text(self, context: dict[str, Any], view: EditionView) -> str | None:
        """This set's frame (a short Jinja pass) with each section's text, rendered once, between.

        When the pieces meet at line starts, each is tidied (trailing spaces) once, when it is
        made, and only the join is tidied per set: the same text as tidying the whole part.
        """
        p = self._text_plan
        assert isinstance(p, Plan)
        frame = self.renderer._run(p.frame, context, TEXT_TEMPLATE)
        marks = frame.count(SECTIONS_MARK)
        if marks != 1:
            return tidy_text(frame) if marks == 0 else None
        head, tail = frame.split(SECTIONS_MARK)
        texts = [head]
        tidied: list[str | None] = [strip_lines(head) if head.endswith("\n") else None]
        for section in view.sections:
            key = (view.id, view.window_start, view.window_end, self._key(section))
            piece = self._text_pieces.get(key)
            if piece is None:
                text = self._sections_run(p, section, context, view, TEXT_TEMPLATE)
                piece = self._text_pieces[key] = (text, strip_lines(text) if text.endswith("\n") else None)
            texts.append(piece[0])
            tidied.append(piece[1])
        if None in tidied:  # a piece that ends mid-line: tidy the whole part
            texts.append(tail)
            return tidy_text("".join(texts))
        tidied.append(strip_lines(tail))
        return collapse_blank_lines("".join(tidied))  # type: ignore[arg-type]

    # -- shared --------------------------------------------------------------------------------

    def _sections_run(
        self, p: Plan, section: Section, context: dict[str, Any], view: EditionView, name: str
    ) -> str:
        one = view.copy()
        one.sections = (section,)
        return self.renderer._run(p.sections, {**context, "edition": one}, name)

    def _key(self, section: Section) -> _SectionKey:
        """A section's cache key: its name and its items' identities.

        A send's items are the same objects set after set (``pipeline.item_for``), and hashing
        them by value (every field, long leads included) was a tenth of an assembled render.
        The items are kept alive here, so an identity cannot be reused by other items.
        """
        key = (section.name, tuple(map(id, section.items)))
        if key not in self._alive:
            self._alive[key] = section.items
        return key


def _values(p: Plan, computed: list[Any]) -> dict[str, str]:
    """What each token stands for in this set: the value printed as Jinja's autoescape prints it
    (``escape``; safe markup as it is, not copied: "In this issue" is a few KB a set)."""
    values: dict[str, str] = {}
    for i in _shape(p)[0]:
        value = computed[i]
        values[_token(i)] = value if isinstance(value, Markup) else escape(value)
    return values


@functools.lru_cache(maxsize=64)
def _shape(p: Plan) -> tuple[tuple[int, ...], tuple[tuple[int, bool], ...], tuple[int, ...]]:
    """The printed expressions, the others (with whether each is a test), and those that need
    the values template."""
    printed = tuple(i for i, kind in enumerate(p.kinds) if kind == "print")
    others = tuple((i, kind == "test") for i, kind in enumerate(p.kinds) if kind != "print")
    evaluated = tuple(i for i, form in enumerate(p.simple) if form is None)
    return printed, others, evaluated


@functools.cache
def _expression(i: int) -> str:
    return EXPRESSION.format(i)


@functools.cache
def _token(i: int) -> str:
    return _TOKEN.format(i)


def _keyed(p: Plan, computed: list[Any]) -> list[Any]:
    """What a frame is kept by: each tested value's truth, each other unprinted value."""
    return [bool(computed[i]) if test else computed[i] for i, test in _shape(p)[1]]


def _probed(p: Plan, computed: list[Any], text: str) -> list[Any]:
    """``computed`` with every printed value replaced by ``text``."""
    return [text if kind == "print" else value for value, kind in zip(computed, p.kinds, strict=True)]


def _in_tags(mjml: str) -> set[int]:
    """The expressions whose tokens stand inside a tag (an attribute) rather than in text."""
    return {
        int(match.group(1))
        for match in _TOKEN_AT.finditer(mjml)
        if mjml.rfind("<", 0, match.start()) > mjml.rfind(">", 0, match.start())
    }


def _fill(html: str, values: dict[str, str]) -> str:
    return "".join([values.get(part, part) for part in _TOKENS.split(html)])


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
