"""Inline Markdown and raw HTML as *runs*: pieces of text with the marks around them.

A run is ``(text, marks)``; a mark is ``("a", href)`` (href "" = a link we do not keep),
``("em", "")``, ``("strong", "")`` or ``("code", "")``, outermost first. The HTML and the text
lead are both made from one list of runs, so they always carry the same words.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

from markdown_it import MarkdownIt
from markdown_it.common.utils import normalizeReference, unescapeAll
from markdown_it.token import Token

Mark = tuple[str, str]
Run = tuple[str, tuple[Mark, ...]]
EM: Mark = ("em", "")
STRONG: Mark = ("strong", "")
CODE: Mark = ("code", "")
ALLOWED_SCHEMES = ("http", "https", "mailto")
# A link whose target could not be resolved (a Liquid `{% link %}` to a page outside the folder):
# the text stays, the link goes.
UNRESOLVED = "digest-unresolved:"

MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
_MD_SPECIAL = re.compile(r"[*_`\[\]<>&\\~]")
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)([^>]*)>")
_REFERENCE = re.compile(r"""^ {0,3}\[((?:[^\]\\\n]|\\.){1,999})\]:[ \t]*\n?[ \t]*(<[^>\n]*>|\S+)""", re.M)
# A reference link with no definition stays literal in CommonMark: keep its text only.
_UNDEFINED_REF = re.compile(r"\[((?:[^\[\]\\]|\\.)+)\]\[[^\[\]]*\]")
# A link CommonMark could not read (spaces in the address, Markdown inside an HTML block).
_LITERAL_LINK = re.compile(r"!?\[([^\[\]\n]*)\]\([^()\n]*\)")
# Emphasis delimiters CommonMark could not pair (a cut, a typo) touch a word on one side only.
_LONE_DELIMITER = re.compile(
    r"(?<![\w*])[*_]{1,3}(?=\w)|(?<=[\w.,!?:;)\]])[*_]{1,3}(?![\w*])|(?:(?<=\s)|^)[*_]{2,}(?=\s|$)"
)
_EMOJI_CODE = re.compile(r":[a-z0-9_+\-]+:")
_SCHEMELESS = re.compile(r"^(?:www\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*\.([a-z]{2,12})(?:[/?#:]|$)", re.I)
_FILE_EXTENSIONS = frozenset(
    [
        "html",
        "htm",
        "md",
        "markdown",
        "mdx",
        "php",
        "asp",
        "aspx",
        "jsp",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "svg",
        "webp",
        "pdf",
        "txt",
        "xml",
        "json",
        "js",
        "css",
        "zip",
        "gz",
        "tgz",
        "xz",
        "rpm",
        "deb",
        "iso",
        "exe",
        "msi",
        "dmg",
        "sh",
        "py",
        "rb",
        "go",
        "rs",
        "ts",
        "yaml",
        "yml",
        "toml",
    ]
)
INLINE_MARKS: dict[str, Mark] = {
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


def inline_runs(source: str, env: dict[str, Any], base: str) -> list[Run]:
    """One paragraph's inline Markdown as runs, markup leftovers removed."""
    if not _MD_SPECIAL.search(source):
        return tidy([(source, ())])  # plain words: nothing for markdown-it to find
    tokens = MD.parseInline(source, env if "[" in source else {})
    children = tokens[0].children if tokens and tokens[0].children else []
    return tidy(runs_from_tokens(children, base))


def runs_from_tokens(children: list[Token], base: str) -> list[Run]:
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
            pop(marks, "em")
        elif kind == "strong_close":
            pop(marks, "strong")
        elif kind == "s_open":
            hidden += 1
        elif kind == "s_close":
            hidden = max(0, hidden - 1)
        elif kind == "link_open":
            marks.append(("a", safe_href(str(token.attrGet("href") or ""), base)))
        elif kind == "link_close":
            pop(marks, "a")
        elif kind == "html_inline":
            hidden = _html_tag(token.content, marks, runs, hidden, base)
        # image: the alt text is not prose; anything else carries no words
    return runs


def tidy(runs: list[Run]) -> list[Run]:
    """Merge runs with the same marks, then drop what CommonMark left as literal markup."""
    merged: list[Run] = []
    for text, marks in runs:
        if merged and merged[-1][1] == marks:
            merged[-1] = (merged[-1][0] + text, marks)
        else:
            merged.append((text, marks))
    out: list[Run] = []
    for text, marks in merged:
        if CODE not in marks:
            if "][" in text:
                text = _UNDEFINED_REF.sub(r"\1", text)
            if "](" in text:
                text = _LITERAL_LINK.sub(lambda m: "" if m.group(0).startswith("!") else m.group(1), text)
            if "*" in text or "_" in text:
                text = _LONE_DELIMITER.sub("", text)
            if ":" in text and _EMOJI_CODE.search(text):
                import emoji  # 0.1 s to import its tables: only when a post has an emoji code

                text = emoji.emojize(text, language="alias")
        if text:
            out.append((text, marks))
    return out


def pop(marks: list[Mark], kind: str) -> None:
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
    mark = INLINE_MARKS.get(name)
    if name == "br":
        runs.append((" ", tuple(marks)))
    elif name in ("s", "del", "strike"):
        hidden = max(0, hidden - 1) if closing else hidden + 1
    elif name == "a":
        if closing:
            pop(marks, "a")
        else:
            href = _HREF.search(match.group(3))
            value = html.unescape(next(g for g in href.groups() if g is not None)) if href else ""
            marks.append(("a", safe_href(value, base)))
    elif mark is not None:
        if closing:
            pop(marks, mark[0])
        elif not match.group(3).rstrip().endswith("/"):
            marks.append(mark)
    return hidden


def safe_href(href: str, base: str) -> str:
    """Absolute http(s) or mailto links only; relative ones resolve against the post's URL.

    ``github.com/x`` (a host with no scheme) is read as https, not as a page of this site.
    """
    href = href.strip().replace(" ", "%20")
    if not href or href.startswith(UNRESOLVED):
        return ""
    schemeless = _SCHEMELESS.match(href)
    if schemeless and schemeless.group(1).lower() not in _FILE_EXTENSIONS and "://" not in href:
        href = "https://" + href
    try:
        absolute = urljoin(base, href)
        scheme = urlsplit(absolute).scheme.lower()
    except ValueError:
        return ""
    return absolute if scheme in ALLOWED_SCHEMES else ""


def references(body: str) -> dict[str, dict[str, str]]:
    """``[label]: url`` definitions anywhere in the body, first one wins (as in CommonMark)."""
    refs: dict[str, dict[str, str]] = {}
    if "]:" not in body:
        return refs
    for match in _REFERENCE.finditer(body):
        label = normalizeReference(match.group(1))
        dest = match.group(2)
        if dest.startswith("<") and dest.endswith(">"):
            dest = dest[1:-1]
        href = MD.normalizeLink(unescapeAll(dest))
        if label and label not in refs and MD.validateLink(href):
            refs[label] = {"href": href, "title": ""}
    return refs


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
    _HEADINGS = frozenset(["h1", "h2", "h3", "h4", "h5", "h6"])

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
            if any(c in self._HEADINGS for c in self.context):
                kind = "heading"
            elif "li" in self.context:
                kind = "li"
            elif "blockquote" in self.context or "footer" in self.context or "nav" in self.context:
                kind = "skip"
            self.blocks.append((kind, tidy(self.runs)))
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
            self.marks.append(("a", safe_href(href, self.base)))
        elif tag in INLINE_MARKS:
            self.marks.append(INLINE_MARKS[tag])

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
            pop(self.marks, "a")
        elif tag in INLINE_MARKS:
            pop(self.marks, INLINE_MARKS[tag][0])

    def handle_data(self, data: str) -> None:
        if not self.skip and not self.hidden:
            self.runs.append((data, tuple(self.marks)))


def html_blocks(source: str, base: str) -> list[tuple[str, list[Run]]]:
    """A raw HTML block as (kind, runs): kind is para, li, heading or skip."""
    parser = _HtmlBlocks(base)
    try:
        parser.feed(source)
        parser.close()
    except Exception:  # html.parser is lenient; be safe with anything it still rejects
        return []
    parser.flush()
    return parser.blocks
