"""What is never prose, removed from a post's Markdown before its blocks are read.

Comments, Liquid (its ``{% link %}`` and ``{% post_url %}`` tags resolved to URLs first), Hugo
shortcodes (a paired notice with its body), kramdown attribute lists and extensions, footnote
markers and definitions, MDX imports, WordPress shortcodes, images (even one whose address
spans two lines) and invisible characters.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from digest.lead.inline import UNRESOLVED

# (kind, target) -> the URL of a post in the folder, or None: kind is "link" or "post_url"
# (Jekyll) or "ref" (Hugo's ref/relref).
Resolver = Callable[[str, str], str | None]

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_LIQUID_COMMENT = re.compile(r"{%-?\s*comment\s*-?%}.*?(?:{%-?\s*endcomment\s*-?%}|\Z)", re.S)
_LIQUID_RAW = re.compile(r"{%-?\s*(?:end)?raw\s*-?%}")
_LIQUID_CODE = re.compile(r"{%-?\s*(?:end)?highlight\b[^%]*%}")
_LIQUID_LINK = re.compile(r"{%-?\s*(link|post_url)\s+['\"]?([^'\"%\s]+)['\"]?\s*-?%}")
_LIQUID_TAG = re.compile(r"{%.*?%}", re.S)
_LIQUID_OUT = re.compile(r"{{.*?}}", re.S)
# Hugo: {{< name args >}} and {{% name args %}}; {{</* x */>}} is an escaped one (docs).
_HUGO_REF = re.compile(r"{{[<%]\s*(?:rel)?ref\s+\"?([^\"\s>%]+)\"?\s*[>%]}}")
_HUGO_NOTICE_NAMES = (
    "alert|note|notice|warning|tip|info|caution|danger|callout|admonition|hint|important|"
    "attention|details|expand|code|code-toggle|highlight|tabs?|output|datatable|gist|tweet|"
    "youtube|vimeo|figure|imgproc|img|image|gallery|asciinema|mermaid|chart"
)
_HUGO_NOTICE_OPEN = re.compile(r"{{[<%]-?\s*(" + _HUGO_NOTICE_NAMES + r")\b[^}]{0,500}?-?[>%]}}", re.I)
_HUGO_SHORTCODE = re.compile(r"{{[<%].*?[>%]}}", re.S)
# kramdown: {: .class} {:target="_blank"} {::options ... /} {::comment}...{:/comment}
_KRAMDOWN_COMMENT = re.compile(r"{::comment}.*?(?:{:/comment}|{:/}|\Z)", re.S)
_KRAMDOWN = re.compile(r"{:[^}\n]*}")
_FOOTNOTE_DEF = re.compile(r"^ {0,3}\[\^[^\]\n]+\]:.*(?:\n(?: {2,}|\t).*)*", re.M)
_FOOTNOTE_REF = re.compile(r"\[\^[^\]\s]+\]")
_SHORTCODE_BLOCK = re.compile(
    r"\[(caption|embed|gallery|video|audio|youtube)\b[^\]]*\].*?\[/\1\]", re.S | re.I
)
_SHORTCODE = re.compile(r"\[/?(?:caption|embed|gallery|video|audio|youtube|playlist)\b[^\]]*\]", re.I)
_MDX_LINE = re.compile(r"^(?:import|export)\s.*$", re.M)
_MDX_COMMENT = re.compile(r"{/\*.*?\*/}", re.S)
_INVISIBLE = re.compile("[\ufeff\u200b\u200c\u200d\u2060\u00ad]")
# An image, a linked image, even with its address or alt text wrapped over lines.
_LINKED_IMAGE = re.compile(r"\[\s*!\[[^\]]{0,500}\]\([^)]{0,3000}\)\s*\]\([^)]{0,3000}\)")
_IMAGE = re.compile(r"!\[(?:[^\]\\]|\\.){0,500}\]\((?:[^()]|\([^()]*\)){0,400000}\)")


def clean(text: str, path: str, resolve: Resolver | None = None) -> str:
    """``text`` with everything removed that is never prose (see the module docstring)."""
    if "<!--" in text:
        text = _COMMENT.sub("", text)
    if "{{<" in text or "{{%" in text:
        text = _hugo(text, resolve)
    if "{%" in text:
        text = _LIQUID_COMMENT.sub("", text)
        text = _LIQUID_RAW.sub("", text)
        text = _LIQUID_CODE.sub("\n```\n", text)
        text = _LIQUID_LINK.sub(lambda m: _resolved(resolve, m.group(1), m.group(2)), text)
        text = outside_last(text, "%}", _LIQUID_TAG)
    if "{{" in text:
        text = outside_last(text, "}}", _LIQUID_OUT)
    if "{:" in text:
        text = _KRAMDOWN_COMMENT.sub("", text)
        text = _KRAMDOWN.sub("", text)
    if "[^" in text:
        text = _FOOTNOTE_DEF.sub("", text)
        text = _FOOTNOTE_REF.sub("", text)
    if "[/" in text or "[gallery" in text or "[youtube" in text or "[embed" in text:
        text = _SHORTCODE_BLOCK.sub("", text)
        text = _SHORTCODE.sub("", text)
    if "![" in text:
        text = _LINKED_IMAGE.sub(" ", text)
        text = _IMAGE.sub(" ", text)
    if path.lower().endswith(".mdx"):
        text = _MDX_LINE.sub("", text)
        text = outside_last(text, "*/}", _MDX_COMMENT)
    return _INVISIBLE.sub("", text) if _INVISIBLE.search(text) else text


def outside_last(text: str, closer: str, pattern: re.Pattern[str]) -> str:
    """``pattern.sub("", text)`` for a lazy ``opener.*?closer`` pattern, in linear time.

    Past the last closer no match can end, but the regex would still scan from every opener
    there to the end of the text: 50,000 unclosed ``{%`` took 31 s (issue 15). Same result.
    """
    end = text.rfind(closer) + len(closer) if closer in text else 0
    return pattern.sub("", text[:end]) + text[end:]


def _resolved(resolve: Resolver | None, kind: str, target: str) -> str:
    url = resolve(kind, target) if resolve is not None else None
    return url or UNRESOLVED


def _hugo(text: str, resolve: Resolver | None) -> str:
    text = _HUGO_REF.sub(lambda m: _resolved(resolve, "ref", m.group(1)), text)
    text = _paired_notices(text)
    return outside_last(text, "}}", _HUGO_SHORTCODE)


@functools.lru_cache(maxsize=64)
def _closer(name: str) -> re.Pattern[str]:
    return re.compile(r"{{[<%]-?\s*/\s*" + re.escape(name) + r"\s*-?[>%]}}", re.I)


def _paired_notices(text: str) -> str:
    """Remove ``{{< note >}}...{{< /note >}}`` pairs, body and all, in linear time: an opener
    whose name has no closer after it is left for the single-shortcode pass."""
    out: list[str] = []
    pos = 0
    no_closer: dict[str, int] = {}  # name -> the position after which it has no closer
    for match in _HUGO_NOTICE_OPEN.finditer(text):
        if match.start() < pos:
            continue
        name = match.group(1).lower()
        if match.start() >= no_closer.get(name, len(text) + 1):
            continue
        closer = _closer(name).search(text, match.end())
        if closer is None:
            no_closer[name] = match.start()
            continue
        out.append(text[pos : match.start()])
        out.append("\n\n")
        pos = closer.end()
    out.append(text[pos:])
    return "".join(out)
