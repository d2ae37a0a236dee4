"""Text from posts and readers, made safe for email before any stage sees it.

Three jobs, each a pure function:

- ``clean_post_text``: a post file's text without the characters an email cannot carry (C0 and
  C1 controls other than tab and newline, NUL, ESC, DEL, Unicode non-characters such as U+FFFE,
  lone surrogates). A vertical tab (Word's line break), form feed or NEL becomes a space in the
  front matter and a newline in the body; the rest are removed. Each field that changed gets one
  warning naming it. Such characters made the MJML compiler refuse the whole edition.
- ``cap_categories``: a post's category list cut to ``MAX_CATEGORIES`` with a warning (100,000
  categories once cost 45 s in the selector and the permalink).
- ``header_text``: text bound for a header (Subject, a To display name) as plain text: no
  encoded-word of its own (``=?utf-8?b?QWRtaW4=?=`` would show as "Admin"), no bidi controls
  (a right-to-left override can make a subject read backwards), no line breaks or controls.

The check for a clean text (nearly every post) is one UTF-8 encode and one ``bytes.translate``:
a regular expression over every character was a third of a cold load of 3,500 posts.
"""

from __future__ import annotations

import bisect
import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import fields, replace

from digest.model import Post

Notice = tuple[int, str]  # (logging level, message), as digest.posts collects them

MAX_CATEGORIES = 50

# Characters that become whitespace rather than vanish: they separate words in the source.
_BREAKS = frozenset("\x0b\x0c\x85")
_ASTRAL_NONCHARACTERS = "".join(
    chr(plane * 0x10000 + 0xFFFE) + chr(plane * 0x10000 + 0xFFFF) for plane in range(1, 17)
)
# Everything clean_post_text removes or replaces (BMP part; astral non-characters apart, see _BAD_ASTRAL).
_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")
_BAD_ASTRAL = re.compile(f"[{_ASTRAL_NONCHARACTERS}]")
# UTF-8 bytes that rule out the fast "clean" answer: C0 controls but tab/LF/CR, DEL, and the lead
# bytes of C1 controls (\xc2), of U+FDD0-U+FFFF (\xef) and of astral characters (\xf0-\xf4).
# (Surrogates cannot be encoded at all.) A text with some is then checked precisely, in bytes.
_SUSPECT_BYTES = frozenset(
    [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0xC2, 0xEF, *range(0xF0, 0xF5)]
)
_NOT_SUSPECT = bytes(b for b in range(256) if b not in _SUSPECT_BYTES)
_HIGH = bytes(range(0x80, 0x100))
_C1_BYTES = re.compile(b"\xc2[\x80-\x9f]")
_BMP_NONCHARACTER_BYTES = re.compile(b"\xef(?:\xb7[\x90-\xaf]|\xbf[\xbe\xbf])")
_NOT_ASTRAL_LEAD = bytes(b for b in range(256) if not 0xF0 <= b <= 0xF4)

_BOUNDARY = re.compile(r"^-{3,}[ \t]*$", re.MULTILINE)  # python-frontmatter's --- line
_KEY_LINE = re.compile(r"^([A-Za-z_][\w.-]*)[ \t]*:", re.MULTILINE)

_NAMES = {
    "\x00": "NUL",
    "\x0b": "vertical tab, a Word line break",
    "\x0c": "form feed",
    "\x1b": "ESC",
    "\x7f": "DEL",
    "\x85": "next line (NEL)",
}


def clean_post_text(text: str, notices: list[Notice]) -> str:
    """``text`` without characters email cannot carry; one warning per field that changed.

    ``text`` is a whole post file (front matter and body). The warning names the front-matter
    key the character was under (``title``, ``categories``...), else ``body``.
    """
    where = _suspect(text)
    if not where:
        return text
    fm_start, fm_end = _front_matter_span(text)
    keys = [(m.start(), m.group(1)) for m in _KEY_LINE.finditer(text, fm_start, fm_end)] if fm_end else []
    starts = [start for start, _ in keys]
    found: dict[str, dict[str, int]] = {}
    replaced: dict[str, int] = {}

    def fix(match: re.Match[str]) -> str:
        char, at = match.group(), match.start()
        in_front = fm_start <= at < fm_end
        field = "body"
        if in_front:
            index = bisect.bisect_right(starts, at) - 1
            field = keys[index][1] if index >= 0 else "front matter"
        counts = found.setdefault(field, {})
        counts[char] = counts.get(char, 0) + 1
        if char in _BREAKS:
            replaced[field] = replaced.get(field, 0) + 1
            return " " if in_front else "\n"
        return ""

    cleaned = _substitute(text, where, fix)
    _report(found, replaced, notices)
    return cleaned


def clean_post_fields(post: Post, notices: list[Notice]) -> Post:
    """``post`` with every text field clean and at most MAX_CATEGORIES categories.

    The file was cleaned before YAML read it, but a double-quoted YAML string makes characters
    from escapes (``"\\u000b"``, ``"\\e"``), so the values YAML built are checked too. Every
    text field is (fields added to Post later included), apart from the body, which YAML never
    reads, and the path and hash, which are ours.
    """
    changes: dict[str, object] = {}
    found: dict[str, dict[str, int]] = {}
    replaced: dict[str, int] = {}
    for spec in fields(post):
        if spec.name in _OURS:
            continue
        value = getattr(post, spec.name)
        if isinstance(value, str) and _suspect(value):
            changes[spec.name] = _scrub(value, spec.name, found, replaced)
        elif isinstance(value, tuple) and any(isinstance(v, str) and _suspect(v) for v in value):
            changes[spec.name] = tuple(
                _scrub(v, spec.name, found, replaced) if isinstance(v, str) else v for v in value
            )
    _report(found, replaced, notices)
    categories = changes.get("categories", post.categories)
    assert isinstance(categories, tuple)
    capped = cap_categories(categories, notices)
    if capped is not post.categories:
        changes["categories"] = capped
    return replace(post, **changes) if changes else post  # type: ignore[arg-type]


_OURS = frozenset({"path", "content_hash", "body"})


def _scrub(value: str, field: str, found: dict[str, dict[str, int]], replaced: dict[str, int]) -> str:
    """One field's value cleaned (breaks become spaces), counting what went into ``found``."""

    def fix(match: re.Match[str]) -> str:
        char = match.group()
        counts = found.setdefault(field, {})
        counts[char] = counts.get(char, 0) + 1
        if char in _BREAKS:
            replaced[field] = replaced.get(field, 0) + 1
            return " "
        return ""

    cleaned = _substitute(value, _suspect(value), fix)
    return cleaned.strip() if value == value.strip() else cleaned  # stripped values stay stripped


def _report(found: dict[str, dict[str, int]], replaced: dict[str, int], notices: list[Notice]) -> None:
    """One warning per field: how many characters, which, and what became of them."""
    for field, counts in found.items():
        total = sum(counts.values())
        kinds = ", ".join(_describe(char) for char in sorted(counts))
        breaks = replaced.get(field, 0)
        by = "a line break" if field == "body" else "a space"
        if breaks == total:
            how = f"replaced by {by}" if total == 1 else f"each replaced by {by}"
        elif breaks:
            how = f"{breaks} replaced by {by}, {total - breaks} removed"
        else:
            how = "removed"
        what = "character" if total == 1 else "characters"
        notices.append(
            (
                logging.WARNING,
                f"{field}: {total} {what} that cannot appear in email ({kinds}): {how}; "
                f"check that the text of {field} reads as intended.",
            )
        )


def cap_categories(categories: tuple[str, ...], notices: list[Notice]) -> tuple[str, ...]:
    """At most MAX_CATEGORIES categories, with a warning: a post belongs in a few sections."""
    if len(categories) <= MAX_CATEGORIES:
        return categories
    notices.append(
        (
            logging.WARNING,
            f"categories: {len(categories):,} categories; only the first {MAX_CATEGORIES} are used. "
            "List the few sections the post belongs in.",
        )
    )
    return categories[:MAX_CATEGORIES]


# -- headers -----------------------------------------------------------------------------------

# Bidi embeddings, overrides and isolates, the marks, and the Arabic letter mark: none belongs
# in a subject or a name, and an override can make one read backwards.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_HEADER_DROP = re.compile(
    f"[{_BIDI}\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufdd0-\ufdef\ufeff\ufffe\uffff]"
)
_HEADER_SPACE = re.compile("[\t\n\r\x0b\x0c\x85\u2028\u2029]")


def header_text(value: str) -> str:
    """``value`` as plain text for a header: one line, no controls, no bidi, no encoded-word.

    ``=?`` starts an RFC 2047 encoded-word, which mail clients decode (``=?utf-8?b?QWRtaW4=?=``
    shows as "Admin"), even inside a quoted display name. A space between ``=`` and ``?``
    keeps the text visible as typed and makes it no encoded-word.
    """
    if value.isprintable() and "=?" not in value:  # almost always: nothing to drop (all are
        return " ".join(value.split())  # Cc, Cf, Cs, Cn, Zl or Zp, which are not printable)
    text = _BAD_ASTRAL.sub("", _HEADER_DROP.sub("", _HEADER_SPACE.sub(" ", value)))
    text = " ".join(text.split())
    while "=?" in text:
        text = text.replace("=?", "= ?")
    return text


# -- helpers -----------------------------------------------------------------------------------


_IN_BMP = 1  # a control, C1, BMP non-character or surrogate may be there
_IN_ASTRAL = 2  # an astral non-character (U+1FFFE ...) may be there


def _suspect(text: str) -> int:
    """0 when ``text`` surely has nothing to clean (almost always), cheaply; else where to look.

    One UTF-8 encode and one ``bytes.translate`` (memory speed) instead of a regular expression
    over every character: that was a third of a cold load of 3,500 real posts, and the class of
    astral non-characters alone ten times that.
    """
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return _IN_BMP | _IN_ASTRAL
    found = data.translate(None, _NOT_SUSPECT)
    if not found:
        return 0
    where = 0
    if (
        found.translate(None, _HIGH)  # a C0 control or DEL
        or (b"\xc2" in found and _C1_BYTES.search(data))
        or (b"\xef" in found and _BMP_NONCHARACTER_BYTES.search(data))
    ):
        where = _IN_BMP
    # Astral non-characters (U+1FFFE ... U+10FFFF) end in bytes BF BE or BF BF.
    if found.translate(None, _NOT_ASTRAL_LEAD) and (b"\xbf\xbe" in data or b"\xbf\xbf" in data):
        where |= _IN_ASTRAL
    return where


def _substitute(text: str, where: int, fix: Callable[[re.Match[str]], str]) -> str:
    if where & _IN_BMP:
        text = _BAD.sub(fix, text)
    if where & _IN_ASTRAL:
        text = _BAD_ASTRAL.sub(fix, text)
    return text


def _front_matter_span(text: str) -> tuple[int, int]:
    """Where the front matter is (from its first ``---`` line to its closing one), or (0, 0)."""
    start = len(text) - len(text.lstrip())
    first = _BOUNDARY.match(text, start)
    if first is None:
        return 0, 0
    closing = _BOUNDARY.search(text, first.end())
    return start, closing.start() if closing else len(text)


def _describe(char: str) -> str:
    name = _NAMES.get(char)
    if name is None:
        try:
            name = unicodedata.name(char)
        except ValueError:
            name = "non-character" if _is_noncharacter(char) else "control"
        name = name.lower()
    return f"U+{ord(char):04X} {name}"


def _is_noncharacter(char: str) -> bool:
    code = ord(char)
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE
