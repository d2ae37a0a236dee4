"""The renderer: a reviewed golden edition, and the properties every edition must have.

Golden files live in tests/golden/. After a deliberate change to the templates, regenerate them
with ``DIGEST_UPDATE_GOLDEN=1 python -m pytest tests/test_render.py`` and read the diff before
committing. They depend on the mjml-python version (MRML's exact output).
"""

from __future__ import annotations

import difflib
import os
import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from digest.config import Config, config_from_dict
from digest.errors import EmptyEditionError, RenderError
from digest.model import PREFERENCES_URL, UNSUBSCRIBE_URL, Edition, Item, RenderedEdition, Section
from digest.render import SHARED, Renderer, RendererCache, clear_cache, render_edition, wrap

GOLDEN = Path(__file__).parent / "golden"
HOSTILE = '<script>alert("pwned")</script> & Sons’ "quoted" <b>bold</b>'
WINDOW_START = datetime(2026, 1, 2, tzinfo=UTC)


# -- builders ----------------------------------------------------------------------------------


def make_item(n: int, **overrides: Any) -> Item:
    """An Item with plausible defaults; ``n`` keeps urls and dates distinct."""
    values: dict[str, Any] = {
        "post_path": f"posts/post-{n}.md",
        "title": f"Post number {n}",
        "url": f"https://example.com/news/2026/01/0{1 + n % 7}/post-{n}.html",
        "date": WINDOW_START + timedelta(hours=9 + 13 * n),
        "lead_html": f'The lead of post {n}, with <em>emphasis</em> and a <a href="https://example.org/{n}">link</a>.',
        "lead_text": f"The lead of post {n}, with emphasis and a link.",
    }
    values.update(overrides)
    return Item(**values)


def make_edition(*sections: Section, categories: tuple[str, ...] = ()) -> Edition:
    return Edition(
        id="2026-W02",
        window_start=WINDOW_START,
        window_end=WINDOW_START + timedelta(days=7),
        categories=categories,
        sections=sections,
    )


def many(count: int, sections: int = 4, words: int = 70) -> Edition:
    """An edition of ``count`` items with leads of ``words`` words, as the summarizer makes them."""
    lead = " ".join(["Lorem ipsum dolor sit amet, consectetur adipiscing elit."] * (words // 8 + 1))
    lead = " ".join(lead.split()[:words]) + "…"
    buckets: list[list[Item]] = [[] for _ in range(sections)]
    for n in range(count):
        buckets[n % sections].append(
            make_item(
                n,
                title=f"A fairly typical headline of about this length, number {n}",
                lead_html=lead,
                lead_text=lead,
                source_url="https://www.ft.com/content/bc7437d7-9aed-4ec8-b013-f1b0e80acb8b"
                if n % 2
                else None,
                source_site="ft.com" if n % 2 else None,
            )
        )
    return make_edition(*(Section(f"Category {i}", tuple(items)) for i, items in enumerate(buckets)))


def site_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "site": {
            "name": "The Weekly Digest",
            "base_url": "https://example.com",
            "timezone": "America/New_York",
            "postal_address": "Example Publishing Ltd, 1 High Street, London N1 1AA, United Kingdom",
        }
    }
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return config_from_dict(data, root=tmp_path)


def golden_edition() -> Edition:
    """Odd input on purpose: markup and & in titles, quotes, unicode, credits, an empty section."""
    us = Section(
        "US & Canada",
        (
            make_item(
                1,
                title=HOSTILE,
                # 03:30 UTC on the 8th is still the 7th in New York: the date shown must say so.
                date=datetime(2026, 1, 8, 3, 30, tzinfo=UTC),
                lead_html="Fish &amp; chips, <strong>“smart” quotes</strong> and a "
                '<a href="https://example.org/a?b=1&amp;c=2">link with a query</a>.',
                lead_text="Fish & chips, “smart” quotes and a link with a query.",
                truncated=True,
                source_url="https://www.ft.com/content/bc7437d7-9aed-4ec8-b013-f1b0e80acb8b",
                source_site="ft.com",
            ),
            make_item(
                2,
                title="Trump to meet Colombia’s Petro in dramatic détente — 東京 ☕",
                date=datetime(2026, 1, 5, 14, 0, tzinfo=UTC),
            ),
        ),
    )
    empty = Section("Nothing here", ())
    europe = Section(
        "Europe",
        (
            make_item(
                3,
                title="It's \"quoted\" and O'Brien's",
                date=datetime(2026, 1, 4, 23, 59, tzinfo=UTC),
                source_site="Le Monde",  # credited, but with no link
                lead_html="A lead that is long enough to wrap in the text part: "
                + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 3
                + "See https://example.org/a/very/long/url/that/must/not/be/broken/when/wrapping/text.",
                lead_text="A lead that is long enough to wrap in the text part: "
                + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 3
                + "See https://example.org/a/very/long/url/that/must/not/be/broken/when/wrapping/text.",
            ),
        ),
    )
    return make_edition(us, empty, europe, categories=("US & Canada", "Europe"))


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return site_config(tmp_path)


@pytest.fixture
def renderer(config: Config) -> Renderer:
    return Renderer(config)


@pytest.fixture
def golden(renderer: Renderer) -> RenderedEdition:
    """The golden edition as a send makes it: through EditionAssembler, after a warm-up set."""
    assembler = renderer.assembler()
    edition = golden_edition()
    assembler.render(edition)  # a frame seen once is rendered directly; the second is assembled
    rendered = assembler.render(edition)
    assert assembler.assembled == 1 and assembler.reason is None
    assert rendered == renderer.render(edition)
    return rendered


# -- golden files ------------------------------------------------------------------------------


def _readable(html: str) -> list[str]:
    """One tag per line, so that a diff of MRML's long lines can be read."""
    return re.sub(r">\s*<", ">\n<", html).splitlines(keepends=True)


def _check_golden(name: str, actual: str, split: Any = None) -> None:
    path = GOLDEN / name
    if os.environ.get("DIGEST_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="")
        return
    if not path.exists():
        pytest.fail(f"{path} is missing; create it with DIGEST_UPDATE_GOLDEN=1 and review it.")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        lines = split or (lambda s: s.splitlines(keepends=True))
        diff = "".join(difflib.unified_diff(lines(expected), lines(actual), f"golden/{name}", "rendered"))
        pytest.fail(
            f"rendered {name} differs from the golden file (DIGEST_UPDATE_GOLDEN=1 to accept):\n{diff}"
        )


def test_golden_html(golden: RenderedEdition) -> None:
    _check_golden("edition.html", golden.html, _readable)


def test_golden_text(golden: RenderedEdition) -> None:
    _check_golden("edition.txt", golden.text)


def test_golden_subject_and_preheader(golden: RenderedEdition) -> None:
    assert golden.subject == "The Weekly Digest: 3 new posts"
    assert golden.preheader == (
        f"This week: {HOSTILE} · Trump to meet Colombia’s Petro in dramatic détente — 東京 ☕ · "
        "It's \"quoted\" and O'Brien's"
    )
    assert golden.warnings == ()


# -- escaping and structure ---------------------------------------------------------------------


def test_hostile_title_is_escaped_everywhere_in_html(golden: RenderedEdition) -> None:
    assert "<script" not in golden.html.lower()
    assert "<b>bold" not in golden.html
    assert "&lt;script&gt;alert(" in golden.html
    # in the preheader and the headline (no aria-label since the one "read more" went): never raw
    assert golden.html.count("&lt;script&gt;") >= 2


def test_quotes_cannot_break_out_of_attributes(tmp_path: Path) -> None:
    config = site_config(tmp_path, site={"name": 'Evil" onload="x', "logo_url": "https://example.com/l.png"})
    html = Renderer(config).render(make_edition(Section("A", (make_item(1),)))).html
    assert 'onload="x' not in html
    assert 'alt="Evil&#34; onload=&#34;x"' in html or 'alt="Evil&quot; onload=&quot;x"' in html


def test_lead_html_is_kept_as_html(golden: RenderedEdition) -> None:
    assert "<strong>“smart” quotes</strong>" in golden.html
    assert '<a href="https://example.org/a?b=1&amp;c=2">link with a query</a>' in golden.html


def test_text_part_is_not_html_escaped(golden: RenderedEdition) -> None:
    assert HOSTILE in golden.text
    assert "Fish & chips" in golden.text
    assert "&amp;" not in golden.text and "&#" not in golden.text


def test_empty_sections_are_left_out(golden: RenderedEdition) -> None:
    assert "Nothing here" not in golden.html
    assert "NOTHING HERE" not in golden.text.upper()
    assert "US &amp; Canada" in golden.html and "Europe" in golden.html


@pytest.mark.parametrize(
    "sections",
    [(), (Section("US", ()), Section("Europe", ()))],
    ids=["no sections", "only empty sections"],
)
def test_empty_edition_raises_a_clear_error(renderer: Renderer, sections: tuple[Section, ...]) -> None:
    edition = make_edition(*sections, categories=("US", "Europe"))
    with pytest.raises(EmptyEditionError) as info:
        renderer.render(edition)
    message = str(info.value)
    assert "2026-W02" in message and "no posts" in message
    assert "US, Europe" in message and "2026-01-01" in message and "2026-01-08" in message


def test_lang_attribute_comes_from_the_site(tmp_path: Path) -> None:
    config = site_config(tmp_path, site={"language": "fr"})
    rendered = Renderer(config).render(make_edition(Section("A", (make_item(1),))))
    assert rendered.html.startswith('<!doctype html><html lang="fr"')
    assert 'role="article" lang="fr"' in rendered.html
    assert "2026-01-02" in rendered.text  # no English month names for a French site


def test_logo_has_alt_text_and_every_image_does(tmp_path: Path) -> None:
    config = site_config(tmp_path, site={"logo_url": "https://example.com/logo.png"})
    html = Renderer(config).render(make_edition(Section("A", (make_item(1),)))).html
    images = re.findall(r"<img\b[^>]*>", html)
    assert images, "the logo is rendered"
    for img in images:
        alt = re.search(r'\balt="([^"]*)"', img)
        assert alt and alt.group(1).strip(), img
    assert 'alt="The Weekly Digest"' in images[0]


def test_no_logo_no_image(golden: RenderedEdition) -> None:
    assert "<img" not in golden.html


def test_placeholders_survive_escaping_and_mjml(golden: RenderedEdition) -> None:
    for token in (PREFERENCES_URL, UNSUBSCRIBE_URL):
        assert f'href="{token}"' in golden.html
        assert golden.html.count(token) == 1
        assert golden.text.count(token) == 1
    assert "Unsubscribe: " + UNSUBSCRIBE_URL in golden.text


def test_footer_has_the_postal_address(golden: RenderedEdition) -> None:
    address = "Example Publishing Ltd, 1 High Street, London N1 1AA, United Kingdom"
    assert address in golden.html
    assert " ".join(golden.text.split()).count(address) == 1


def test_dark_mode_and_hidden_preheader(golden: RenderedEdition) -> None:
    assert '<meta name="color-scheme" content="light dark"' in golden.html
    assert "@media (prefers-color-scheme:dark)" in golden.html
    assert re.search(r'<div style="display:none;[^"]*">This week: ', golden.html)
    assert "fonts.googleapis" not in golden.html
    assert "<!-- " not in golden.html  # comments disabled (conditional comments for Outlook stay)


def test_dates_are_shown_in_the_site_timezone(golden: RenderedEdition) -> None:
    # item 1 is 2026-01-08 03:30 UTC, which is 22:30 on the 7th in New York
    assert f"{HOSTILE}\n7 January 2026\n" in golden.text
    assert "7 January 2026 · via <a" in golden.html
    # the window, 2 to 9 January 00:00 UTC, is 1 January 19:00 to 8 January 19:00 in New York
    assert "1–8 January 2026 · 3 new posts" in golden.text


def test_credit_links_the_source_only_when_it_is_a_web_address(renderer: Renderer) -> None:
    items = (
        make_item(1, source_url="https://www.ft.com/x", source_site="ft.com"),
        make_item(2, source_url="https://www.bbc.co.uk/news/1"),
        make_item(3, source_url="javascript:alert(1)", source_site="Sneaky"),
        make_item(4),
    )
    rendered = renderer.render(make_edition(Section("A", items)))
    assert 'via <a href="https://www.ft.com/x">ft.com</a>' in rendered.html
    assert 'via <a href="https://www.bbc.co.uk/news/1">bbc.co.uk</a>' in rendered.html
    assert "javascript:" not in rendered.html and "javascript:" not in rendered.text
    assert "via Sneaky" in rendered.html
    assert "Source: ft.com <https://www.ft.com/x>" in rendered.text
    assert rendered.text.count("Source: ") == 3


def test_text_part_carries_every_item_url(renderer: Renderer) -> None:
    edition = many(20)
    rendered = renderer.render(edition)
    for item in edition.items:
        assert f"Continue reading: {item.url}\n" in rendered.text
        assert f'href="{item.url}"' in rendered.html
    assert rendered.text.count("Source: ft.com") == 10
    assert rendered.text.count("<https://www.ft.com/content/bc7437d7-9aed-4ec8-b013-f1b0e80acb8b>") == 10


def test_text_part_is_wrapped(golden: RenderedEdition) -> None:
    for line in golden.text.splitlines():
        assert len(line) <= 72 or " " not in line.strip(), line
    assert "https://example.org/a/very/long/url/that/must/not/be/broken/when/wrapping/text." in golden.text


def test_wrap_keeps_paragraphs_and_long_words() -> None:
    text = "one two three four five six\n\n  seven   eight " + "x" * 30
    assert wrap(text, 12) == "one two\nthree four\nfive six\n\nseven eight\n" + "x" * 30
    assert wrap("a b c d", 5, indent="  ", first="") == "a b c\n  d"


# -- subject and preheader -----------------------------------------------------------------------


def test_subject_and_preheader_are_templated(tmp_path: Path) -> None:
    config = site_config(
        tmp_path,
        edition={
            "subject": "{{ site.name }} · {{ edition.first_day.isoformat() }} to {{ edition.last_day }}: "
            "{{ edition.post_count }} {{ 'post' if edition.post_count == 1 else 'posts' }}",
            "preheader": "First: {{ edition.titles[0] }} ({{ edition.id }})",
        },
    )
    rendered = Renderer(config).render(make_edition(Section("A", (make_item(1, title="Tom & Jerry <3"),))))
    assert rendered.subject == "The Weekly Digest · 2026-01-01 to 2026-01-08: 1 post"
    assert rendered.preheader == "First: Tom & Jerry <3 (2026-W02)"
    assert "<title>The Weekly Digest · 2026-01-01 to 2026-01-08: 1 post</title>" in rendered.html
    assert "First: Tom &amp; Jerry &lt;3 (2026-W02)" in rendered.html


def test_subject_is_one_line(tmp_path: Path) -> None:
    config = site_config(tmp_path, edition={"subject": "{{ site.name }}\n\n  {{ edition.post_count }}\n"})
    assert Renderer(config).render(many(2)).subject == "The Weekly Digest 2"


def test_bad_subject_template_names_the_config_key(tmp_path: Path) -> None:
    config = site_config(tmp_path, edition={"subject": "{{ site.name"})
    with pytest.raises(RenderError, match=r"edition\.subject"):
        Renderer(config)
    config = site_config(tmp_path, edition={"preheader": "{{ edition.nope }}"})
    with pytest.raises(RenderError, match=r"edition\.preheader.*nope"):
        Renderer(config).render(many(2))


# -- size -------------------------------------------------------------------------------------------


def test_twenty_posts_stay_far_below_gmail_clipping(renderer: Renderer) -> None:
    rendered = renderer.render(many(20))
    assert rendered.html_bytes < 60_000, rendered.html_bytes
    assert rendered.warnings == ()


def test_huge_edition_warns_about_clipping(renderer: Renderer) -> None:
    rendered = renderer.render(many(150, sections=10, words=120))
    assert rendered.html_bytes >= 102_000
    assert len(rendered.warnings) == 1
    assert "102 KB" in rendered.warnings[0] and "clip" in rendered.warnings[0]


def test_clip_threshold_comes_from_config(tmp_path: Path) -> None:
    config = site_config(tmp_path, edition={"clip_warning_bytes": 5_000})
    assert Renderer(config).render(many(1)).warnings


# -- template errors ---------------------------------------------------------------------------------


def _own_templates(tmp_path: Path, name: str, source: str) -> Config:
    folder = tmp_path / "mytemplates"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(source, encoding="utf-8")
    return site_config(tmp_path, edition={"templates": "mytemplates"})


def test_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    config = _own_templates(
        tmp_path, "edition.mjml.j2", "<mjml>\n<mj-body>\n{% for x in %}\n</mj-body></mjml>"
    )
    with pytest.raises(RenderError) as info:
        Renderer(config)
    assert "mytemplates/edition.mjml.j2, line 3" in str(info.value)


def test_undefined_variable_names_the_file_and_line(tmp_path: Path) -> None:
    config = _own_templates(tmp_path, "edition.txt.j2", "{{ site.name }}\n\n{{ edition.nonsense }}\n")
    with pytest.raises(RenderError) as info:
        Renderer(config).render(many(1))
    message = str(info.value)
    assert "mytemplates/edition.txt.j2, line 3" in message and "nonsense" in message


def test_mjml_that_does_not_compile_names_the_template(tmp_path: Path) -> None:
    source = "<mjml>\n<mj-body>\n<mj-section>\n<mj-column>\n<mj-text>{{ site.name }}</mj-text>\n</mj-body>\n</mjml>\n"
    config = _own_templates(tmp_path, "edition.mjml.j2", source)
    with pytest.raises(RenderError) as info:
        Renderer(config).render(many(1))
    message = str(info.value)
    assert "mytemplates/edition.mjml.j2" in message and "does not compile" in message
    assert "line 6: </mj-body> found while <mj-column> from line 4 is still open" in message


def test_own_templates_fall_back_to_the_built_in_ones(tmp_path: Path) -> None:
    config = _own_templates(tmp_path, "edition.txt.j2", "Just {{ edition.post_count }} posts.\n")
    rendered = Renderer(config).render(many(3))
    assert rendered.text == "Just 3 posts.\n"
    assert "<mj-" not in rendered.html and "Category 0" in rendered.html


def test_missing_templates_folder_is_a_render_error(tmp_path: Path) -> None:
    config = site_config(tmp_path, edition={"templates": "nowhere"})
    with pytest.raises(RenderError, match=r"nowhere: the templates folder set by edition.templates"):
        Renderer(config)


def test_auto_reload_picks_up_an_edited_template(tmp_path: Path) -> None:
    config = _own_templates(tmp_path, "edition.txt.j2", "one\n")
    renderer = Renderer(config, auto_reload=True)
    assert renderer.render(many(1)).text == "one\n"
    path = tmp_path / "mytemplates" / "edition.txt.j2"
    path.write_text("two\n", encoding="utf-8")
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))
    assert renderer.render(many(1)).text == "two\n"


# -- the module-level entry point and speed ---------------------------------------------------------


def test_render_edition_reuses_one_renderer_per_config(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_cache()
    built: list[Config] = []
    original = Renderer.__init__

    def counting(self: Renderer, cfg: Config, **kwargs: Any) -> None:
        built.append(cfg)
        original(self, cfg, **kwargs)

    monkeypatch.setattr(Renderer, "__init__", counting)
    first = render_edition(many(2), config)
    second = render_edition(many(2), config)
    assert first == second and len(built) == 1 and len(SHARED) == 1
    clear_cache()
    assert len(SHARED) == 0


def test_a_renderer_cache_is_its_owners_lru_by_config(config: Config, tmp_path: Path) -> None:
    import dataclasses

    cache = RendererCache(size=2)
    others = [
        dataclasses.replace(config, site=dataclasses.replace(config.site, name=f"S{i}")) for i in range(3)
    ]
    first = cache.get(config)
    assert cache.get(config) is first and len(SHARED) == 0  # the owner's cache, not the shared one
    cache.get(others[0])
    cache.get(config)  # used again: the least recently used is now others[0]
    cache.get(others[1])
    assert len(cache) == 2 and cache.get(config) is first
    assert render_edition(many(2), others[2], renderers=cache).html.count("S2") >= 1
    assert len(cache) == 2 and len(SHARED) == 0
    cache.clear()
    assert len(cache) == 0 and cache.get(config) is not first
    empty = RendererCache()  # an empty cache is still the one to fill, not "none given"
    render_edition(many(2), config, renderers=empty)
    assert len(empty) == 1 and len(SHARED) == 0


def test_ten_post_edition_renders_quickly(renderer: Renderer) -> None:
    """The target is 2 ms (issue 7); this guard is loose so a busy machine does not fail it."""
    edition = many(10)
    renderer.render(edition)
    times = []
    for _ in range(30):
        start = time.perf_counter()
        renderer.render(edition)
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.010


# -- assembling many category sets from pieces ---------------------------------------------------


def test_assembler_matches_render_for_every_category_set(tmp_path: Path) -> None:
    """EditionAssembler (used by a send) gives byte for byte what Renderer.render gives."""
    import itertools

    config = site_config(tmp_path)
    renderer = Renderer(config)
    assembler = renderer.assembler()
    names = ["US & Canada", "Europe", HOSTILE, "Asia"]
    pool = {
        name: [make_item(10 * i + j, title=f"{name} {j} ‘q’ & <i>") for j in range(3)]
        for i, name in enumerate(names)
    }
    editions = []
    for k in range(1, len(names) + 1):
        for chosen in itertools.combinations(names, k):
            sections = tuple(Section(n, tuple(pool[n][: 1 + len(chosen) % 3])) for n in chosen)
            editions.append(make_edition(*sections, categories=chosen))
    editions.append(golden_edition())
    for edition in editions * 2:  # the second round comes from the caches
        assert assembler.render(edition) == renderer.render(edition)
    # Only the first set of each frame is rendered directly, and the shipped template has few
    # frames: it prints the post count and the categories (tokens) and tests only a few things
    # about them (whether there are categories, whether "In this issue" has anything).
    assert assembler.direct <= 3
    assert assembler.assembled == 2 * len(editions) - assembler.direct
    with pytest.raises(EmptyEditionError):
        assembler.render(make_edition(categories=("Europe",)))


def test_assembler_falls_back_when_the_template_uses_categories_in_logic(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    source = (Path(__file__).parent.parent / "templates" / "edition.mjml.j2").read_text(encoding="utf-8")
    source = source.replace("<mj-title>", "<mj-title>{% if 'Europe' in edition.categories %}EU {% endif %}")
    (templates / "edition.mjml.j2").write_text(source, encoding="utf-8")
    renderer = Renderer(site_config(tmp_path, edition={"templates": str(templates)}))
    assembler = renderer.assembler()
    for categories in (("Europe",), ("US",), ("Europe", "US")):
        edition = make_edition(Section("Europe", (make_item(1),)), categories=categories)
        assert assembler.render(edition) == renderer.render(edition)


def test_assembler_falls_back_when_the_text_header_names_the_categories(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    source = (Path(__file__).parent.parent / "templates" / "edition.txt.j2").read_text(encoding="utf-8")
    source = source.replace(
        "{{ site.name | upper | wrap }}",
        "{{ site.name | upper | wrap }} {{ edition.categories | join('/') }}",
    )
    (templates / "edition.txt.j2").write_text(source, encoding="utf-8")
    renderer = Renderer(site_config(tmp_path, edition={"templates": str(templates)}))
    assembler = renderer.assembler()
    section = Section("Europe", (make_item(1), make_item(2)))
    for categories in (("Europe",), ("Europe", "US"), ("Asia", "Europe")):
        edition = make_edition(section, categories=categories)
        assert assembler.render(edition) == renderer.render(edition)


@pytest.mark.parametrize(
    "layout",
    [
        "{% for section in edition.sections %}{{ section.name }}   \n  \n\n\n{% endfor %}",  # whole lines
        "{% for section in edition.sections %}[{{ section.name }}]  {% endfor %}\n",  # sections mid-line
        "{% for section in edition.sections %}\n{{ section.name }} \t{% endfor %}   \n",  # end mid-line
    ],
)
def test_assembled_text_is_tidied_as_the_whole_text_is(tmp_path: Path, layout: str) -> None:
    """Sections tidied once when cached must give what tidying the whole part gives."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "edition.txt.j2").write_text(
        "HEAD   \n\n\n\n"
        + layout
        + "\n\n\nFoot {{ edition.categories | join(', ') }}   \n   \n{{ unsubscribe_url }}",
        encoding="utf-8",
    )
    renderer = Renderer(site_config(tmp_path, edition={"templates": str(templates)}))
    assembler = renderer.assembler()
    pool = [Section(name, (make_item(i),)) for i, name in enumerate(("Europe", "US", "Asia"))]
    for chosen in (pool[:1], pool[1:], pool, pool[:1]):
        edition = make_edition(*chosen, categories=tuple(s.name for s in chosen))
        assert assembler.render(edition).text == renderer.render(edition).text


def test_subject_and_preheader_cached_by_what_they_read_match_fresh_renders(tmp_path: Path) -> None:
    """A template branches only on what it reads, so the cache keyed on those values is exact."""
    edition_keys = {
        "subject": "{% if edition.post_count > 2 %}{{ edition.titles[0] }} +{{ edition.post_count - 1 }}"
        "{% else %}{{ site.name }}: a short week{% endif %}",
        "preheader": "{{ subject }} · {{ edition.categories | join('/') }}",
    }
    config = site_config(tmp_path, edition=edition_keys)
    cached = Renderer(config)
    pool = [make_item(i, title=f"Title {i}") for i in range(6)]
    editions = [
        make_edition(Section("Europe", tuple(pool[a:b])), categories=cats)
        for a, b in ((0, 1), (0, 2), (0, 3), (1, 4), (0, 3), (2, 6), (0, 1))
        for cats in (("Europe",), ("Europe", "US"))
    ]
    for edition in editions:
        fresh = Renderer(config)  # no cache
        got, want = cached.render(edition), fresh.render(edition)
        assert (got.subject, got.preheader) == (want.subject, want.preheader)
    assert cached.render(editions[4]).subject == "Title 0 +2"
    assert cached.render(editions[0]).preheader.endswith("· Europe")
