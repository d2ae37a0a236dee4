"""A send's assembled email is byte for byte the email ``Renderer.render`` makes, for any template.

Every set of 6 categories (63 of them) goes through ``EditionAssembler`` (what every real send
uses) and through a direct render, for the shipped templates and for templates written to trip
an assembler up: branching on the reader's categories, on counts, on section names, on loop
indices, a per-section "new" badge, per-reader links, a namespace counted across sections, a
table of contents. The order sets arrive in is drawn by Hypothesis (and run forwards and
backwards), because a check that trusts the first set of each kind passes in one order and
fails in another.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.config import Config, config_from_dict
from digest.model import Edition, Item, RenderedEdition, Section
from digest.render import Renderer

START = datetime(2026, 1, 2, tzinfo=UTC)
CATEGORIES = ("US", "Europe", "Markets", "Asia & Pacific", 'Tech <b>"x"</b>', "Climate")


def _item(n: int, title: str) -> Item:
    return Item(
        post_path=f"posts/{n}.md",
        title=title,
        url=f"https://example.com/{n}.html",
        date=START + timedelta(hours=7 + 17 * n),
        lead_html=f"Lead {n} with <em>markup</em> &amp; more.",
        lead_text=f"Lead {n} with markup & more.",
        source_site="ft.com" if n % 3 == 0 else None,
    )


def _pool() -> dict[str, tuple[Item, ...]]:
    """Items per category; some items are in two categories (the same object, as a send has)."""
    titles = [
        "Fed holds rates",
        "Café prices rise",  # composed é
        "Cafe\u0301 society",  # e + combining acute: MRML writes \u{301} in mj-title's aria-label
        "Markets\u00a0rally",  # no-break space: MRML writes \u{a0} there
        "Tokyo 東京 ☕",
        "O'Brien's \"quoted\" <b>bold</b> & co",
        "Wind farms",
        "Chips",
        "Bonds",
    ]
    items = [_item(n, t) for n, t in enumerate(titles)]
    return {
        "US": (items[0], items[5]),
        "Europe": (items[1], items[2], items[8]),
        "Markets": (items[3], items[8]),  # items[8] also in Europe
        "Asia & Pacific": (items[4],),
        'Tech <b>"x"</b>': (items[7], items[5]),  # items[5] also in US
        "Climate": (items[6],),
    }


POOL = _pool()
SETS = [chosen for k in range(1, 7) for chosen in itertools.combinations(CATEGORIES, k)]


def _edition(chosen: tuple[str, ...]) -> Edition:
    return Edition(
        id="2026-W02",
        window_start=START,
        window_end=START + timedelta(days=7),
        categories=chosen,
        sections=tuple(Section(name, POOL[name]) for name in chosen),
    )


# -- templates ------------------------------------------------------------------------------------

MJML = """{%- set rule = "·" -%}{{ TOP }}
<mjml><mj-head><mj-title>{{ subject }}</mj-title><mj-preview>{{ preheader }}</mj-preview>
<mj-attributes><mj-all font-family="Arial"/>{{ ATTRS }}</mj-attributes></mj-head>
<mj-body><mj-section><mj-column><mj-text><h1>{{ site.name }}</h1>
<p>{{ edition.post_count }} new {{ rule }}{{ HEAD }}</p></mj-text></mj-column></mj-section>
{%- for section in edition.sections %}
<mj-section><mj-column><mj-text><h2>{{ section.name }}</h2>{{ SECTION }}</mj-text>
{%- for item in section.items %}
<mj-text><a href="{{ item.url }}">{{ item.title }}</a> {{ item.date | date }}{{ ITEM }}</mj-text>
{%- endfor %}
</mj-column></mj-section>
{%- endfor %}
<mj-section><mj-column><mj-text>You chose {{ edition.categories | join(", ") }}.{{ FOOT }}
<a href="{{ preferences_url }}">Preferences</a> <a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>
</mj-column></mj-section></mj-body></mjml>
"""

TEXT = """{%- set rule = "-" * 20 -%}{{ TOP }}
{{ site.name }}: {{ edition.post_count }} new{{ HEAD }}
{% for section in edition.sections %}

{{ rule }}
{{ section.name | upper }}{{ SECTION }}
{% for item in section.items %}
{{ item.title }} ({{ item.date | date }}){{ ITEM }}
{{ item.url }}
{% endfor %}
{% endfor %}

You chose {{ edition.categories | join(", ") }}.{{ FOOT }}
Unsubscribe: {{ unsubscribe_url }}
"""

# name -> the snippets put into both templates. Each would be wrong if assembled naively.
TRICKS: dict[str, dict[str, str]] = {
    "plain": {},
    "categories branch (issue 14)": {"FOOT": '{% if "Markets" in edition.categories %} MARKETS{% endif %}'},
    "categories in a section": {
        "SECTION": "{% if section.name in edition.categories[:2] %} top pick{% endif %}"
    },
    "count in a section": {"SECTION": "{% if edition.post_count > 6 %} busy week{% endif %}"},
    "count in the frame": {"HEAD": "{% if edition.post_count == 1 %} (just one){% endif %}"},
    "loop index": {"SECTION": " {{ loop.index }}/{{ loop.length }}"},
    "new badge on the first section": {"SECTION": "{% if loop.first %} NEW{% endif %}"},
    "new badge by date (the same in every set)": {
        "ITEM": "{% if (item.date | isodate) > (edition.first_day | isodate) %} new{% endif %}"
    },
    "new badge unless the reader chose it first": {
        "SECTION": "{% if section.name != edition.categories[0] %} new to you{% endif %}"
    },
    "namespace counted across sections": {
        "TOP": "{% set ns = namespace(n=0) %}",
        "SECTION": "{% set ns.n = ns.n + section.items | length %} #{{ ns.n }}",
    },
    "per-reader links in sections and logic": {
        "SECTION": ' <a href="{{ preferences_url }}">stop {{ section.name }}</a>',
        "FOOT": "{% if unsubscribe_url %} [{{ unsubscribe_url | length }}]{% endif %}",
    },
    "subject in logic": {"HEAD": "{% if subject | length > 40 %} long{% endif %}"},
    "categories counted, joined twice": {
        "HEAD": " in {{ edition.categories | length }}",
        "FOOT": " ({{ edition.categories | join(' / ') }})",
    },
    "a table of contents": {"HEAD": "{% for s in edition.sections %} [{{ s.name }}]{% endfor %}"},
    "section names across sections": {
        "SECTION": "{% if section.name == edition.sections[-1].name %} last{% endif %}"
    },
    "titles in the frame": {"HEAD": " first: {{ edition.titles[0] }}"},
    "count in mj-attributes (changes how every section compiles)": {
        "ATTRS": '<mj-text font-size="{{ 14 if edition.post_count > 4 else 16 }}px"/>'
    },
    "count in an attribute of the frame": {
        "HEAD": '</p></mj-text><mj-image src="https://example.com/{{ edition.post_count }}.png" alt="n"/><mj-text><p>'
    },
    "the last section, by a set in the loop": {"SECTION": "{% set rule = loop.last %}{{ rule }}"},
    "categories listed in the footer": {
        "FOOT": "{% for c in edition.categories %} [{{ c | upper }}]{% endfor %}"
    },
    "a count set once, tested and printed": {
        "TOP": "{% set n = edition.post_count %}",
        "HEAD": "{% if n > 3 %} many{% endif %} ({{ n }})",
    },
    "an expression that fails where it is not used": {
        "HEAD": "{% if edition.post_count > 3 %} fourth: {{ edition.titles[3] }}{% endif %}"
    },
    "a printed value captured by a set block": {
        "HEAD": '{% set t %}{{ edition.post_count }}{% endset %}{% if t == "3" %} three{% endif %}'
    },
    "autoescape off around a value": {"HEAD": "{% autoescape false %} {{ subject }}{% endautoescape %}"},
}


def _fill(template: str, snippets: dict[str, str]) -> str:
    for slot in ("TOP", "ATTRS", "HEAD", "SECTION", "ITEM", "FOOT"):
        template = template.replace("{{ " + slot + " }}", snippets.get(slot, ""))
    return template


def _config(tmp_path: Path, trick: str | None) -> Config:
    data: dict[str, Any] = {
        "site": {
            "name": "The Weekly Digest",
            "base_url": "https://example.com",
            "timezone": "America/New_York",
            "postal_address": "1 High Street, London",
        }
    }
    if trick is not None:
        folder = tmp_path / "templates"
        folder.mkdir(exist_ok=True)
        (folder / "edition.mjml.j2").write_text(_fill(MJML, TRICKS[trick]), encoding="utf-8")
        (folder / "edition.txt.j2").write_text(_fill(TEXT, TRICKS[trick]), encoding="utf-8")
        data["edition"] = {"templates": str(folder)}
    return config_from_dict(data, root=tmp_path)


CASES = [None, *TRICKS]  # None: the shipped templates
_DIRECT: dict[str | None, tuple[Renderer, dict[tuple[str, ...], RenderedEdition]]] = {}


def _direct(
    trick: str | None, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Renderer, dict[tuple[str, ...], RenderedEdition]]:
    """The renderer and every set's direct render, made once per template."""
    if trick not in _DIRECT:
        renderer = Renderer(_config(tmp_path_factory.mktemp("t"), trick))
        _DIRECT[trick] = (renderer, {chosen: renderer.render(_edition(chosen)) for chosen in SETS})
    return _DIRECT[trick]


def _check_order(
    renderer: Renderer, direct: dict[tuple[str, ...], RenderedEdition], order: list[int]
) -> None:
    assembler = renderer.assembler()  # a fresh one: nothing learnt from another order
    for i in order:
        chosen = SETS[i]
        got = assembler.render(_edition(chosen))
        want = direct[chosen]
        assert got.html == want.html, f"HTML differs for {chosen} (set {order.index(i) + 1} in this order)"
        assert got.text == want.text, f"text differs for {chosen} (set {order.index(i) + 1} in this order)"
        assert got == want


@pytest.mark.parametrize("trick", CASES, ids=lambda t: t or "shipped templates")
@pytest.mark.parametrize("direction", ["forwards", "backwards"])
def test_every_set_assembles_as_it_renders(
    trick: str | None, direction: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    renderer, direct = _direct(trick, tmp_path_factory)
    order = list(range(len(SETS)))
    _check_order(renderer, direct, order if direction == "forwards" else order[::-1])


@pytest.mark.parametrize("trick", CASES, ids=lambda t: t or "shipped templates")
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(SETS))))
def test_every_set_assembles_as_it_renders_in_any_order(
    trick: str | None, order: list[int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    renderer, direct = _direct(trick, tmp_path_factory)
    _check_order(renderer, direct, list(order))


def test_the_shipped_templates_are_assembled(tmp_path: Path) -> None:
    """The fast path is in use for the shipped templates (only sets with a character MRML
    changes in mj-title's aria-label, and each frame's first set, are rendered directly)."""
    renderer = Renderer(_config(tmp_path, None))
    assembler = renderer.assembler()
    for chosen in SETS:
        assembler.render(_edition(chosen))
    assert assembler.reason is None
    assert assembler.assembled > assembler.direct


@pytest.mark.parametrize(
    ("trick", "reason"),
    [
        ("categories in a section", "each section's part reads edition.categories"),
        ("loop index", "`loop` (its position among the sections)"),
        ("namespace counted across sections", "the namespace `ns`"),
        ("a table of contents", "loops over edition.sections more than once"),
        ("the last section, by a set in the loop", "sets rule, a name also used outside it"),
    ],
)
def test_a_template_that_cannot_be_assembled_says_why(tmp_path: Path, trick: str, reason: str) -> None:
    assembler = Renderer(_config(tmp_path, trick)).assembler()
    assembler.render(_edition(("US", "Europe")))
    assert assembler.reason is not None and reason in assembler.reason
    assert assembler.assembled == 0


def test_a_template_whose_mjml_does_not_compile_fails_as_a_direct_render_does(tmp_path: Path) -> None:
    """The assembler never hides an error, nor makes one up: it renders directly and says what
    the direct render says."""
    from digest.errors import RenderError

    config = _config(tmp_path, "plain")
    broken = _fill(MJML, {"SECTION": "{% if section.name == 'Markets' %}</mj-column>{% endif %}"})
    (tmp_path / "templates" / "edition.mjml.j2").write_text(broken, encoding="utf-8")
    renderer = Renderer(config)
    assembler = renderer.assembler()
    for chosen in SETS[:20]:
        edition = _edition(chosen)
        try:
            want: RenderedEdition | str = renderer.render(edition)
        except RenderError as exc:
            want = str(exc)
        try:
            got: RenderedEdition | str = assembler.render(edition)
        except RenderError as exc:
            got = str(exc)
        assert got == want, chosen


def test_the_preview_says_whether_a_send_assembles_the_template(tmp_path: Path) -> None:
    from digest.preview.build import send_speed

    edition = _edition(("US", "Markets"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert send_speed(_config(tmp_path / "a", None), edition).level == "ok"
    slow = send_speed(_config(tmp_path / "b", "loop index"), edition)
    assert slow.level == "warning" and "`loop` (its position among the sections)" in slow.message
