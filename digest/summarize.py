"""A post's lead for the email: its first words of prose, as safe inline HTML and as plain text.

Pure (no disk, no clock). The lead is, in order: the ``excerpt`` field, the text before the excerpt
separator (both arrive as ``Post.excerpt``), else the first paragraph(s) of prose. Headings,
images, HTML embeds and comments, Liquid tags, MDX imports and JSX, code, tables, a paragraph that
only repeats the title (or is a bold pseudo-heading, or a ``2013.03.21, Version 0.10.1`` line) are
passed over. A post with no prose at all gets its first list items; one with only a quote gets the
quote. The lead is trimmed to a word budget at a sentence boundary with an ellipsis.

Speed: markdown-it-py costs about a microsecond a character, so whole bodies (up to 850 KB) are
never parsed. A line scanner finds the blocks (CommonMark's block rules, simplified) in the first
few kilobytes, and markdown-it-py parses only the inline Markdown of the paragraphs that make the
lead, cut near the budget first. HTML (raw HTML bodies, inline tags) goes through html.parser.
The HTML and the text lead come from one list of runs, so they always carry the same words.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

from markdown_it import MarkdownIt
from markdown_it.common.utils import normalizeReference, unescapeAll

from digest.model import Item, Post

ELLIPSIS = "…"
_MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
# Characters of body scanned: more only when no lead was found; past the last, list items do.
_SCAN_LIMITS = (4_000, 16_000)
_MAX_INLINE = 20_000  # characters of one paragraph handed to markdown-it when no word cut fits
_SCAN_ATTEMPTS = 3
_MAX_ITEMS = 30

# A run is a piece of text and the inline marks around it, outermost first. A mark is
# ("a", href) - href "" means "a link we do not keep" - or ("em", ""), ("strong", ""), ("code", "").
Mark = tuple[str, str]
Run = tuple[str, tuple[Mark, ...]]
EM: Mark = ("em", "")
STRONG: Mark = ("strong", "")
CODE: Mark = ("code", "")
_ALLOWED_SCHEMES = ("http", "https", "mailto")

# --- cleaning the source -------------------------------------------------------------------------

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_LIQUID_COMMENT = re.compile(r"{%-?\s*comment\s*-?%}.*?(?:{%-?\s*endcomment\s*-?%}|\Z)", re.S)
_LIQUID_CODE = re.compile(r"{%-?\s*(?:end)?highlight\b[^%]*%}")
_LIQUID_TAG = re.compile(r"{%.*?%}", re.S)
_LIQUID_OUT = re.compile(r"{{.*?}}", re.S)
# WordPress imports keep shortcodes: a [caption] wraps an image and its caption, never prose.
_SHORTCODE_BLOCK = re.compile(
    r"\[(caption|embed|gallery|video|audio|youtube)\b[^\]]*\].*?\[/\1\]", re.S | re.I
)
_SHORTCODE = re.compile(r"\[/?(?:caption|embed|gallery|video|audio|youtube|playlist)\b[^\]]*\]", re.I)
_MDX_LINE = re.compile(r"^(?:import|export)\s.*$", re.M)
_MDX_COMMENT = re.compile(r"{/\*.*?\*/}", re.S)
_INVISIBLE = re.compile("[\ufeff\u200b\u200c\u200d\u2060\u00ad]")
_IMAGE = re.compile(r"!\[(?:[^\]\\\n]|\\.)*\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")

# --- block scanner ---------------------------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")
_HR = re.compile(r"^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_SETEXT = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_QUOTE = re.compile(r"^ {0,3}> ?")
_ITEM = re.compile(r"^( {0,3})([-*+]|\d{1,9}[.)])(?:[ \t]+|$)")
_TABLE_DELIM = re.compile(r"^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_DEF = re.compile(r"^ {0,3}\[(?:[^\]\\]|\\.)+\]:")
_BLOCK_TAGS = (
    "address|article|aside|base|basefont|blockquote|body|caption|center|col|colgroup|dd|details|"
    "dialog|dir|div|dl|dt|fieldset|figcaption|figure|footer|form|frame|frameset|h[1-6]|head|"
    "header|hr|html|iframe|legend|li|link|main|menu|menuitem|nav|noframes|ol|optgroup|option|p|"
    "param|search|section|summary|table|tbody|td|tfoot|th|thead|title|tr|track|ul"
)
_HTML_RAW = re.compile(r"^ {0,3}<(script|pre|style|textarea)(?:[\s>]|$)", re.I)
_HTML_BLOCK = re.compile(rf"^ {{0,3}}</?(?:{_BLOCK_TAGS})(?:[\s/>]|$)", re.I)
_HTML_LONE_TAG = re.compile(
    r"^ {0,3}(?:<[A-Za-z][A-Za-z0-9-]*(?:\s+[^<>]*?)?/?>|</[A-Za-z][A-Za-z0-9-]*\s*>)[ \t]*$"
)

# --- text ---------------------------------------------------------------------------------------

_WORD = re.compile(r"\S+")
_SPACE = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")
_BARE_URL = re.compile(r"(?:https?://|www\.)\S+$", re.I)
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
_MD_SPECIAL = re.compile(r"[*_`\[\]<>&\\~]")
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)([^>]*)>")
_REFERENCE = re.compile(r"""^ {0,3}\[((?:[^\]\\\n]|\\.){1,999})\]:[ \t]*\n?[ \t]*(<[^>\n]*>|\S+)""", re.M)


@dataclass
class _Block:
    kind: str  # para, heading, list, code, html, quote, table, hr, def
    text: str = ""
    lines: list[str] = field(default_factory=list)  # a list's lines, split into items on demand

    @property
    def items(self) -> list[str]:
        return _list_items(self.lines, 0)[1][:_MAX_ITEMS]


@dataclass
class _Lead:
    """Paragraphs (as runs) collected so far, and what the trimmer must know about them."""

    parts: list[list[Run]] = field(default_factory=list)
    words: int = 0
    cut: bool = False  # the source was cut short before parsing: more text follows
    done: bool = False  # a stop block or the budget ended the collection
    list_mode: bool = False


def summarize(post: Post, *, url: str, word_budget: int = 70) -> Item:
    """The post as an email item: title, link, and a lead of at most ``word_budget`` words."""
    budget = max(1, word_budget)
    context = _Context(post=post, base=url, budget=budget)
    lead = None
    if post.excerpt:
        lead = _find_lead(post.excerpt, context)
    if lead is None or not lead.parts:
        lead = _find_lead(post.body, context)
    lead_html, lead_text, truncated = _trim(lead, budget) if lead.parts else ("", "", False)
    return Item(
        post_path=post.path,
        title=post.title,
        url=url,
        date=post.date,
        lead_html=lead_html,
        lead_text=lead_text,
        truncated=truncated,
        categories=post.categories,
        source_url=post.source_url,
        source_site=post.source_site,
    )


@dataclass
class _Context:
    post: Post
    base: str
    budget: int
    _env: dict[str, Any] | None = None

    @property
    def env(self) -> dict[str, Any]:
        """Reference-style link definitions of the whole body (they usually sit at the end)."""
        if self._env is None:
            self._env = {"references": _references(self.post.body)}
        return self._env


# --- finding the lead ------------------------------------------------------------------------------


def _find_lead(source: str, ctx: _Context) -> _Lead:
    """Scan a growing head of the text until the lead is complete (or the text ends)."""
    lead = _Lead()
    limit = _SCAN_LIMITS[0]
    for attempt in range(_SCAN_ATTEMPTS):
        head, whole = _head(source, limit)
        # On the last attempt, settle for what the head holds (fallbacks included).
        lead = _collect(_clean(head, ctx.post.path), ctx, whole or attempt == _SCAN_ATTEMPTS - 1)
        if lead.done or whole or lead.words >= ctx.budget:
            break
        # A first block longer than the limit (a 300 KB inline image) must not use it all up.
        limit = max(len(head) + _SCAN_LIMITS[0], _SCAN_LIMITS[1])
    return lead


def _head(text: str, limit: int) -> tuple[str, bool]:
    """The first ``limit`` characters, extended to the end of that paragraph."""
    if len(text) <= limit:
        return text, True
    end = text.find("\n\n", limit)
    if end < 0:
        return text, True
    return text[:end], False


def _clean(text: str, path: str) -> str:
    """Drop what is never prose: comments, Liquid, MDX imports, invisible characters."""
    if "<!--" in text:
        text = _COMMENT.sub("", text)
    if "{%" in text:
        text = _LIQUID_COMMENT.sub("", text)
        text = _LIQUID_CODE.sub("\n```\n", text)
        text = _outside_last(text, "%}", _LIQUID_TAG)
    if "{{" in text:
        text = _outside_last(text, "}}", _LIQUID_OUT)
    if "[/" in text or "[gallery" in text or "[youtube" in text or "[embed" in text:
        text = _SHORTCODE_BLOCK.sub("", text)
        text = _SHORTCODE.sub("", text)
    if path.lower().endswith(".mdx"):
        text = _MDX_LINE.sub("", text)
        text = _outside_last(text, "*/}", _MDX_COMMENT)
    return _INVISIBLE.sub("", text) if _INVISIBLE.search(text) else text


def _outside_last(text: str, closer: str, pattern: re.Pattern[str]) -> str:
    """``pattern.sub("", text)`` for a lazy ``opener.*?closer`` pattern, in linear time.

    Past the last closer no match can end, but the regex would still scan from every opener
    there to the end of the text: 50,000 unclosed ``{%`` took 31 s (issue 15). The result is
    the same.
    """
    end = text.rfind(closer) + len(closer) if closer in text else 0
    return pattern.sub("", text[:end]) + text[end:]


def _collect(text: str, ctx: _Context, whole: bool) -> _Lead:
    """Paragraphs of prose from the top; else the first list's items; else a quote's text."""
    lead = _Lead()
    first_list: _Block | None = None
    first_quote: _Block | None = None
    for block in _blocks(text):
        if block.kind == "para":
            _add_paragraph(lead, block.text, ctx)
        elif block.kind == "html":
            for kind, runs in _html_blocks(block.text, ctx.base):
                if kind == "para":
                    _add_runs(lead, runs, ctx)
                elif kind == "li" and first_list is None and not lead.parts:
                    first_list = _Block("html-list", block.text)
                elif kind != "skip" and lead.parts:
                    lead.done = True
                if lead.done:
                    break
        elif block.kind == "def":
            continue
        elif lead.parts:
            if block.kind == "list" and _ends_with_colon(lead):
                _add_items(lead, block, ctx)
            lead.done = True
        elif block.kind == "list" and first_list is None:
            first_list = block
        elif block.kind == "quote" and first_quote is None:
            first_quote = block
        if lead.done:
            return lead
    if lead.parts or not whole:
        return lead
    if first_list is not None:
        lead.list_mode = True
        if first_list.kind == "html-list":
            for kind, runs in _html_blocks(first_list.text, ctx.base):
                if kind == "li" and not lead.done:
                    _add_runs(lead, runs, ctx, item=True)
        else:
            _add_items(lead, first_list, ctx)
    elif first_quote is not None:
        for block in _blocks(first_quote.text):
            if block.kind == "para":
                _add_paragraph(lead, block.text, ctx)
            if lead.done:
                break
    lead.done = True
    return lead


def _ends_with_colon(lead: _Lead) -> bool:
    last = "".join(text for text, _ in lead.parts[-1]).rstrip()
    return last.endswith(":")


def _add_items(lead: _Lead, block: _Block, ctx: _Context) -> None:
    lead.list_mode = True
    for item in block.items:
        if lead.done:
            break
        _add_paragraph(lead, item, ctx, item=True)


def _add_paragraph(lead: _Lead, source: str, ctx: _Context, *, item: bool = False) -> None:
    if _mostly_urls(source):
        return  # download links, a list of addresses: not something to read
    source, cut = _cut_source(source, ctx.budget - lead.words)
    runs = _inline_runs(source, ctx)
    if _add_runs(lead, runs, ctx, item=item) and cut:
        lead.cut = True
        lead.done = True


def _add_runs(lead: _Lead, runs: list[Run], ctx: _Context, *, item: bool = False) -> bool:
    """Add a paragraph if it is prose; True if it was added."""
    runs = _normalise(runs)
    text = "".join(t for t, _ in runs)
    if not _is_prose(text, runs, ctx.post.title, item=item):
        return False
    lead.parts.append(runs)
    lead.words += len(text.split())
    if lead.words >= ctx.budget:
        lead.done = True
    return True


def _mostly_urls(source: str) -> bool:
    """Bare addresses (not link text) make up a sixth or more of the words: download lists."""
    if "http" not in source:
        return False
    words = source.split()
    urls = sum(1 for w in words if w.startswith(("http://", "https://", "<http")))
    return urls >= 1 and urls * 6 >= len(words)


def _is_prose(text: str, runs: list[Run], title: str, *, item: bool) -> bool:
    """Worth reading as a lead: has letters, is not a bare link, a title echo or a pseudo-heading."""
    if not _LETTER.search(text) or _BARE_URL.match(text):
        return False
    if item:
        return True
    words = text.split()
    ends_sentence = text.rstrip().endswith((".", "!", "?", "…", '."', ".”"))
    if _is_title_echo(text, words, title, ends_sentence):
        return False
    if not ends_sentence and len(words) <= 12:
        emphasised = all(not t.strip() or any(m in (EM, STRONG) for m in marks) for t, marks in runs)
        if emphasised:
            return False  # a bold or italic line standing in for a heading
        if text.rstrip().endswith(":") and len(words) <= 3:
            return False  # a label for what follows ("Commits:")
    return True


def _norm_words(text: str) -> list[str]:
    return re.sub(r"[\W_]+", " ", text.casefold()).split()


def _is_title_echo(text: str, words: list[str], title: str, ends_sentence: bool) -> bool:
    """The title again, or a short line made of title words and numbers (dates, versions)."""
    if len(words) > 12 and len(words) > len(title.split()) + 3:
        return False
    mine = _norm_words(text)
    theirs = _norm_words(title)
    if not mine or mine == theirs:
        return bool(mine)
    if ends_sentence or len(words) > 12:
        return False
    known = set(theirs)
    matched = sum(1 for w in mine if w in known or any(c.isdigit() for c in w))
    return matched / len(mine) >= 0.6


# --- blocks --------------------------------------------------------------------------------------------


def _blocks(text: str) -> Iterator[_Block]:
    """CommonMark's block structure, simplified to what choosing a lead needs."""
    lines = text.split("\n")
    n = len(lines)
    i = 0
    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line[0].isalpha():  # most lines: prose, no block marker to look for
            start = i
            i, kind = _paragraph_end(lines, i)
            yield _Block(kind, "\n".join(lines[start:i]))
            continue
        fence = _FENCE.match(line)
        if fence:
            marker = fence.group(1)
            i += 1
            while i < n and not lines[i].lstrip().startswith(marker[0] * len(marker)):
                i += 1
            i += 1
            yield _Block("code")
            continue
        if _ATX.match(line):
            i += 1
            yield _Block("heading", line)
            continue
        if _HR.match(line):
            i += 1
            yield _Block("hr")
            continue
        if line.startswith(("    ", "\t")):
            while i < n and (not lines[i].strip() or lines[i].startswith(("    ", "\t"))):
                i += 1
            yield _Block("code")
            continue
        if _QUOTE.match(line):
            inner = []
            while i < n and lines[i].strip():
                inner.append(_QUOTE.sub("", lines[i], count=1))
                i += 1
            yield _Block("quote", "\n".join(inner))
            continue
        if _ITEM.match(line):
            start = i
            i = _list_end(lines, i)
            yield _Block("list", lines=lines[start:i])
            continue
        raw = _HTML_RAW.match(line)
        if raw:
            closing = f"</{raw.group(1).lower()}>"
            start = i
            while i < n and closing not in lines[i].lower():
                i += 1
            i += 1
            yield _Block("code" if raw.group(1).lower() == "pre" else "html", "\n".join(lines[start:i]))
            continue
        if _HTML_BLOCK.match(line) or _HTML_LONE_TAG.match(line):
            start = i
            while i < n and lines[i].strip():
                i += 1
            yield _Block("html", "\n".join(lines[start:i]))
            continue
        if _DEF.match(line):
            while i < n and lines[i].strip():
                i += 1
            yield _Block("def")
            continue
        start = i
        i, kind = _paragraph_end(lines, i)
        yield _Block(kind, "\n".join(lines[start:i]))


def _paragraph_end(lines: list[str], i: int) -> tuple[int, str]:
    """Where the paragraph starting at line i ends, and whether it turned out a heading or table."""
    n = len(lines)
    first = i
    i += 1
    while i < n:
        nxt = lines[i]
        if not nxt.strip():
            break
        if _SETEXT.match(nxt):
            return i + 1, "heading"
        if i == first + 1 and "|" in lines[first] and _TABLE_DELIM.match(nxt):
            while i < n and lines[i].strip():
                i += 1
            return i, "table"
        if _interrupts(nxt):
            break
        i += 1
    return i, "para"


def _interrupts(line: str) -> bool:
    """Can this line end a paragraph without a blank line before it?"""
    first = line[0]
    if first.isalpha() or first in "\"'(":
        return False
    if _ATX.match(line) or _FENCE.match(line) or _QUOTE.match(line) or _HR.match(line):
        return True
    if _HTML_RAW.match(line) or _HTML_BLOCK.match(line):
        return True
    item = _ITEM.match(line)
    if item:
        marker = item.group(2)
        return (not marker[0].isdigit() or marker[:-1] == "1") and bool(line[item.end() :].strip())
    return False


def _list_end(lines: list[str], i: int) -> int:
    """Index after the list starting at line i (items, continuations, nested lists)."""
    n = len(lines)
    i += 1
    while i < n:
        line = lines[i]
        if not line.strip():
            j = i + 1
            while j < n and not lines[j].strip():
                j += 1
            if j < n and (lines[j][0] in " \t" or _ITEM.match(lines[j])):
                i = j
                continue
            return j
        if line[0] in " \t" or _ITEM.match(line) or not _interrupts(line):
            i += 1
            continue
        return i
    return i


def _list_items(lines: list[str], i: int) -> tuple[int, list[str]]:
    """Each item's first paragraph, for a list starting at line i; returns the next line too."""
    n = len(lines)
    items: list[str] = []
    current: list[str] | None = None
    open_para = True
    while i < n:
        line = lines[i]
        if not line.strip():
            j = i + 1
            while j < n and not lines[j].strip():
                j += 1
            if j < n and (_ITEM.match(lines[j]) or lines[j].startswith(("  ", "\t"))):
                open_para = False
                i = j
                continue
            i = j
            break
        item = _ITEM.match(line)
        if item and len(item.group(1)) <= 1:
            if current:
                items.append("\n".join(current))
            current = [line[item.end() :]]
            open_para = True
        elif open_para and current is not None:
            stripped = line.strip()
            if _ITEM.match(stripped) or _FENCE.match(stripped) or _ATX.match(stripped):
                open_para = False
            elif not line.startswith((" ", "\t")) and _interrupts(line):
                break
            else:
                current.append(stripped)
        elif not line.startswith((" ", "\t")):
            break
        i += 1
    if current:
        items.append("\n".join(current))
    return i, [text for text in items if text.strip()]


# --- inline Markdown -----------------------------------------------------------------------------------


def _cut_source(source: str, need: int) -> tuple[str, bool]:
    """Cut Markdown just after ``need + 1`` words, outside links and code spans.

    Parsing costs about a microsecond a character, and words past the budget are never shown:
    the extra word only tells the trimmer that more follows. Emphasis left open is closed.
    """
    source = _IMAGE.sub(" ", source) if "![" in source else source
    need = max(need, 0) + 1
    for count, match in enumerate(_WORD.finditer(source), 1):
        if count <= need:
            continue
        head = source[: match.start()].rstrip()
        if (
            head.count("[") == head.count("]")
            and head.count("(") == head.count(")")
            and head.count("`") % 2 == 0
            and head.count("<") == head.count(">")
        ):
            for marker in ("**", "__", "~~"):
                if head.count(marker) % 2:
                    head += marker
            return head, True
        if count > need + 40:
            break
    if len(source) > _MAX_INLINE:  # no cut found in a wall of text (one 1 MB "word" of `_a_a`):
        return source[:_MAX_INLINE], True  # parsing all of it took seconds (issue 15)
    return source, False


def _inline_runs(source: str, ctx: _Context) -> list[Run]:
    if not _MD_SPECIAL.search(source):
        return [(source, ())]  # plain words: nothing for markdown-it to find
    env = ctx.env if "[" in source else {}
    tokens = _MD.parseInline(source, env)
    children = tokens[0].children if tokens and tokens[0].children else []
    return _runs_from_tokens(children, ctx.base)


def _runs_from_tokens(children: list[Any], base: str) -> list[Run]:
    runs: list[Run] = []
    marks: list[Mark] = []
    hidden = 0  # inside ~~strike~~ (struck words would read as meant)
    for token in children:
        kind = token.type
        if kind == "text":
            if not hidden:
                runs.append((token.content, tuple(marks)))
        elif kind in ("softbreak", "hardbreak"):
            runs.append((" ", tuple(marks)))
        elif kind == "code_inline":
            if not hidden:
                runs.append((token.content, (*marks, CODE)))
        elif kind == "em_open":
            marks.append(EM)
        elif kind == "strong_open":
            marks.append(STRONG)
        elif kind == "em_close":
            _pop(marks, "em")
        elif kind == "strong_close":
            _pop(marks, "strong")
        elif kind == "s_open":
            hidden += 1
        elif kind == "s_close":
            hidden = max(0, hidden - 1)
        elif kind == "link_open":
            marks.append(("a", _safe_href(str(token.attrGet("href") or ""), base)))
        elif kind == "link_close":
            _pop(marks, "a")
        elif kind == "html_inline":
            hidden = _html_tag(token.content, marks, runs, hidden, base)
        # image: the alt text is not prose; anything else carries no words
    return runs


def _pop(marks: list[Mark], kind: str) -> None:
    for index in range(len(marks) - 1, -1, -1):
        if marks[index][0] == kind:
            del marks[index]
            return


def _html_tag(tag: str, marks: list[Mark], runs: list[Run], hidden: int, base: str) -> int:
    """An inline HTML tag inside Markdown: keep links and emphasis, drop the rest."""
    match = _TAG.match(tag)
    if match is None:
        return hidden
    closing, name = match.group(1) == "/", match.group(2).lower()
    mark = _INLINE_MARKS.get(name)
    if name == "br":
        runs.append((" ", tuple(marks)))
    elif name in ("s", "del", "strike"):
        hidden = max(0, hidden - 1) if closing else hidden + 1
    elif name == "a":
        if closing:
            _pop(marks, "a")
        else:
            href = _HREF.search(match.group(3))
            value = html.unescape(next(g for g in href.groups() if g is not None)) if href else ""
            marks.append(("a", _safe_href(value, base)))
    elif mark is not None:
        if closing:
            _pop(marks, mark[0])
        elif not match.group(3).rstrip().endswith("/"):
            marks.append(mark)
    return hidden


_INLINE_MARKS: dict[str, Mark] = {
    "em": EM,
    "i": EM,
    "cite": EM,
    "strong": STRONG,
    "b": STRONG,
    "code": CODE,
    "kbd": CODE,
    "tt": CODE,
    "samp": CODE,
}


def _safe_href(href: str, base: str) -> str:
    """Absolute http(s) or mailto links only; relative ones resolve against the post's URL."""
    href = href.strip().replace(" ", "%20")
    if not href:
        return ""
    try:
        absolute = urljoin(base, href)
        scheme = urlsplit(absolute).scheme.lower()
    except ValueError:
        return ""
    return absolute if scheme in _ALLOWED_SCHEMES else ""


def _references(body: str) -> dict[str, dict[str, str]]:
    """``[label]: url`` definitions anywhere in the body, first one wins (as in CommonMark)."""
    refs: dict[str, dict[str, str]] = {}
    if "]:" not in body:
        return refs
    for match in _REFERENCE.finditer(body):
        label = normalizeReference(match.group(1))
        dest = match.group(2)
        if dest.startswith("<") and dest.endswith(">"):
            dest = dest[1:-1]
        href = _MD.normalizeLink(unescapeAll(dest))
        if label and label not in refs and _MD.validateLink(href):
            refs[label] = {"href": href, "title": ""}
    return refs


# --- raw HTML --------------------------------------------------------------------------------------


class _HtmlBlocks(HTMLParser):
    """Paragraphs, list items and headings of a raw HTML block, as runs."""

    _SKIP = frozenset(
        [
            "script",
            "style",
            "pre",
            "table",
            "figure",
            "iframe",
            "video",
            "audio",
            "object",
            "embed",
            "noscript",
            "svg",
            "textarea",
            "select",
            "button",
            "template",
            "head",
            "title",
            "form",
            "math",
            "canvas",
        ]
    )
    _BREAKS = frozenset(
        [
            "p",
            "div",
            "li",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "blockquote",
            "section",
            "article",
            "header",
            "footer",
            "ul",
            "ol",
            "dl",
            "dd",
            "dt",
            "aside",
            "nav",
            "main",
            "center",
            "details",
            "summary",
            "hr",
        ]
    )

    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.blocks: list[tuple[str, list[Run]]] = []
        self.runs: list[Run] = []
        self.marks: list[Mark] = []
        self.context: list[str] = []
        self.skip = 0
        self.hidden = 0

    def flush(self) -> None:
        if any(text.strip() for text, _ in self.runs):
            kind = "para"
            if any(c in ("h1", "h2", "h3", "h4", "h5", "h6") for c in self.context):
                kind = "heading"
            elif "li" in self.context:
                kind = "li"
            elif "blockquote" in self.context:
                kind = "skip"
            self.blocks.append((kind, self.runs))
        self.runs = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif tag in self._BREAKS:
            self.flush()
            if tag != "hr":
                self.context.append(tag)
        elif tag == "br":
            self.runs.append((" ", tuple(self.marks)))
        elif tag in ("s", "del", "strike"):
            self.hidden += 1
        elif tag == "a":
            href = next((v for k, v in attrs if k == "href" and v), "")
            self.marks.append(("a", _safe_href(href, self.base)))
        elif tag in _INLINE_MARKS:
            self.marks.append(_INLINE_MARKS[tag])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.runs.append((" ", tuple(self.marks)))
        elif tag in self._BREAKS:
            self.flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self._BREAKS:
            self.flush()
            if tag in self.context:
                while self.context and self.context.pop() != tag:
                    pass
        elif tag in ("s", "del", "strike"):
            self.hidden = max(0, self.hidden - 1)
        elif tag == "a":
            _pop(self.marks, "a")
        elif tag in _INLINE_MARKS:
            _pop(self.marks, _INLINE_MARKS[tag][0])

    def handle_data(self, data: str) -> None:
        if not self.skip and not self.hidden:
            self.runs.append((data, tuple(self.marks)))


def _html_blocks(source: str, base: str) -> list[tuple[str, list[Run]]]:
    parser = _HtmlBlocks(base)
    try:
        parser.feed(source)
        parser.close()
    except Exception:  # html.parser is lenient; be safe with anything it still rejects
        return []
    parser.flush()
    return parser.blocks


# --- trimming and output -------------------------------------------------------------------------------


def _normalise(runs: list[Run]) -> list[Run]:
    """One space between words, none at the ends, across run boundaries too."""
    result: list[Run] = []
    space_before = True
    for text, marks in runs:
        if "  " in text or "\n" in text or "\t" in text or "\r" in text or "\xa0" in text:
            text = _SPACE.sub(" ", text)
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


def _join(lead: _Lead) -> tuple[list[Run], list[int]]:
    """All parts as one run list, and the offsets where a part (paragraph or item) ends."""
    runs: list[Run] = []
    ends: list[int] = []
    length = 0
    for index, part in enumerate(lead.parts):
        if index:
            previous = "".join(t for t, _ in lead.parts[index - 1]).rstrip()
            separator = " " if not lead.list_mode or previous.endswith((".", "!", "?", ";", ":")) else "; "
            runs.append((separator, ()))
            length += len(separator)
        runs.extend(part)
        length += sum(len(t) for t, _ in part)
        ends.append(length)
    return runs, ends


def _trim(lead: _Lead, budget: int) -> tuple[str, str, bool]:
    runs, ends = _join(lead)
    text = "".join(t for t, _ in runs)
    words = list(_WORD.finditer(text))
    if len(words) <= budget and not lead.cut:
        return _render(runs, len(text)), text, False
    cut = _sentence_cut(text, words, ends, budget)
    if cut is None:
        cut = words[min(budget, len(words)) - 1].end()
        kept = text[:cut].rstrip(",;:—–- ")
        cut = len(kept)
        suffix = ELLIPSIS
    else:
        suffix = " " + ELLIPSIS
    return _render(runs, cut) + suffix, text[:cut] + suffix, True


def _sentence_cut(text: str, words: list[re.Match[str]], ends: list[int], budget: int) -> int | None:
    """The end of the last whole sentence (or paragraph/item) within the budget."""
    if len(words) <= budget:
        return len(text)
    limit = words[budget - 1].end()  # the budget-th word ends here; a cut may not pass it
    best: int | None = None
    for match in _SENTENCE_END.finditer(text, 0, limit + 1):
        if match.end() > limit:
            break
        if _is_sentence_end(text, match):
            best = match.end()
    for end in ends:
        if end <= limit and (best is None or end > best):
            best = end
    return best


def _is_sentence_end(text: str, match: re.Match[str]) -> bool:
    rest = text[match.end() :].lstrip()
    if rest and not (rest[0].isupper() or rest[0].isdigit() or rest[0] in "\"'“‘([*_"):
        return False
    if text[match.start()] != ".":
        return True
    start = text.rfind(" ", 0, match.start()) + 1
    word = text[start : match.start()].lower().lstrip("(\"'“‘")
    return not (word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()))


def _render(runs: list[Run], limit: int) -> str:
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
