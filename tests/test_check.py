"""The deliverability check: each check fires on bad input and passes on good (digest.check)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from digest.check import CANIEMAIL_DATA, Finding, caniemail_data, check_edition, has_errors
from digest.config import Config, config_from_dict
from digest.model import PREFERENCES_URL, UNSUBSCRIBE_URL, RenderedEdition

ADDRESS = "The Weekly Brief, 1 Example Street, London N1 1AA, United Kingdom"
GOOD_HEADERS = {
    "List-Unsubscribe": f"<{UNSUBSCRIBE_URL}>, <mailto:unsubscribe@brief.example.com>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def make_config(tmp_path: Path, **sections: dict) -> Config:
    data = {
        "site": {
            "name": "The Weekly Brief",
            "base_url": "https://brief.example.com",
            "postal_address": ADDRESS,
        },
        "sender": {"backend": "sendgrid", "from_email": "brief@example.com", "sending_domain": "example.com"},
        "web": {"base_url": "https://brief.example.com"},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return config_from_dict(data, root=tmp_path)


def make_html(body: str = "", *, footer: str | None = None, head: str = "") -> str:
    footer = (
        footer
        if footer is not None
        else (
            f"<p>{ADDRESS.replace(', ', ',<br> ')}</p>"
            f'<p><a href="{PREFERENCES_URL}">Preferences</a> · <a href="{UNSUBSCRIBE_URL}">Unsubscribe</a></p>'
        )
    )
    return (
        f"<!doctype html><html><head><title>x</title><style>p{{color:#333}}</style>{head}</head><body>"
        '<img src="https://brief.example.com/logo.png" alt="The Weekly Brief">'
        '<h2><a href="https://brief.example.com/us/2026/01/08/rates.html">Rates hold</a></h2>'
        "<p>The central bank &amp; friends held rates.</p>"
        f"{body}{footer}</body></html>"
    )


TEXT = f"Rates hold\nhttps://brief.example.com/us/2026/01/08/rates.html\n\n{ADDRESS}\nUnsubscribe: {UNSUBSCRIBE_URL}\n"


def make_rendered(**changes: object) -> RenderedEdition:
    base = RenderedEdition(
        subject="The Weekly Brief: 3 new posts",
        preheader="This week: Rates hold",
        html=make_html(),
        text=TEXT,
    )
    return dataclasses.replace(base, **changes)


def by_code(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.code, []).append(f)
    return out


def levels(findings: list[Finding], code: str) -> list[str]:
    return [f.level for f in by_code(findings).get(code, [])]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


def test_a_good_edition_passes_every_check(config: Config) -> None:
    findings = check_edition(make_rendered(), config, headers=GOOD_HEADERS)
    assert [f for f in findings if f.level != "ok"] == []
    codes = {f.code for f in findings}
    assert {
        "html-size",
        "text-part",
        "list-unsubscribe",
        "one-click",
        "unsubscribe-link",
        "postal-address",
        "from-domain",
        "image-alt",
        "links",
        "subject",
        "caniemail",
    } <= codes
    assert not has_errors(findings)


def test_without_headers_the_placeholder_stands_in(config: Config) -> None:
    findings = check_edition(make_rendered(), config)
    assert "list-unsubscribe" not in by_code(findings)
    assert levels(findings, "unsubscribe-link") == ["ok"]


# --- size ------------------------------------------------------------------------------------


def test_html_over_the_clip_limit_warns(config: Config) -> None:
    big = make_rendered(html=make_html("<p>" + "x" * 110_000 + "</p>"))
    findings = check_edition(big, config, headers=GOOD_HEADERS)
    [size] = by_code(findings)["html-size"]
    assert size.level == "warning" and "clips" in size.message and size.fix


def test_html_near_the_limit_warns_counting_the_filled_in_links(tmp_path: Path) -> None:
    config = make_config(tmp_path, edition={"clip_warning_bytes": 2_000})
    html = make_html("<p>" + "x" * 1_250 + "</p>")
    assert len(html.encode()) < 1_800  # under 90% as rendered ...
    [size] = by_code(check_edition(make_rendered(html=html), config))["html-size"]
    assert size.level == "warning" and "personal links filled in" in size.message  # ... not as sent


# --- text part, unsubscribe, one-click -------------------------------------------------------


def test_missing_text_part_is_an_error(config: Config) -> None:
    findings = check_edition(make_rendered(text="  \n"), config, headers=GOOD_HEADERS)
    assert levels(findings, "text-part") == ["error"] and has_errors(findings)


def test_missing_list_unsubscribe_headers_are_errors(config: Config) -> None:
    findings = check_edition(make_rendered(), config, headers={"List-Unsubscribe": "<mailto:u@example.com>"})
    assert levels(findings, "list-unsubscribe") == ["error"]
    assert levels(findings, "one-click") == ["error"]
    findings = check_edition(
        make_rendered(),
        config,
        headers={"list-unsubscribe": "<https://brief.example.com/u/abc>", "LIST-UNSUBSCRIBE-POST": "yes"},
    )
    assert levels(findings, "list-unsubscribe") == ["ok"]  # header names are case-insensitive
    assert levels(findings, "one-click") == ["error"]


def test_missing_unsubscribe_link_is_an_error(config: Config) -> None:
    html = make_html(footer=f"<p>{ADDRESS}</p>")
    findings = check_edition(make_rendered(html=html), config)
    assert levels(findings, "unsubscribe-link") == ["error"]
    text_only = check_edition(make_rendered(text=TEXT.replace(UNSUBSCRIBE_URL, "")), config)
    assert levels(text_only, "unsubscribe-link") == ["warning"]


def test_local_web_base_url_is_an_error_for_real_mail_and_a_warning_for_the_outbox(tmp_path: Path) -> None:
    real = make_config(tmp_path, web={"base_url": "http://127.0.0.1:8000"})
    assert levels(check_edition(make_rendered(), real), "unsubscribe-url") == ["error"]
    outbox = make_config(tmp_path, web={"base_url": "http://127.0.0.1:8000"}, sender={"backend": "outbox"})
    assert levels(check_edition(make_rendered(), outbox), "unsubscribe-url") == ["warning"]


# --- postal address and From domain ----------------------------------------------------------


def test_missing_postal_address_is_an_error(config: Config) -> None:
    html = make_html(footer=f'<a href="{UNSUBSCRIBE_URL}">Unsubscribe</a>')
    findings = check_edition(make_rendered(html=html), config)
    assert levels(findings, "postal-address") == ["error"]
    no_text = check_edition(make_rendered(text=TEXT.replace(ADDRESS, "")), config)
    assert levels(no_text, "postal-address") == ["warning"]


def test_empty_or_example_postal_address(tmp_path: Path) -> None:
    empty = make_config(tmp_path, site={"postal_address": ""})
    assert levels(check_edition(make_rendered(), empty), "postal-address") == ["error"]
    default = make_config(tmp_path)
    default = dataclasses.replace(
        default, site=dataclasses.replace(default.site, postal_address=Config().site.postal_address)
    )
    findings = check_edition(make_rendered(), default)
    assert levels(findings, "postal-address-default") == ["error"]


def test_postal_address_with_escaped_characters_is_found(tmp_path: Path) -> None:
    address = "Smith & Sons, 2 Long Road, Leeds"
    config = make_config(tmp_path, site={"postal_address": address})
    html = make_html(
        footer=f'<p>Smith &amp; Sons<br>2 Long Road<br>Leeds</p><a href="{UNSUBSCRIBE_URL}">u</a>'
    )
    findings = check_edition(make_rendered(html=html, text=f"{address}\n{UNSUBSCRIBE_URL}"), config)
    assert levels(findings, "postal-address") == ["ok"]


@pytest.mark.parametrize(
    ("from_email", "domain", "level"),
    [
        ("brief@example.com", "example.com", "ok"),
        ("brief@news.example.com", "example.com", "ok"),  # subdomain: DMARC relaxed alignment
        ("brief@example.com", "em.example.com", "ok"),
        ("brief@gmail.com", "example.com", "error"),
        ("brief@example.com.evil.net", "example.com", "error"),
    ],
)
def test_from_domain(tmp_path: Path, from_email: str, domain: str, level: str) -> None:
    config = make_config(tmp_path, sender={"from_email": from_email, "sending_domain": domain})
    assert levels(check_edition(make_rendered(), config), "from-domain") == [level]


def test_from_header_wins_over_config(config: Config) -> None:
    headers = {**GOOD_HEADERS, "From": "The Brief <brief@other.org>"}
    assert levels(check_edition(make_rendered(), config, headers=headers), "from-domain") == ["error"]


# --- images, links, subject ------------------------------------------------------------------


def test_image_without_alt_warns_and_empty_alt_is_fine(config: Config) -> None:
    html = make_html(
        '<img src="https://brief.example.com/a.png"><img src="https://brief.example.com/b.png" alt="">'
    )
    [finding] = by_code(check_edition(make_rendered(html=html), config))["image-alt"]
    assert finding.level == "warning" and "1 image" in finding.message and "a.png" in finding.message


@pytest.mark.parametrize(
    ("snippet", "code", "level"),
    [
        ('<a href="/us/2026/rates.html">x</a>', "links-absolute", "error"),
        ('<img src="images/chart.png" alt="chart">', "links-absolute", "error"),
        ('<a href="http://brief.example.com/x">x</a>', "links-https", "warning"),
        ('<a href="javascript:alert(1)">x</a>', "links-scheme", "error"),
        ('<a href="https://localhost:8000/x">x</a>', "links-local", "error"),
    ],
)
def test_bad_links(config: Config, snippet: str, code: str, level: str) -> None:
    findings = check_edition(make_rendered(html=make_html(snippet)), config)
    assert levels(findings, code) == [level]
    assert "links" not in by_code(findings)


def test_placeholders_mailto_and_anchors_are_fine(config: Config) -> None:
    html = make_html('<a href="mailto:editor@example.com">mail</a><a href="#top">top</a>')
    assert levels(check_edition(make_rendered(html=html), config), "links") == ["ok"]


@pytest.mark.parametrize(
    ("subject", "level"),
    [
        ("", "error"),
        ("{{ site.name }}: 3 new posts", "error"),
        ("A" * 90, "warning"),
        ("The Weekly Brief: 3 new posts", "ok"),
    ],
)
def test_subject(config: Config, subject: str, level: str) -> None:
    assert levels(check_edition(make_rendered(subject=subject), config), "subject") == [level]


def test_empty_preheader_warns(config: Config) -> None:
    assert levels(check_edition(make_rendered(preheader=""), config), "preheader") == ["warning"]


def test_renderer_warnings_are_passed_on(config: Config) -> None:
    findings = check_edition(make_rendered(warnings=("posts/a.md: image has no alt",)), config)
    assert levels(findings, "render") == ["warning"]


# --- email-client support (caniemail) --------------------------------------------------------


@pytest.mark.parametrize(
    ("snippet", "slug"),
    [
        ('<div style="display: flex">x</div>', "css-display-flex"),
        ('<div style="display:grid">x</div>', "css-display-grid"),
        ('<div style="position:absolute;top:0">x</div>', "css-position"),
        ('<p style="color: var(--ink)">x</p>', "css-variables"),
        ("<svg><circle r='2'/></svg>", "html-svg"),
        ('<img src="https://brief.example.com/a.webp" alt="a">', "image-webp"),
        ('<img src="data:image/png;base64,AAAA" alt="a">', "image-base64"),
        ('<p style="box-shadow: 0 0 2px #000">x</p>', "css-box-shadow"),
    ],
)
def test_client_support_lints(config: Config, snippet: str, slug: str) -> None:
    findings = check_edition(make_rendered(html=make_html(snippet)), config)
    [finding] = by_code(findings)[f"caniemail:{slug}"]
    assert finding.level == "warning" and "not supported by" in finding.message
    assert f"caniemail.com/features/{slug}" in finding.fix
    assert "caniemail" not in by_code(findings)


def test_outlook_only_conditional_comments_are_not_linted(config: Config) -> None:
    html = make_html(
        '<!--[if mso | IE]><table><tr><td style="position:relative"><![endif]-->'
        '<!--[if !mso]><!--><div style="max-width:600px">x</div><!--<![endif]-->'
    )
    assert levels(check_edition(make_rendered(html=html), config), "caniemail") == ["ok"]
    # ... but what the non-Outlook branch shows is linted.
    html = make_html('<!--[if !mso]><!--><div style="display:flex">x</div><!--<![endif]-->')
    assert levels(check_edition(make_rendered(html=html), config), "caniemail:css-display-flex") == [
        "warning"
    ]


def test_css_words_in_prose_are_not_linted(config: Config) -> None:
    html = make_html("<p>Their position: absolute. The transform: slow. display: flex</p>")
    assert levels(check_edition(make_rendered(html=html), config), "caniemail") == ["ok"]
    html = make_html("<style>.card{transform: rotate(2deg)}</style>")
    assert levels(check_edition(make_rendered(html=html), config), "caniemail:css-transform") == ["warning"]


def test_caniemail_data_is_small_and_names_its_source_and_licence() -> None:
    data = caniemail_data()
    assert CANIEMAIL_DATA.stat().st_size < 20_000
    assert data["source"] == "https://github.com/hteumeuleu/caniemail" and "MIT" in data["licence"]
    assert (CANIEMAIL_DATA.parent / "LICENSE-caniemail.txt").exists()
    assert (CANIEMAIL_DATA.parent / "README.md").read_text().count("caniemail") >= 2
    for feature in data["features"]:
        assert set(feature["support"].values()) <= {"y", "a", "n", "u"}
    json.dumps(data)
