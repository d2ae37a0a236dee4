"""A lead's parts, trimmed to a word budget, as safe HTML and as plain text.

Parts are paragraphs ("p") and list items ("li"). One paragraph renders as inline HTML (as
before); more parts render as ``<p>`` and ``<ul>`` blocks, and in text as paragraphs separated
by a blank line, list items as "- item". The text part keeps each link's target after its
words ("plugin API <https://...>") and inline code in backticks.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from digest.lead.inline import CODE, Mark, Run

ELLIPSIS = "…"
_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "st",
        "jr",
        "sr",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "eg",
        "ie",
        "inc",
        "ltd",
        "co",
        "corp",
        "no",
        "nos",
        "fig",
        "approx",
        "u.s",
        "u.k",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    ]
)
MAX_ITEM_WORDS = 25
_NO_STOP = re.compile(r"[^\W_]\)?$")


@dataclass
class Lead:
    """Parts collected so far: ("p" | "li", runs); more_items when a list went on past the shown."""

    parts: list[tuple[str, list[Run]]] = field(default_factory=list)
    more_items: bool = False
    cut: bool = False  # the source of the last part was cut before parsing: more text follows
    fallback: bool = False  # only a paragraph passed over (a pointer, a notice) was found

    @property
    def words(self) -> int:
        return sum(len(plain(runs).split()) for _, runs in self.parts)


def plain(runs: list[Run]) -> str:
    return "".join(text for text, _ in runs)


def normalise(runs: list[Run]) -> list[Run]:
    """One space between words, none at the ends, across run boundaries too."""
    result: list[Run] = []
    space_before = True
    for text, marks in runs:
        if "  " in text or "\n" in text or "\t" in text or "\r" in text or "\xa0" in text:
            text = re.sub(r"\s+", " ", text)
        if space_before:
            text = text.lstrip(" ")
        if not text:
            continue
        result.append((text, marks))
        space_before = text.endswith(" ")
    while result:
        text, marks = result[-1]
        stripped = text.rstrip(" ")
        if stripped:
            result[-1] = (stripped, marks)
            break
        result.pop()
    return result


# Link text that only points at a commit, an issue or a person: "a9e551a1", "#3220", "@bep".
_REFERENCE = re.compile(r"^(?:[0-9a-f]{7,40}|#\d+|GH-\d+|@[\w-]+|[\w.-]+/[\w.-]+#\d+)$", re.I)


def drop_reference_tail(runs: list[Run]) -> list[Run]:
    """A changelog line's commit, issue and author links (at either end) are not words to read."""
    runs = _drop_reference_head(runs)
    end = len(runs)
    stop = ""
    if end and not any(k == "a" for k, _ in runs[-1][1]) and runs[-1][0].strip() in (".", "!", ")."):
        stop = runs[-1][0].strip()[-1]
        end -= 1
    found = False
    while end:
        text, marks = runs[end - 1]
        linked = any(k == "a" for k, _ in marks)
        if (linked and _REFERENCE.match(text.strip())) or (not linked and not text.strip(" ()[],")):
            found = found or (linked and not text.strip().startswith("@"))  # "by @evanw." is prose
            end -= 1
            continue
        break
    if not found or end == 0:
        return runs
    kept = normalise(runs[:end])
    text, marks = kept[-1]
    kept[-1] = (text.rstrip(" ([{,;:—–-"), marks)  # "option (" once "#1037)" is gone
    kept = [run for run in kept if run[0]]
    return [*kept, (stop, ())] if stop else kept


def _drop_reference_head(runs: list[Run]) -> list[Run]:
    """ "[`63563f8a7a`] - doc: rename ..." -> "doc: rename ..."."""
    start = 0
    found = False
    while start < len(runs):
        text, marks = runs[start]
        linked = any(k == "a" for k, _ in marks)
        if linked and _REFERENCE.match(text.strip()) and not text.strip().startswith("@"):
            found = True
        elif linked or text.strip(" ()[],-–—:"):
            break
        start += 1
    if not found or start == len(runs):
        return runs
    return normalise(runs[start:])


def is_reference(text: str) -> bool:
    return bool(_REFERENCE.match(text.strip()))


def cut_runs(runs: list[Run], start: int, end: int | None = None) -> list[Run]:
    """The runs covering characters start..end of their text."""
    out: list[Run] = []
    pos = 0
    for text, marks in runs:
        lo, hi = pos, pos + len(text)
        pos = hi
        a, b = max(lo, start), hi if end is None else min(hi, end)
        if a < b:
            out.append((text[a - lo : b - lo], marks))
    return normalise(out)


def render(lead: Lead, budget: int) -> tuple[str, str, bool]:
    """(html, text, truncated) for the lead, at most ``budget`` words (list items capped too)."""
    html_parts: list[tuple[str, str]] = []
    text_parts: list[str] = []
    left = max(1, budget)
    truncated = lead.cut or lead.more_items
    for index, (kind, runs) in enumerate(lead.parts):
        if left <= 0:
            truncated = True
            break
        limit_words = min(left, MAX_ITEM_WORDS) if kind == "li" else left
        text = plain(runs)
        words = list(_WORD.finditer(text))
        suffix = ""
        limit = len(text)
        if len(words) > limit_words or (lead.cut and index == len(lead.parts) - 1):
            limit, suffix = _cut_point(text, words, limit_words)
            truncated = True
        elif kind == "p" and _NO_STOP.search(text):
            suffix = "."  # an editor ends the sentence the author left open
        left -= min(len(words), limit_words)
        html_parts.append((kind, _html(runs, limit) + suffix))
        text_parts.append(("- " if kind == "li" else "") + _text(runs, limit) + suffix)
        if suffix and kind == "p":
            break
    if lead.more_items and html_parts and html_parts[-1][0] == "li":
        html_parts.append(("li", ELLIPSIS))
        text_parts.append("- " + ELLIPSIS)
    if len(html_parts) == 1 and html_parts[0][0] == "p":
        return html_parts[0][1], text_parts[0], truncated
    return _blocks_html(html_parts), "\n\n".join(text_parts), truncated


def _blocks_html(parts: list[tuple[str, str]]) -> str:
    out: list[str] = []
    in_list = False
    for kind, fragment in parts:
        if kind == "li" and not in_list:
            out.append("<ul>")
            in_list = True
        elif kind == "p" and in_list:
            out.append("</ul>")
            in_list = False
        out.append(f"<li>{fragment}</li>" if kind == "li" else f"<p>{fragment}</p>")
    if in_list:
        out.append("</ul>")
    return "".join(out)


def _cut_point(text: str, words: list[re.Match[str]], budget: int) -> tuple[int, str]:
    """Where to cut: the last sentence end within the budget, else the budget-th word."""
    if len(words) <= budget:
        return len(text), " " + ELLIPSIS
    limit = words[budget - 1].end()
    best: int | None = None
    for match in _SENTENCE_END.finditer(text, 0, limit + 1):
        if match.end() > limit:
            break
        if _is_sentence_end(text, match):
            best = match.end()
    if best is not None:
        return best, " " + ELLIPSIS
    return len(text[:limit].rstrip(",;:—–- ")), ELLIPSIS


def _is_sentence_end(text: str, match: re.Match[str]) -> bool:
    rest = text[match.end() :].lstrip()
    if rest and not (rest[0].isupper() or rest[0].isdigit() or rest[0] in "\"'“‘([*_"):
        return False
    if text[match.start()] != ".":
        return True
    start = text.rfind(" ", 0, match.start()) + 1
    word = text[start : match.start()].lower().lstrip("(\"'“‘")
    return not (word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()))


def last_sentence_start(text: str) -> int:
    """Where the last sentence of ``text`` starts (0 when it is the only one)."""
    best = 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() < len(text.rstrip()) and _is_sentence_end(text, match):
            best = match.end()
    return best


def _html(runs: list[Run], limit: int) -> str:
    """Runs as inline HTML, up to ``limit`` characters of text; every tag closed."""
    out: list[str] = []
    open_marks: tuple[Mark, ...] = ()
    used = 0
    for text, marks in runs:
        if used >= limit:
            break
        text = text[: limit - used]
        used += len(text)
        common = 0
        while common < min(len(open_marks), len(marks)) and open_marks[common] == marks[common]:
            common += 1
        out.extend(_close(mark) for mark in reversed(open_marks[common:]))
        out.extend(_open(mark) for mark in marks[common:])
        open_marks = marks
        out.append(html.escape(text, quote=False))
    out.extend(_close(mark) for mark in reversed(open_marks))
    return "".join(out).strip()


def _text(runs: list[Run], limit: int) -> str:
    """Runs as plain text: code in backticks, each kept link's target after its words."""
    out: list[str] = []
    used = 0
    link = ""
    link_words: list[str] = []
    shown: set[str] = set()  # a target is written once per paragraph
    for text, marks in runs:
        if used >= limit:
            break
        text = text[: limit - used]
        used += len(text)
        href = next((h for k, h in marks if k == "a"), "")
        if href != link:
            out.append(_target(link, link_words, shown))
            link, link_words = href, []
        piece = f"`{text}`" if CODE in marks and text.strip() else text
        out.append(piece)
        if href:
            link_words.append(text)
    out.append(_target(link, link_words, shown))
    return "".join(out).strip()


def _target(href: str, words: list[str], shown: set[str]) -> str:
    if not href or href in shown:
        return ""
    shown.add(href)
    label = "".join(words).strip()
    bare = re.sub(r"^(?:https?://|mailto:)", "", href).rstrip("/")
    if label.rstrip("/") in (href.rstrip("/"), bare) or label.startswith("@"):
        return ""
    return f" <{href}>"


def _open(mark: Mark) -> str:
    kind, href = mark
    if kind == "a":
        return f'<a href="{html.escape(href, quote=True)}">' if href else ""
    return f"<{kind}>"


def _close(mark: Mark) -> str:
    kind, href = mark
    if kind == "a":
        return "</a>" if href else ""
    return f"</{kind}>"
