"""Property-based fuzzing of posts (issue 15): hostile front matter and bodies never stop an edition.

Each example is one hostile post beside two good ones, read from a real folder, built into an
edition and rendered. Whatever the hostile post holds (control characters, encoded-words, bidi
overrides, YAML that does not parse, recursive or exploding aliases, huge category lists, dates
no calendar has, MJML and Jinja in the text), the invariants are:

- nothing raises: the post is either read (possibly with a warning) or skipped with a reason;
- the two good posts are always in the edition, in its HTML and its text;
- the hostile post, if read and due, is in the edition or named among the skipped;
- the Subject is one plain line: no encoded-word, no bidi control, no line break;
- no character email cannot carry reaches the HTML or the text;
- reading the hostile post costs under a second of CPU.

Examples are bounded (and the Hypothesis database is off) so the suite stays fast in CI.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest import pipeline
from digest.config import Config, config_from_dict
from digest.model import LoadResult
from digest.posts import load_posts

TZ = ZoneInfo("Europe/London")
AS_OF = datetime(2026, 1, 9, tzinfo=TZ)
HOSTILE = "hostile.md"
GOOD = {
    "good-one.md": ("Good post number one", "US"),
    "good-two.md": ("Good post number two", "Europe"),
}
FUZZ = settings(
    # 120 in CI (a few seconds); DIGEST_FUZZ_EXAMPLES=5000 for a long hunt.
    max_examples=int(os.environ.get("DIGEST_FUZZ_EXAMPLES", "120")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_CONFIG: list[Config] = []


def config() -> Config:
    if not _CONFIG:
        root = Path(tempfile.mkdtemp(prefix="digest-fuzz-"))
        _CONFIG.append(
            config_from_dict(
                {"categories": ["US", "Europe", "Asia"], "edition": {"section_cap": 60}}, root=root
            )
        )
    return _CONFIG[0]


SPICY = [
    "=?utf-8?b?QWRtaW4=?=",
    "\u202egnp.exe",
    "a: b: c",
    "no",
    "1.10",
    "12:30",
    "&anchor value",
    "*undefined",
    "[unclosed",
    "{unclosed",
    '"',
    "'",
    "\\",
    "---",
    "<mj-text>",
    "</mj-column></mj-section></mj-wrapper></mj-body></mjml>",
    "{{ site.name }}",
    "{% raw %}",
    "<!--",
    "]]>",
    "<script>alert(1)</script>",
    "\x0b\x0c\x1b\x00\ufffe\uffff\x85\x9b",
    "\ud800",
    "\t",
]
CONTROL = st.characters(min_codepoint=0, max_codepoint=0x9F) | st.sampled_from(
    ["\ufffe", "\uffff", "\ufdd0", "\U0001fffe", "\u202e", "\u2066", "\u200f", "\u2028"]
)
TEXT = st.one_of(
    st.text(max_size=80),
    st.text(CONTROL, max_size=10),
    st.sampled_from(SPICY),
    st.lists(st.sampled_from(SPICY) | st.text(CONTROL, max_size=3) | st.text(max_size=8), max_size=6).map(
        "".join
    ),
)
FRONT_VALUE = st.one_of(
    TEXT,  # written raw: YAML may or may not parse it
    TEXT.map(json.dumps),  # a double-quoted YAML string
    st.lists(TEXT.map(json.dumps), max_size=8).map(lambda items: "[" + ", ".join(items) + "]"),
)
CATEGORIES = st.one_of(
    st.just("[US]"),
    st.just("US Europe"),
    FRONT_VALUE,
    st.sampled_from(
        [
            "&r [US, *r]",
            "&m {k: *m}",
            "[" * 300 + "]" * 300,
            "!!python/object/apply:os.system ['true']",
            "{US: 1}",
            "[US, [Europe, [Asia]]]",
            "~",
        ]
    ),
    st.integers(min_value=51, max_value=3000).map(
        lambda n: "[US, " + ", ".join(f"C{i}" for i in range(n)) + "]"
    ),
)
DATE = st.one_of(
    st.sampled_from(
        [
            "2026-01-07",
            "2026-01-07 10:00:00 +0000",
            "2026-01-07T10:00:00Z",
            "2026-01-07 10:00:00 +9999",
            "2026-13-45",
            "9999-12-31 23:59:59",
            "0001-01-01",
            "'2026-01-07'",
            "1e309",
            "-1",
            "",
        ]
    ),
    TEXT,
)
EXTRA = st.lists(
    st.sampled_from(
        [
            "published: no",
            "published: [x]",
            "excerpt: " + json.dumps("An excerpt\x0b with \x1b controls"),
            "excerpt_separator: ''",
            "excerpt_separator: '<!-- cut -->'",
            "content: a key python-frontmatter cannot take",
            "permalink: /:title/../../etc/passwd",
            "source_url: javascript:alert(1)",
            "source_site: '=?utf-8?q?Admin?='",
            "slug: ''",
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
            "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\ntags: *e",
            "\ttabbed: value",
        ]
    ),
    max_size=3,
)
BODY = st.one_of(
    st.text(max_size=400),
    st.lists(TEXT, max_size=12).map("\n\n".join),
    st.sampled_from(
        [
            "",
            "<!--more-->",
            "Lead <!--more--> rest",
            "# Only a heading",
            "- a list\n- only",
            "<mjml><mj-body></mj-body></mjml>",
            "{% include x.html %}",
            "x" * 20_000,
        ]
    ),
)


@st.composite
def hostile_post(draw: st.DrawFn) -> bytes:
    """A post file: usually front matter of hostile values, sometimes raw bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    lines = ["---", f"title: {draw(FRONT_VALUE)}", f"categories: {draw(CATEGORIES)}", f"date: {draw(DATE)}"]
    lines += draw(EXTRA)
    lines.append("---")
    text = "\n".join(lines) + "\n\n" + draw(BODY) + "\n"
    return text.encode("utf-8", "surrogatepass")


def _write_site(folder: Path, hostile: bytes) -> None:
    for name, (title, category) in GOOD.items():
        (folder / name).write_text(
            f'---\ntitle: "{title}"\ncategories: [{category}]\ndate: 2026-01-06 09:00\n---\n\n'
            f"{title} has a lead paragraph that is long enough.\n",
            encoding="utf-8",
        )
    (folder / HOSTILE).write_bytes(hostile)


def _carriable(text: str) -> bool:
    for char in text:
        code = ord(char)
        if char in "\t\n\r":
            continue
        if code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF:
            return False
        if 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
            return False
    return True


@given(hostile_post())
@FUZZ
def test_a_hostile_post_never_stops_the_edition(hostile: bytes) -> None:
    cfg = config()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write_site(folder, hostile)
        started = time.process_time()
        loaded = load_posts(folder, tz=TZ)
        assert time.process_time() - started < 1.0, "reading one hostile post took a second of CPU"

    read = {p.path for p in loaded.posts}
    skipped = {s.path: s.reason for s in loaded.skipped}
    assert set(GOOD) <= read
    assert (HOSTILE in read) != (HOSTILE in skipped)
    assert all(reason.strip() for reason in skipped.values())
    for post in loaded.posts:
        assert _carriable(post.title + post.body + "".join(post.categories) + (post.excerpt or ""))
        assert len(post.categories) <= 50

    edition = pipeline.build_edition(cfg, as_of=AS_OF, posts=LoadResult(loaded.posts, loaded.skipped))
    edition, rendered = pipeline.render_isolated(cfg, edition)
    for title, _ in GOOD.values():
        assert title in rendered.html and title in rendered.text
    in_edition = {item.post_path for item in edition.items}
    named = {s.path for s in edition.skipped}
    hostile_post_read = next((p for p in loaded.posts if p.path == HOSTILE), None)
    if hostile_post_read is not None and hostile_post_read.published:
        due = edition.window_start <= hostile_post_read.date < edition.window_end
        wanted = {c.casefold() for c in hostile_post_read.categories} & {"us", "europe", "asia"}
        if due and wanted:
            assert HOSTILE in in_edition or HOSTILE in named

    subject = rendered.subject
    assert "\n" not in subject and "\r" not in subject and "=?" not in subject
    assert not any(c in subject for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
    assert _carriable(rendered.html) and _carriable(rendered.text)
