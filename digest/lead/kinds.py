"""Paragraphs that open a post but are not its prose: credits, notices, greetings, datelines,
pointers ("read the release notes") and footers. An editor skips them when picking a teaser;
a credit line's names are kept as the post's author.

Each test works on the paragraph's plain text (markup already gone) and is deliberately about
the *shape* of the line, not about one site's wording.
"""

from __future__ import annotations

import re

_LABEL_WORDS = (
    r"(?:co-?)?authors?|author\(s\)|writers?|editors?|reviewers?|note[- ]?takers?|interviewers?|"
    r"interviewees?|contributors?|translators?|maintainers?|speakers?|hosts?|presenters?|"
    r"photographers?|illustrators?|credits?|byline|posted|written|contributed|translated|edited|"
    r"reviewed|compiled|prepared|photos?|words|text"
)
# "Authors:", "**Author**:", "Authors & Interviewers:", "Note taker:", "Written by:", "By:"
_CREDIT_LABEL = re.compile(
    rf"^(?:{_LABEL_WORDS})(?:\s*(?:&|and|,|/)\s*(?:{_LABEL_WORDS}))*(?:\s+by)?\s*[:：]\s*\S", re.I
)
_CREDIT_BY = re.compile(
    r"^(?:(?:this|today'?s|today’s)\s+(?:is\s+a\s+)?)?(?:guest\s+)?(?:post|article|blog(?:\s+post)?|"
    r"piece|entry|story|photo|image|picture|illustration|cover(?:\s+image)?|header(?:\s+image)?|video|artwork)?\s*(?:was\s+|is\s+)?(?:written|authored|contributed|posted|brought\s+to\s+you)?"
    r"\s*by\s+(?-i:[A-Z@])",
    re.I,
)
_BY_LINE = re.compile(r"^by\s+[A-Z@][\w.'’@-]*(?:\s+[A-Z@(][\w.'’@()-]*){0,5}\s*$")
_NOTICE = re.compile(
    r"^\W*(?:editor'?s?’?s?\s+note|note|notes|nb|n\.b\.|update[ds]?|edit(?:ed)?|disclaimer|warning|"
    r"important|heads[- ]up|attention|correction|errata|psa|reminder|caution|"
    r"deprecation notice|security notice|announcement|caption|image|photo|source|"
    r"fig(?:ure)?\.?\s*\d+)\b\s*(?:\([^)]*\)\s*|(?:from|on|at)\s[^:]{1,30})?[:：—–-]",
    re.I,
)
_NOTICE_SENTENCE = re.compile(
    r"^\W*(?:this\s+(?:post|article|blog(?:\s+post)?|entry|piece|story|is\s+a\s+cross-?post)\b.{0,80}?"
    r"\b(?:originally|first|cross-?posted|republished|re-?posted|translated|translation|updated|part of)"
    r"|(?:originally|first)\s+(?:published|posted|appeared)|cross-?posted\s+(?:from|on)"
    r"|(?:re-?posted|republished|reprinted|cross-?posted)\s+(?:from|with|on|by)\b)",
    re.I,
)
_GREETING = re.compile(
    r"^\W*(?:hi|hello|hey|hiya|howdy|greetings|dear|good\s+(?:morning|afternoon|evening)|"
    r"welcome|ahoy|yo|merry\s+christmas|happy\s+(?:new\s+year|holidays|friday|monday))\b[^.!?\n]{0,40}?[,!:.]?[\s\W]*$",
    re.I,
)
_GREETING_PREFIX = re.compile(
    r"^\W*(?:hi|hello|hey|hiya|howdy|greetings|dear|good\s+(?:morning|afternoon|evening))\b[^.!?\n]{0,40}?[,!]\s+",
    re.I,
)
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATE = rf"(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{4}}|\d{{4}}[-/.]\d{{1,2}}[-/.]\d{{1,2}})"
_DATELINE = re.compile(
    rf"^\W*(?:(?:posted|published|updated|last\s+updated|written|date|dated|released)\s*(?:on|at)?\s*[:：]?\s*)?"
    rf"(?:[a-z]+day,?\s+)?{_DATE}(?:\s+(?:at\s+)?\d{{1,2}}[:.]\d{{2}}(?:\s*[ap]\.?m\.?)?)?(?:\s*[A-Z]{{2,4}})?\W*$",
    re.I,
)
_DATELINE_PREFIX = re.compile(rf"^(?:[A-Z][A-Z .'-]{{2,30}},\s*)?{_DATE}\s*[—–:-]+\s+", re.I)
# A press release's "SAN FRANCISCO, Jan. 8, 2026 —" or "NODE.JS INTERACTIVE 2015, PORTLAND, OR. —".
_PLACE_DATELINE = re.compile(
    r"^(?-i:[A-Z][A-Z0-9 .,'’&/-]{3,80}?)(?:,\s*[A-Za-z0-9 .,]{3,30}?)?\s*(?:[—–]|--)\s+"
)
_POINTER = re.compile(
    r"^\W*(?:please\s+)?(?:read|see|check\s+out|view|find|visit|head\s+(?:over\s+)?to|go\s+to|refer\s+to|"
    r"take\s+a\s+look\s+at|have\s+a\s+look\s+at|for\s+(?:the\s+)?(?:full|complete|detailed|more|all))\b"
    r".{0,160}\b(?:release\s+notes?|changelog|change\s*log|full\s+list|complete\s+list|announcement|"
    r"details|here|below|more\s+information|more\s+details|full\s+story|full\s+post|full\s+article)\b",
    re.I,
)
_READ_MORE = re.compile(r"^\W*(?:read|learn|find\s+out|see)\s+more\b", re.I)
_FOOTER = re.compile(
    r"^\W*(?:powered\s+by|posted\s+by|posted\s+in|filed\s+under|follow\s+us|subscribe|share\s+(?:this|on)|"
    r"comments?\b|leave\s+a\s+comment|tags?\s*:|labels?\s*:|categories\s*:|permalink|"
    r"copyright|©|all\s+rights\s+reserved|discuss\s+(?:this|on)|join\s+the\s+discussion|"
    r"thanks\s+for\s+reading)",
    re.I,
)
_NAME = r"(?:[A-Z@][\w.'’@-]*(?:\s+(?:de|van|von|der|da|di|le|la)\b)?\s*){1,4}"
_BY_NAMES = re.compile(rf"\b[Bb]y\s+({_NAME})(?:(?:,\s*|\s+)(?:and|&)\s+({_NAME}))?")
_NAME_SPLIT = re.compile(r"\s*(?:,|;|&|\band\b|\n)\s*", re.I)
_PARENS = re.compile(r"\s*[(\[][^()\[\]]*[)\]]")


def kind_of(text: str) -> str | None:
    """What a paragraph is when it is not prose: credit, notice, greeting, dateline, pointer,
    footer; None when it is prose (or could be)."""
    words = len(text.split())
    if _CREDIT_LABEL.match(text):
        return "credit"
    if words <= 40 and _CREDIT_BY.match(text) and _by_phrase_is_credit(text):
        return "credit"
    if words <= 8 and _BY_LINE.match(text):
        return "credit"
    if _NOTICE.match(text) or (words <= 60 and _NOTICE_SENTENCE.match(text)):
        return "notice"
    if words <= 8 and _GREETING.match(text):
        return "greeting"
    if words <= 14 and _DATELINE.match(text):
        return "dateline"
    if words <= 25 and (_POINTER.match(text) or _READ_MORE.match(text)):
        return "pointer"
    if words <= 25 and _FOOTER.match(text):
        return "footer"
    return None


def _by_phrase_is_credit(text: str) -> bool:
    """ "Today's guest post is by Ann" is a credit; "By default, X does Y" is not."""
    head = text.split(".", 1)[0]
    return not re.match(
        r"^\W*by\s+(?:default|now|then|the|this|that|using|far|way|design|contrast)\b", head, re.I
    )


def strip_greeting(text: str) -> int:
    """Characters of a greeting ("Hi Jekyllers, ") at the start of a longer paragraph, else 0."""
    match = _GREETING_PREFIX.match(text)
    if match is None or len(text) - match.end() < 20:
        return 0
    return match.end()


def strip_dateline(text: str) -> int:
    """Characters of a dateline ("March 3, 2020 - ") at the start of a paragraph, else 0."""
    match = _DATELINE_PREFIX.match(text) or _PLACE_DATELINE.match(text)
    return match.end() if match is not None and len(text) - match.end() >= 20 else 0


def credit_names(text: str) -> tuple[str, ...]:
    """The names in a credit line: "Authors: Ann Lee (Acme), Bo Chan" -> ("Ann Lee", "Bo Chan")."""
    if _CREDIT_LABEL.match(text):
        text = re.split(r"[:：]", text, maxsplit=1)[1]
    else:
        found = _BY_NAMES.search(text)
        if found is None:
            return ()
        return tuple(" ".join(n.split()) for n in found.groups() if n)
    text = text.split("\n", 1)[0]
    text = re.split(r"(?<=[a-z)])\.\s|\s[—–]\s|\|", text, maxsplit=1)[0]
    text = _PARENS.sub("", text)
    names: list[str] = []
    for part in _NAME_SPLIT.split(text):
        name = part.strip(" .*_@\t").strip()
        name = re.sub(r"^(?:and|with)\s+", "", name, flags=re.I)
        if name and len(name.split()) <= 5 and any(c.isalpha() for c in name) and name not in names:
            names.append(name)
        if len(names) == 6:
            break
    return tuple(names)
