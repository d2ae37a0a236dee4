"""The checkable part of the lead rubric: what makes a lead weak, in words a site owner can act on.

Used by ``digest check``, the preview and ``bench/leads.py``. GOOD and OK leads pass; each
problem here is a lead an editor would not send as it is.
"""

from __future__ import annotations

import re

from digest.lead.kinds import kind_of, strip_greeting
from digest.model import Item

PROBLEMS = (
    "empty",
    "markup leaked",
    "credit line first",
    "dangling colon",
    "no sentence end",
    "paragraphs merged",
)
_TARGET = re.compile(r" <(?:https?|mailto):[^>\s]*>")
_CODE = re.compile(r"`[^`]*`")
_MARKUP = re.compile(
    r"\{\{|\}\}|\{%|%\}|\{:|\{\}|\]\(|\]\[|!\[|\[\^|</?[A-Za-z][A-Za-z0-9-]*(?:\s[^>]*)?>|"
    r"(?<![\w*])\*{1,2}(?=\w)|(?<=[\w:;.,!?])\*{1,2}(?![\w*])|(?<![\w])_{1,2}(?=[A-Za-z])|"
    r"(?<=[A-Za-z.,:;])_{1,2}(?![\w])|(?:(?<=\s)|^)[*_]{2,}(?=\s|$)|"
    r"(?<![\w:]):[a-z][a-z0-9_+-]*:(?![\w:])|&(?:[a-z]+|#\d+|#x[0-9a-f]+);",
    re.I,
)
_SMILEY = re.compile(r"\s*[:;8]-?[)(DPp]$")
_ENDS = (".", "!", "?", "…", '"', "”", "’", "'", ")", ".)")
ADVICE = {
    "empty": "no prose found: add an `excerpt:` to the front matter",
    "markup leaked": "shows markup ({found}): add an `excerpt:` or fix the Markdown",
    "credit line first": "opens with a credit line: add an `excerpt:` or `author:`",
    "dangling colon": "ends on a colon: add an `excerpt:`",
    "no sentence end": "stops mid-sentence: add an `excerpt:` or end the first paragraph with a full stop",
    "paragraphs merged": "runs a greeting into the text: add an `excerpt:`",
}


def problems(item: Item) -> list[tuple[str, str]]:
    """(problem, detail) pairs for a weak lead; [] for a clean one."""
    text = item.lead_text.strip()
    if not text:
        return [("empty", "")]
    found: list[tuple[str, str]] = []
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    bare = _CODE.sub("", _TARGET.sub("", text))
    leak = _MARKUP.search(bare)
    if leak:
        found.append(("markup leaked", leak.group(0)))
    if kind_of(paragraphs[0].removeprefix("- ")) == "credit":
        found.append(("credit line first", ""))
    for index, paragraph in enumerate(paragraphs):
        following = paragraphs[index + 1] if index + 1 < len(paragraphs) else ""
        if paragraph.endswith(":") and not following.startswith("- "):
            found.append(("dangling colon", ""))
            break
    last = paragraphs[-1]
    last = _TARGET.sub("", last).rstrip()
    ended = bool(_SMILEY.search(last))  # ":-)" ends a sentence as well as a full stop does
    if not paragraphs[-1].startswith("- ") and not ended and re.search(r"[\w,;:–—-]\)?$", last):
        found.append(("no sentence end", ""))
    if any(strip_greeting(p) for p in paragraphs) or re.search(r"[,:;!]\s*;(?![-)(DP])", text):
        found.append(("paragraphs merged", ""))
    return found


def advice(item: Item) -> list[str]:
    """One line per problem: "lead of <post> ends on a colon: add an `excerpt:`"."""
    return [
        f"lead of {item.post_path} {ADVICE[name].format(found=detail)}" for name, detail in problems(item)
    ]
