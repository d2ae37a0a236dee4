"""The email's design (issue 16): images, typesetting, "In this issue", the editor's note, the
web version of an edition, and the size budget. What it looks like is in docs/screenshots/."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest import pipeline
from digest.config import config_from_dict
from digest.errors import ConfigError
from digest.images import absolute_image, image_from_front_matter
from digest.model import PLACEHOLDERS, Edition, Item, PostImage, Section
from digest.notes import load_note, render_note
from digest.posts import parse_post
from digest.render import Renderer, wrap
from digest.typeset import NBSP, nowidow, typeset

START = datetime(2026, 1, 2, tzinfo=UTC)
LEAD = " ".join(["Lorem ipsum dolor sit amet, consectetur adipiscing elit."] * 9)
IMAGE = PostImage("https://images.example.com/a.jpg", "Rows of solar panels", 1200, 675)


def config(tmp_path: Path, **sections: dict[str, Any]) -> Any:
    data: dict[str, Any] = {"site": {"name": "The Weekly Digest", "base_url": "https://example.com"}}
    data["web"] = {"base_url": "https://news.example.com"}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return config_from_dict(data, root=tmp_path)


def item(n: int, *, image: PostImage | None = None, lead: str = LEAD) -> Item:
    return Item(
        post_path=f"p/{n}.md",
        title=f"A fairly typical headline of about this length, number {n}",
        url=f"https://example.com/2026/01/post-{n}.html",
        date=START + timedelta(hours=3 * n),
        lead_html=lead + "…",
        lead_text=lead + "…",
        source_url="https://www.ft.com/content/x" if n % 3 == 0 else None,
        source_site="ft.com" if n % 3 == 0 else None,
        image=image,
    )


def edition(count: int, *, images: bool = False, sections: int = 4, note: str = "") -> Edition:
    buckets: list[list[Item]] = [[] for _ in range(sections)]
    for n in range(count):
        buckets[n % sections].append(item(n, image=IMAGE if images else None))
    note_html, note_text = render_note(note)
    return Edition(
        id="2026-W02",
        window_start=START,
        window_end=START + timedelta(days=7),
        categories=(),
        sections=tuple(Section(f"Section {i}", tuple(b)) for i, b in enumerate(buckets) if b),
        note_html=note_html,
        note_text=note_text,
    )


# -- images ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("front", "expected"),
    [
        ("image: /assets/a.jpg", PostImage("/assets/a.jpg")),
        (
            "image:\n  path: a.png\n  width: 800\n  height: 400\n  alt: A map",
            PostImage("a.png", "A map", 800, 400),
        ),
        ("images: [one.png, two.png]", PostImage("one.png")),
        (
            "feature_image: https://x.test/f.jpg\nfeature_image_alt: Alt text",
            PostImage("https://x.test/f.jpg", "Alt text"),
        ),
        ("cover:\n  image: c.jpg\n  alt: Cover", PostImage("c.jpg", "Cover")),
        ("cover: ''", None),
        ("image: ~", None),
    ],
)
def test_post_image_from_front_matter(front: str, expected: PostImage | None) -> None:
    raw = f"---\ntitle: T\ndate: 2026-01-05\n{front}\n---\nBody.\n".encode()
    post, _ = parse_post(raw, "a.md", tz=ZoneInfo("UTC"))
    assert post.image == expected


@given(
    st.dictionaries(
        st.sampled_from(["image", "images", "cover", "feature_image", "x"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
            ),
            max_leaves=8,
        ),
    )
)
@settings(max_examples=200, deadline=None)
def test_any_front_matter_gives_an_image_or_none_and_never_raises(meta: dict[str, Any]) -> None:
    image = image_from_front_matter(meta)
    assert image is None or (isinstance(image.url, str) and image.url.strip())
    safe = absolute_image(image, "https://example.com/blog")
    assert safe is None or safe.url.startswith("https://")


def test_images_become_absolute_https_or_nothing() -> None:
    base = "https://example.com/blog/"
    assert absolute_image(PostImage("/assets/a.jpg"), base).url == "https://example.com/blog/assets/a.jpg"
    assert absolute_image(PostImage("img/a.jpg"), base).url == "https://example.com/blog/img/a.jpg"
    assert absolute_image(PostImage("//cdn.test/a.jpg"), base).url == "https://cdn.test/a.jpg"
    for bad in (
        "http://cdn.test/a.jpg",
        "javascript:alert(1)",
        "data:image/png;base64,AAA",
        'https://x.test/a".jpg',
    ):
        assert absolute_image(PostImage(bad), base) is None, bad
    assert absolute_image(PostImage("/a.jpg"), "http://example.com") is None  # never http in an email


def test_pipeline_gives_items_their_image(tmp_path: Path) -> None:
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "2026-01-05-a.md").write_text(
        "---\ntitle: A\nimage: /img/a.jpg\nimage_alt: A chart\n---\nText.\n"
    )
    (posts / "2026-01-06-b.md").write_text("---\ntitle: B\nimage: http://insecure.test/b.jpg\n---\nText.\n")
    cfg = config(tmp_path, posts={"folder": "posts", "cache": ""})
    built = pipeline.build_edition(
        cfg, as_of=datetime(2026, 1, 9, tzinfo=UTC), posts=pipeline.load(cfg, use_cache=False)
    )
    images = {i.title: i.image for i in built.items}
    assert images == {"A": PostImage("https://example.com/img/a.jpg", "A chart"), "B": None}
    assert absolute_image(PostImage("/img/c.jpg"), "https://example.com").alt == ""  # the headline stands in
    html = Renderer(cfg).render(built).html
    assert '<img class="i" src="https://example.com/img/a.jpg" width="520" alt="A chart" />' in html
    assert "insecure.test" not in html


def test_image_has_width_height_and_alt_and_is_escaped(tmp_path: Path) -> None:
    hostile = PostImage("https://images.example.com/a.jpg?x=1&y=2", 'A "quoted" <alt>', 1200, 675)
    ed = edition(1)
    ed = replace(ed, sections=(Section("S", (item(1, image=hostile),)),))
    html = Renderer(config(tmp_path)).render(ed).html
    assert (
        'src="https://images.example.com/a.jpg?x=1&amp;y=2" width="520" height="292" alt="A &#34;quoted&#34; &lt;alt&gt;"'
        in html
    )


# -- typesetting --------------------------------------------------------------------------------


def test_narrow_no_break_spaces_become_no_break_spaces_and_ellipses_hold_on() -> None:
    assert typeset("Donald\u202fTrump’s on 5\u202fJune") == f"Donald{NBSP}Trump’s on 5{NBSP}June"
    assert typeset("channels. …") == f"channels.{NBSP}…"
    assert typeset("and then ...") == f"and then{NBSP}..."
    assert (
        str(typeset(__import__("markupsafe").Markup('<a href="x">channels</a> …')))
        == f'<a href="x">channels</a>{NBSP}…'
    )
    assert nowidow("Markets rally as the yen steadies") == f"Markets rally as the yen{NBSP}steadies"
    assert nowidow("Short title") == "Short title"


@given(st.text(alphabet=st.sampled_from(list("ab .…\u202f\u00a0\n<>&")), max_size=60))
def test_typeset_changes_only_spaces_and_is_idempotent(text: str) -> None:
    out = typeset(text)
    assert [c for c in out if not c.isspace()] == [c for c in text if not c.isspace()]
    assert typeset(out) == out


@given(st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=12), min_size=1, max_size=40))
def test_wrapped_text_never_starts_a_line_with_an_ellipsis(words: list[str]) -> None:
    text = " ".join(words) + " …"
    wrapped = wrap(typeset(text), 30)
    assert not any(line.startswith("…") for line in wrapped.splitlines())
    assert NBSP not in wrapped and wrapped.split() == text.split()


# -- "In this issue", the note, the web version --------------------------------------------------


def test_in_this_issue_lists_headlines_as_links_for_longer_editions(tmp_path: Path) -> None:
    renderer = Renderer(config(tmp_path))
    short = renderer.render(edition(3))
    assert "In this issue" not in short.html and "IN THIS ISSUE" not in short.text
    longer = renderer.render(edition(8))
    toc = longer.html.split("In this issue", 1)[1].split("</ol>", 1)[0]
    assert toc.count("<li><a href=") == 8
    first = edition(8).items[0]
    assert f'<li><a href="{first.url}">' in toc
    assert "IN THIS ISSUE\n1. A fairly typical headline" in longer.text
    twenty = renderer.render(edition(20))
    assert "… and 13 more below" in twenty.html and "... and 13 more below" in twenty.text


def test_every_headline_is_a_link_to_its_post(tmp_path: Path) -> None:
    rendered = Renderer(config(tmp_path)).render(edition(10))
    for it in edition(10).items:
        assert re.search(rf'<h3><a href="{re.escape(it.url)}">', rendered.html), it.title
        assert f"Continue reading: {it.url}" in rendered.text


def test_editor_note_is_safe_markdown_in_both_parts(tmp_path: Path) -> None:
    note = "Good **morning**. <script>x()</script> [Our guide](https://example.com/g) and [bad](javascript:alert(1))."
    rendered = Renderer(config(tmp_path)).render(edition(2, note=note))
    assert "From the editor" in rendered.html and "<strong>morning</strong>" in rendered.html
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert (
        'href="https://example.com/g"' in rendered.html
        and "javascript:" not in rendered.html.split("From the editor")[1].split("</a>")[0]
    )
    assert "FROM THE EDITOR" in rendered.text and "Our guide <https://example.com/g>" in rendered.text
    assert "Good morning." in rendered.text


def test_editor_note_is_read_from_the_editions_folder(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert load_note(cfg, "2026-W02") == ("", "")
    (tmp_path / "editions").mkdir()
    (tmp_path / "editions" / "2026-W02.md").write_text("Hello *readers*.\n", encoding="utf-8")
    assert load_note(cfg, "2026-W02") == ("<p>Hello <em>readers</em>.</p>", "Hello *readers*.")
    (tmp_path / "editions" / "2026-W03.md").write_bytes(b"caf\xe9")
    with pytest.raises(ConfigError, match=r"2026-W03\.md.*not UTF-8.*Save it as UTF-8"):
        load_note(cfg, "2026-W03")


def test_view_in_browser_link_and_web_version(tmp_path: Path) -> None:
    renderer = Renderer(config(tmp_path))
    email = renderer.render(edition(5))
    assert '<a href="https://news.example.com/archive/2026-W02">View in browser</a>' in email.html
    assert "View in your browser: https://news.example.com/archive/2026-W02" in email.text
    web = renderer.render(edition(5), web=True)
    assert "View in browser" not in web.html and "View in your browser" not in web.text
    assert not any(p in web.html or p in web.text for p in PLACEHOLDERS)
    assert 'href="https://news.example.com/subscribe"' in web.html
    assert "<title>The Weekly Digest · 2–8 January 2026</title>" in web.html  # a page, not a subject line
    assert (
        'type="application/atom+xml" title="The Weekly Digest" href="https://news.example.com/archive/feed.xml"'
        in web.html
    )
    assert "application/atom+xml" not in email.html


def test_archive_url_can_point_at_a_static_host(tmp_path: Path) -> None:
    cfg = config(tmp_path, web={"archive_url": "https://static.example.com/letters/"})
    html = Renderer(cfg).render(edition(2)).html
    assert 'href="https://static.example.com/letters/2026-W02">View in browser' in html
    with pytest.raises(ConfigError, match=r"web\.archive_url"):
        config(tmp_path, web={"archive_url": "static.example.com"})


# -- exactness and size ---------------------------------------------------------------------------


def test_assembled_editions_match_direct_renders_whatever_the_contents(tmp_path: Path) -> None:
    """The per-set "In this issue" list goes in by token: every set byte for byte, any order."""
    renderer = Renderer(config(tmp_path))
    pool = {
        f"S{i}": tuple(item(10 * i + j, image=IMAGE if j % 2 else None) for j in range(3)) for i in range(5)
    }
    note_html, note_text = render_note("A note with a [link](https://example.com/n).")
    editions = [
        Edition(
            id="2026-W02",
            window_start=START,
            window_end=START + timedelta(days=7),
            categories=chosen,
            sections=tuple(Section(n, pool[n]) for n in chosen),
            note_html=note_html,
            note_text=note_text,
        )
        for k in range(1, 6)
        for chosen in itertools.combinations(sorted(pool), k)
    ]
    for order in (editions, editions[::-1]):
        assembler = renderer.assembler()
        for ed in order:
            assert assembler.render(ed) == renderer.render(ed), ed.categories
        assert assembler.direct <= 2  # each frame's first set is rendered directly (fidelity)


def test_size_budget_with_images(tmp_path: Path) -> None:
    renderer = Renderer(config(tmp_path, site={"logo_url": "https://example.com/logo.png"}))
    ten = renderer.render(edition(10, images=True, note="A short note from the editor."))
    twenty = renderer.render(edition(20, images=True))
    assert ten.html_bytes < 60_000, ten.html_bytes
    assert twenty.html_bytes < 80_000, twenty.html_bytes  # well under Gmail's 102 KB clip
    assert twenty.warnings == ()


def test_a_picture_without_alt_text_is_described_by_its_headline(tmp_path: Path) -> None:
    bare = PostImage("https://images.example.com/b.jpg")
    ed = replace(edition(1), sections=(Section("S", (item(2, image=bare),)),))
    html = Renderer(config(tmp_path)).render(ed).html
    assert (
        '<img class="i" src="https://images.example.com/b.jpg" width="520" '
        'alt="A fairly typical headline of about this length, number 2" />'
    ) in html
