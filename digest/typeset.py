"""Small typography for the email: spaces that hold words together, and ellipses that stay put.

Two problems seen in real posts: a narrow no-break space (U+202F, common in text pasted from
French or from news wires: "5 June", "Donald Trump's") is drawn with no width by fonts that lack
it, so words run together; and an ellipsis after a space ("channels. …") wraps onto a line of
its own. Both are fixed in the text itself, so they hold in every client.
"""

from __future__ import annotations

import re
from typing import TypeVar

from markupsafe import Markup

NBSP = "\u00a0"
# Spaces some fonts draw with no width: a normal no-break space is in every font.
_SQUASHED_PAIRS = (("\u202f", NBSP), ("\u2007", NBSP), ("\u2009", " "), ("\u200a", " "))
# Any run of spaces before an ellipsis ("…" or "..."): the ellipsis belongs to the word before it.
_BEFORE_ELLIPSIS = re.compile(r"[ \t\n\u00a0\u202f]+(?=…|\.\.\.)")
# The last space of a headline, when the last word is short: no one-word last line.
_LAST_SPACE = re.compile(r" (?=\S{1,10}$)")

S = TypeVar("S", str, Markup)


def typeset(value: S) -> S:
    """``value`` with squashing spaces made no-break spaces and each ellipsis tied to its word.

    Safe on HTML (it changes only spaces), and keeps Markup as Markup.
    """
    text = str(value)
    # str.translate walks a dict per character: ten times slower than these checks and replaces.
    for space, replacement in _SQUASHED_PAIRS:
        if space in text:
            text = text.replace(space, replacement)
    if "…" in text or "..." in text:
        text = _BEFORE_ELLIPSIS.sub(NBSP, text)
    return Markup(text) if isinstance(value, Markup) else text


def nowidow(value: S) -> S:
    """A headline whose last short word stays with the one before (for titles, not HTML)."""
    text = typeset(str(value))
    if text.count(" ") >= 3:
        text = _LAST_SPACE.sub(NBSP, text.rstrip())
    return Markup(text) if isinstance(value, Markup) else text
