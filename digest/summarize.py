"""A post's lead for the email: the paragraph an editor would pick as the teaser, as safe HTML
and as plain text.

Pure (no disk, no clock). The lead is, in order: the ``excerpt`` field, the text before the excerpt
separator (both arrive as ``Post.excerpt``), else the first paragraph of prose. What is not prose
is passed over: headings, images, HTML embeds, comments, Liquid, Hugo shortcodes, MDX, code,
tables, a paragraph that repeats the title or is a bold pseudo-heading, and the lines an editor
skips (credits, notices, greetings, datelines, "read the release notes" pointers, footers; see
digest.lead.kinds). A credit line's names become the item's author when the post names none.
When the body offers no prose (only a list, a pointer, nothing), the ``description`` field is used.

A second paragraph follows only when the first is short (``min_words``). A paragraph ending in a
colon takes the list that follows (at most three items, then "…"); with no list it loses its colon
sentence. A post with no prose gets its first list; one with only a quote gets the quote.

Blocks are read as CommonMark reads them (markdown-it-py's block parser, inline rules off) over a
growing head of the body: whole bodies (up to 850 KB) are never parsed. Only the paragraphs that
make the lead are parsed inline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from markdown_it.token import Token

from digest.lead.clean import Resolver, clean
from digest.lead.inline import EM, MD, STRONG, Run, html_blocks, inline_runs, references
from digest.lead.kinds import credit_names, kind_of, strip_dateline, strip_greeting
from digest.lead.output import (
    ELLIPSIS,
    Lead,
    cut_runs,
    drop_reference_tail,
    last_sentence_start,
    normalise,
    plain,
    render,
)
from digest.model import Item, Post, PostImage
from digest.sites.hugo import is_bundle

__all__ = ["DEFAULT_MIN_WORDS", "ELLIPSIS", "summarize"]

# The first paragraph is "short" below this many words: then a second one follows (config key
# edition.lead_min_words). Of 3,014 first paragraphs in the three sample corpora the median is 28
# words, a quarter are under 16 and 43% under 25: under 25 a paragraph is one sentence ("This is
# a bug-fix release with two fixes."), too little to tell a reader what the post is about.
DEFAULT_MIN_WORDS = 25
MAX_LIST_ITEMS = 3
# Characters of body read: more only when no lead was found in them.
_SCAN_LIMITS = (1_200, 16_000)
_SCAN_ATTEMPTS = 3
_HUGE_PARAGRAPH = 6_000
_LETTER = re.compile(r"[^\W\d_]")
_BARE_URL = re.compile(r"(?:[a-z][a-z+.-]*:|www\.|//)\S+$", re.I)
# A list item that only names what its nested list is about: "**deps**:", "cluster".
_LABEL_ITEM = re.compile(r"^[*_`]*[\w./, -]{1,30}?[*_`]*:?[*_`]*$")
_ASIDE = re.compile(r"\b(?:series|originally|cross-?post|translat\w+|guest|part \w+ of|updated)\b", re.I)
_TABLE_PART = re.compile(r"\s*</?(?:t[dhr]|tbody|thead|tfoot|caption|colgroup|col)\b", re.I)
_INTRODUCES = re.compile(r"\b(?:following|these|below)\b[^.!?:]{0,40}\.$", re.I)
_PLAIN_MARKUP = re.compile(r"!?\[([^\]]*)\]\([^)]*\)|[*_`]+|<[^>]+>")


@dataclass
class _Block:
    kind: str  # para, heading, list, code, html, quote, table, hr
    text: str = ""
    items: list[str] = field(default_factory=list)  # a list's items (first paragraph of each)


@dataclass
class _Context:
    post: Post
    base: str
    budget: int
    min_words: int
    resolve: Resolver | None
    credits: list[str] = field(default_factory=list)
    fallback: list[Run] | None = None  # the first paragraph passed over for a soft reason
    _env: dict[str, Any] | None = None

    @property
    def env(self) -> dict[str, Any]:
        """Reference-style link definitions of the whole body (they usually sit at the end)."""
        if self._env is None:
            self._env = {"references": references(self.post.body)}
        return self._env


def summarize(
    post: Post,
    *,
    url: str,
    word_budget: int = 70,
    min_words: int = DEFAULT_MIN_WORDS,
    resolve: Resolver | None = None,
) -> Item:
    """The post as an email item: title, link, author, image and a lead of at most ``word_budget``
    words. ``resolve`` turns Liquid ``{% link %}``/``{% post_url %}`` and Hugo ``ref`` targets into
    URLs (None: their links are dropped, their words kept)."""
    budget = max(1, word_budget)
    ctx = _Context(post=post, base=url, budget=budget, min_words=max(1, min_words), resolve=resolve)
    lead = Lead()
    if post.excerpt:
        lead = _find_lead(post.excerpt, ctx)
    if not lead.parts or lead.fallback:  # an excerpt that is only a notice: the body may do better
        credits = list(ctx.credits)
        from_body = _find_lead(post.body, ctx)
        lead = from_body if from_body.parts and not (from_body.fallback and lead.parts) else lead
        ctx.credits[:0] = credits
    no_prose = all(kind == "li" for kind, _ in lead.parts)  # nothing, or only a list
    if (no_prose or lead.fallback) and post.description:
        credits = list(ctx.credits)
        described = _find_lead(post.description, ctx)
        lead = described if described.parts else lead
        ctx.credits[:0] = credits
    lead_html, lead_text, truncated = render(lead, budget) if lead.parts else ("", "", False)
    author = post.author or (", ".join(dict.fromkeys(ctx.credits)) or None)
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
        author=author,
        image=_image_url(post.image, post.path, url),
    )


def _image_url(image: PostImage | None, path: str, url: str) -> PostImage | None:
    """A page bundle's own picture (``featured.png`` beside ``index.md``) sits under the page's
    URL; any other image is resolved against the site by the pipeline (digest.images)."""
    if image is None or not is_bundle(path) or not image.url.startswith("./"):
        return None
    absolute = urljoin(url, image.url.strip().replace(" ", "%20"))
    if not absolute.startswith("https://"):
        return None
    return PostImage(absolute, image.alt, image.width, image.height)


# --- finding the lead ------------------------------------------------------------------------------


def _find_lead(source: str, ctx: _Context) -> Lead:
    """Read a growing head of the text until the lead is complete (or the text ends)."""
    lead = Lead()
    limit = _SCAN_LIMITS[0]
    for attempt in range(_SCAN_ATTEMPTS):
        head, whole = _head(source, limit)
        ctx.credits.clear()
        ctx.fallback = None
        blocks = list(_blocks(clean(head, ctx.post.path, ctx.resolve)))
        lead, done = _collect(blocks, ctx, whole or attempt == _SCAN_ATTEMPTS - 1)
        if done or whole:
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


def _blocks(text: str) -> Iterator[_Block]:
    """The top-level blocks of ``text`` as CommonMark reads them."""
    tokens: list[Token] = []
    MD.block.parse(text.replace("\0", "\ufffd"), MD, {}, tokens)  # blocks only: inline comes later
    n = len(tokens)
    i = 0
    while i < n:
        token = tokens[i]
        kind = token.type
        if kind == "paragraph_open":
            yield _Block("para", tokens[i + 1].content)
            i += 3
            continue
        if kind in ("bullet_list_open", "ordered_list_open", "blockquote_open"):
            close = kind.replace("_open", "_close")
            quote = kind == "blockquote_open"
            items: list[str] = []
            j = i + 1
            while j < n and not (tokens[j].type == close and tokens[j].level == token.level):
                t = tokens[j]
                if t.type == "list_item_open" and t.level == token.level + 1:
                    items.append("")
                elif t.type == "inline" and (quote or items):
                    if quote:
                        items.append(t.content)
                    elif not items[-1]:
                        items[-1] = t.content
                    elif "\n" not in items[-1] and (
                        items[-1].rstrip("*_ ").endswith(":") or _LABEL_ITEM.match(items[-1])
                    ):
                        # "**deps**:" with the change in a nested list: one line, as written
                        sep = " " if items[-1].rstrip("*_ ").endswith(":") else ": "
                        items[-1] += sep + t.content
                j += 1
            yield _Block("quote" if quote else "list", items=[item for item in items if item])
            i = j + 1
            continue
        if kind == "heading_open":
            yield _Block("heading", tokens[i + 1].content)
            i += 3
            continue
        if kind == "html_block":
            # A table's rows and cells split from it by blank lines are still the table.
            yield _Block("table" if _TABLE_PART.match(token.content) else "html", token.content)
        elif kind in ("fence", "code_block"):
            yield _Block("code")
        elif kind == "hr":
            yield _Block("hr")
        elif kind == "table_open":
            while i < n and tokens[i].type != "table_close":
                i += 1
            yield _Block("table")
        i += 1


def _collect(blocks: list[_Block], ctx: _Context, whole: bool) -> tuple[Lead, bool]:
    """Paragraphs of prose from the top; else the first list's items; else a quote's text.

    Returns the lead and whether it is complete (False: a longer head may add to it).
    """
    lead = Lead()
    first_list: list[list[Run]] | None = None
    first_quote: _Block | None = None
    for index, block in enumerate(blocks):
        paragraphs: list[list[Run]] = []
        if block.kind == "para":
            runs = _prose_source(block.text, ctx)
            paragraphs = [runs] if runs else []
        elif block.kind == "html":
            html_parts = html_blocks(block.text, ctx.base)
            for kind, runs in html_parts:
                if kind == "para":
                    prose = _prose_runs(runs, ctx)
                    if prose:
                        paragraphs.append(prose)
                elif kind == "li" and first_list is None and not lead.parts:
                    items = [normalise(r) for k, r in html_parts if k == "li"][: MAX_LIST_ITEMS + 1]
                    first_list = None if not items or _link_list(items) else items
                elif kind == "heading" and lead.parts:
                    return lead, True
        elif block.kind == "list":
            if lead.parts:
                return lead, True
            if first_list is None:
                items = _list_runs(block.items, ctx)
                first_list = None if not items or _link_list(items) else items
            continue
        elif block.kind == "quote":
            if lead.parts:
                return lead, True
            first_quote = first_quote or block
            continue
        elif block.kind in ("heading", "code", "table", "hr"):
            if lead.parts:
                return lead, True
            continue
        for runs in paragraphs:
            if first_list and len(plain(runs).split()) < 8:
                continue  # a line after the list that is the post ("Powered by ...")
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            if lead.parts and not _good_second(runs, following):
                return lead, True
            lead.parts.append(("p", runs))
            if _INTRODUCES.search(plain(runs)) and following is not None and following.kind == "list":
                items = _list_runs(following.items, ctx)
                if items and not _link_list(items):
                    _add_items(lead, items)  # "...for the following issues."
                    return lead, True
            if plain(runs).endswith(":"):
                if following is None and not whole:
                    return lead, False
                items = _list_runs(following.items, ctx) if following and following.kind == "list" else []
                if items and not _link_list(items) and runs is paragraphs[-1]:
                    _add_items(lead, items)
                    return lead, True
                _drop_colon_sentence(lead)
            if len(lead.parts) >= 2 or lead.words >= ctx.min_words:
                return lead, True
    if lead.parts:
        return lead, whole
    if not whole and not first_list:
        return lead, False  # nothing yet: read further (a list found settles it: lists are costly)
    if first_list:
        _add_items(lead, first_list)
    elif first_quote is not None:
        for item in first_quote.items:
            runs = _prose_source(item, ctx)
            if runs:
                lead.parts.append(("p", runs))
                if len(lead.parts) >= 2 or lead.words >= ctx.min_words:
                    break
    if not lead.parts and ctx.fallback:
        lead.parts.append(("p", ctx.fallback))  # better a pointer or a near-title than nothing
        lead.fallback = True
    while lead.parts and lead.parts[-1][0] == "p" and plain(lead.parts[-1][1]).endswith(":"):
        _drop_colon_sentence(lead)
    return lead, True


def _list_runs(items: list[str], ctx: _Context) -> list[list[Run]]:
    """The first items worth showing (one more than shown, to know if the list goes on)."""
    kept: list[list[Run]] = []
    for item in items:
        runs = _item_runs(item, ctx)
        if runs:
            kept.append(runs)
            if len(kept) > MAX_LIST_ITEMS:
                break
    return kept


def _add_items(lead: Lead, items: list[list[Run]]) -> None:
    for runs in items[:MAX_LIST_ITEMS]:
        lead.parts.append(("li", runs))
    lead.more_items = len(items) > MAX_LIST_ITEMS


def _drop_colon_sentence(lead: Lead) -> None:
    """The last paragraph ends "...the following:" with nothing shown after: drop that sentence."""
    _, runs = lead.parts.pop()
    text = plain(runs)
    start = last_sentence_start(text)
    if start > 0:
        lead.parts.append(("p", cut_runs(runs, 0, start)))


# --- is it prose? ----------------------------------------------------------------------------------


def _item_runs(source: str, ctx: _Context) -> list[Run] | None:
    """A list item worth showing: words, not a bare link nor a label ("deps:") with nothing after."""
    runs = drop_reference_tail(normalise(inline_runs(_plain_cut(source, ctx), ctx.env, ctx.base)))
    text = plain(runs)
    if not _LETTER.search(text) or _BARE_URL.match(text):
        return None
    if text.endswith(":"):
        if len(text.split()) <= 3:
            return None
        start = last_sentence_start(text)
        runs = cut_runs(runs, 0, start) if start else [*cut_runs(runs, 0, len(text) - 1), (ELLIPSIS, ())]
    return runs


def _prose_source(source: str, ctx: _Context) -> list[Run] | None:
    """A Markdown paragraph as runs if an editor would read it as prose, else None."""
    if _mostly_urls(source):
        return None  # download links, a list of addresses: not something to read
    if "\n" in source:
        source = _drop_credit_lines(source, ctx)
        if not source:
            return None
    runs = normalise(inline_runs(_plain_cut(source, ctx), ctx.env, ctx.base))
    return _prose_runs(drop_reference_tail(runs), ctx)


def _plain_cut(source: str, ctx: _Context) -> str:
    """A huge paragraph is cut well past the budget before parsing (tidy drops a lone marker)."""
    if len(source) <= _HUGE_PARAGRAPH:
        return source
    words = source[:_HUGE_PARAGRAPH].split(" ")
    return " ".join(words[: ctx.budget * 3])


def _drop_credit_lines(source: str, ctx: _Context) -> str:
    """Leading lines of a paragraph that are credits, greetings or datelines."""
    lines = source.split("\n")
    while lines:
        line = _PLAIN_MARKUP.sub(lambda m: m.group(1) or "", lines[0]).strip()
        kind = kind_of(line) if line else "blank"
        if kind == "credit":
            ctx.credits.extend(credit_names(line))
        elif kind not in ("greeting", "dateline", "blank"):
            break
        lines.pop(0)
    return "\n".join(lines)


def _prose_runs(runs: list[Run], ctx: _Context) -> list[Run] | None:
    text = plain(runs)
    kind = kind_of(text)
    if kind == "credit":
        ctx.credits.extend(credit_names(text))
        return None
    if kind in ("greeting", "dateline"):
        return None
    soft = kind in ("pointer", "notice", "footer") or _link_label(runs) or _thanks(runs) or _aside(runs)
    skip = strip_greeting(text) or strip_dateline(text)
    if skip:
        runs = cut_runs(runs, skip)
        text = plain(runs)
    if soft or not _is_prose(text, runs, ctx.post.title):
        usable = bool(_LETTER.search(text)) and not text.endswith(":")
        if usable and ctx.fallback is None and _norm_words(text) != _norm_words(ctx.post.title):
            ctx.fallback = runs
        return None
    return runs


def _good_second(runs: list[Run], following: _Block | None) -> bool:
    """A second paragraph must read as sentences on its own (or introduce the list that follows):
    no bare address, no list of links."""
    text = plain(runs)
    linked = sum(len(t.split()) for t, marks in runs if any(k == "a" for k, _ in marks))
    ends = text.rstrip().endswith((".", "!", "?", "…", '."', ".”", ".)"))
    introduces = text.endswith(":") and following is not None and following.kind == "list"
    return (ends or introduces) and "//" not in text and linked * 2 < len(text.split())


def _link_list(items: list[list[Run]]) -> bool:
    """A list whose items are mostly link text (stars, downloads, "further reading")."""

    def linked(runs: list[Run]) -> bool:
        words = sum(len(t.split()) for t, _ in runs)
        in_links = sum(len(t.split()) for t, m in runs if any(k == "a" for k, _ in m))
        return in_links * 2 >= words

    return bool(items) and sum(map(linked, items)) * 2 > len(items)


def _aside(runs: list[Run]) -> bool:
    """An italic paragraph about the post itself ("_This is the second post in a series..._")."""
    italic = all(not t.strip() or EM in marks for t, marks in runs)
    return italic and bool(_ASIDE.search(plain(runs)))


def _thanks(runs: list[Run]) -> bool:
    """A paragraph of shout-outs ("thanks to @a, @b and @c"): credits, not news."""
    mentions = sum(1 for t, m in runs if t.startswith("@") and any(k == "a" for k, _ in m))
    return mentions >= 3


def _link_label(runs: list[Run]) -> bool:
    """A few words that are all link text ("Roadmap", "Meeting page"), or a paragraph that is
    mostly links ("Languages: DE, ES, FR"): a pointer, not prose."""
    words = plain(runs).split()
    if len(words) <= 6 and all(not t.strip() or any(k == "a" for k, _ in m) for t, m in runs):
        return True
    links = [t for t, m in runs if any(k == "a" for k, _ in m)]
    return len(links) >= 3 and sum(len(t.split()) for t in links) * 2 >= len(words)


def _mostly_urls(source: str) -> bool:
    """Bare addresses (not link text) make up a sixth or more of the words: download lists."""
    if "http" not in source:
        return False
    words = source.split()
    urls = sum(1 for w in words if w.startswith(("http://", "https://", "<http")))
    return urls >= 1 and urls * 6 >= len(words)


def _is_prose(text: str, runs: list[Run], title: str) -> bool:
    """Worth reading as a lead: has letters, is not a bare link, a title echo or a pseudo-heading."""
    if not _LETTER.search(text) or _BARE_URL.match(text):
        return False
    words = text.split()
    ends_sentence = text.rstrip().endswith((".", "!", "?", "…", '."', ".”", ".)"))
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
