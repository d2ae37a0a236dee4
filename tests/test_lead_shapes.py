"""The shapes of real posts that issue 13 found broken: each as a small post, and the lead an
editor would pick for it."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.lead.rubric import problems
from digest.model import Item, Post, PostImage
from digest.summarize import summarize

URL = "https://example.com/blog/2026/01/08/post.html"


def lead(body: str, *, title: str = "A title", author: str | None = None, **kw: object) -> Item:
    post = Post(
        path="p.md",
        title=title,
        date=datetime(2026, 1, 8, tzinfo=ZoneInfo("UTC")),
        categories=(),
        body=body,
        slug="post",
        author=author,
    )
    return summarize(post, url=URL, **kw)  # type: ignore[arg-type]


REAL = "The scheduler now retries failed jobs on its own, so a flaky node no longer stalls a whole run."


@pytest.mark.parametrize(
    ("credit", "names"),
    [
        ("**Author:** Ann Lee (Acme)", "Ann Lee"),
        ("**Authors:** Ann Lee (Acme), Bo Chan (Initech), and Cy Dee", "Ann Lee, Bo Chan, Cy Dee"),
        ("**Authors & Interviewers:** Ann Lee, Bo Chan", "Ann Lee, Bo Chan"),
        ("Note taker: Ann Lee", "Ann Lee"),
        ("Today's guest post is by Ann Lee, a maintainer at Acme.", "Ann Lee"),
        ("*By Ann Lee*", "Ann Lee"),
    ],
)
def test_credit_line_is_not_the_lead_and_becomes_the_author(credit: str, names: str) -> None:
    item = lead(f"{credit}\n\n{REAL}")
    assert item.lead_text == REAL
    assert item.author == names


def test_front_matter_author_wins_over_a_credit_line() -> None:
    assert lead(f"**Author:** Someone Else\n\n{REAL}", author="Ann Lee").author == "Ann Lee"


def test_credit_lines_inside_the_first_paragraph_are_dropped() -> None:
    item = lead(f"**Author:** Ann Lee (Acme)\n**Editor:** Bo Chan\n{REAL}")
    assert item.lead_text == REAL
    assert item.author == "Ann Lee, Bo Chan"


@pytest.mark.parametrize(
    "noise",
    [
        "Hi Jekyllers,",
        "Hello everyone!",
        "*Editor's note: this post was first published on the Acme blog.*",
        "**Update (2026-01-09):** the release is out now.",
        "Posted on March 3, 2020",
        "January 8, 2026",
        "Read the full release notes [here](https://example.org/notes).",
        "This post was originally published on [Medium](https://medium.com/x).",
    ],
)
def test_greetings_notices_datelines_and_pointers_are_passed_over(noise: str) -> None:
    assert lead(f"{noise}\n\n{REAL}").lead_text == REAL


def test_greeting_on_the_first_line_of_the_paragraph_is_dropped() -> None:
    item = lead(f"Hey Jekyllers,\n{REAL}")
    assert item.lead_text == REAL
    assert not problems(item)


def test_a_second_paragraph_only_when_the_first_is_short() -> None:
    short = "Version 2 is out."
    assert lead(f"{short}\n\n{REAL}").lead_text == f"{short}\n\n{REAL}"
    assert lead(f"{REAL} {REAL}\n\n{short}").lead_text == f"{REAL} {REAL}"
    assert lead(f"{short}\n\n{REAL}", min_words=3).lead_text == short
    html = lead(f"{short}\n\n{REAL}").lead_html
    assert html == f"<p>{short}</p><p>{REAL}</p>"


def test_list_indented_two_spaces_after_a_colon_is_a_short_list() -> None:
    body = "This release brings many fixes, including:\n\n  - one\n  - two\n  - three\n  - four\n  - five\n"
    item = lead(body)
    assert item.lead_text == "This release brings many fixes, including:\n\n- one\n\n- two\n\n- three\n\n- …"
    assert item.lead_html.endswith("<ul><li>one</li><li>two</li><li>three</li><li>…</li></ul>")
    assert not problems(item)


def test_a_colon_with_no_list_after_it_loses_its_sentence() -> None:
    body = f"{REAL} Install it with:\n\n```\nnpm i x\n```\n"
    assert lead(body).lead_text == REAL


def test_never_a_dangling_colon_when_only_the_colon_sentence_exists() -> None:
    item = lead(f"Install it with:\n\n```\nnpm i x\n```\n\n{REAL}")
    assert item.lead_text == REAL


def test_footer_after_the_list_does_not_beat_the_list() -> None:
    item = lead("- First change\n- Second change\n\nPowered by Blogger")
    assert item.lead_text == "- First change\n\n- Second change"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{{< alert title="Note" >}}This is a notice.{{< /alert >}}\n\n' + REAL, REAL),
        ("{{% notice warning %}}\nCareful now.\n{{% /notice %}}\n\n" + REAL, REAL),
        ("Hugo {{< gh 123 >}} and {{% param x %}} are gone. " + REAL, "Hugo and are gone. " + REAL),
        (
            'A [link](https://x.org){:target="_blank"} and more words here.' + "{: .lead}",
            "A link <https://x.org> and more words here.",
        ),
        (
            "See [#1037][] and [the docs][nowhere] for the full story of it all.",
            "See #1037 and the docs for the full story of it all.",
        ),
        ("A footnote[^1] marker is dropped here.\n\n[^1]: The note.", "A footnote marker is dropped here."),
        ("We shipped it :tada: and it works :+1:.", "We shipped it 🎉 and it works 👍."),
        (
            "Entities &amp; more: &lt;b&gt; stay text &amp;amp; once.",
            "Entities & more: <b> stay text &amp; once.",
        ),
        ("![a picture](https://example.org/a-very-long/\npath.png) " + REAL, REAL),
    ],
)
def test_no_markup_leftovers(body: str, expected: str) -> None:
    item = lead(body)
    assert item.lead_text == expected


def test_a_cut_inside_emphasis_leaves_no_lone_marker() -> None:
    body = "Intro words here. _" + "very long italic words " * 40 + "end._ After."
    item = lead(body, word_budget=20)
    assert "_" not in item.lead_text and "*" not in item.lead_text
    assert item.lead_html.count("<em>") == item.lead_html.count("</em>")


def test_text_part_keeps_link_targets_and_code_marks() -> None:
    item = lead("See the [plugin API](/docs/plugins/) and `jekyll build` for more on this topic.")
    assert item.lead_text == (
        "See the plugin API <https://example.com/docs/plugins/> and `jekyll build` for more on this topic."
    )


def test_liquid_links_resolve_or_keep_their_text() -> None:
    def resolve(kind: str, target: str) -> str | None:
        return "https://example.com/2010/07/08/other.html" if "other" in target else None

    body = (
        "Read [the other post]({% post_url 2010-07-08-other %}) and "
        "[the history]({% link _docs/history.md %}#v3-9-4) before you upgrade to this version."
    )
    item = lead(body, resolve=resolve)
    assert '<a href="https://example.com/2010/07/08/other.html">the other post</a>' in item.lead_html
    assert "the history" in item.lead_html and "v3-9-4" not in item.lead_html


def test_a_link_without_a_scheme_is_https_not_a_page_of_the_site() -> None:
    item = lead("The code is on [GitHub](github.com/acme/x) for anyone to read and improve.")
    assert '<a href="https://github.com/acme/x">GitHub</a>' in item.lead_html


def test_a_bundle_image_is_under_the_page_url_others_are_left_to_the_pipeline() -> None:
    def item(path: str, image: str) -> Item:
        post = Post(
            path=path,
            title="T",
            date=datetime(2026, 1, 8, tzinfo=ZoneInfo("UTC")),
            categories=(),
            body=REAL,
            slug="p",
            image=PostImage(image, "alt"),
        )
        return summarize(post, url="https://example.com/news/p/")

    assert item("p/index.md", "./featured.png").image == PostImage(
        "https://example.com/news/p/featured.png", "alt"
    )
    assert item("p/index.md", "/img/a.png").image is None  # site-relative: digest.images resolves it
    assert item("p/index.md", "images/poster.png").image is None  # Hugo's static/: the site's path
    assert item("p.md", "a.png").image is None


_WORDS = st.sampled_from(
    [
        "word",
        "**bold**",
        "_it_",
        "*em",
        "_x",
        "[l](/a)",
        "`c`",
        "{: .x}",
        ":tada:",
        "&amp;",
        "a.",
        "b:",
        "\n",
        "\n\n",
        "- ",
        "> ",
        "# ",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_WORDS, min_size=1, max_size=60), st.integers(min_value=3, max_value=80))
def test_any_markdown_gives_a_lead_without_leaked_markup(words: list[str], budget: int) -> None:
    item = lead(" ".join(words), word_budget=budget)
    leaked = [p for p, _ in problems(item) if p in ("markup leaked", "dangling colon", "credit line first")]
    assert not leaked, (item.lead_text, problems(item))
    assert item.lead_html.count("<em>") == item.lead_html.count("</em>")
    assert item.lead_html.count("<strong>") == item.lead_html.count("</strong>")


def test_a_short_first_paragraph_then_a_colon_paragraph_takes_the_list() -> None:
    body = (
        "We are pleased to announce the release of Ruby 2.7.0.\n\n"
        "It introduces a number of new features, most notably:\n\n* Pattern Matching\n* REPL improvement\n"
    )
    assert lead(body).lead_text == (
        "We are pleased to announce the release of Ruby 2.7.0.\n\n"
        "It introduces a number of new features, most notably:\n\n- Pattern Matching\n\n- REPL improvement"
    )


@pytest.mark.parametrize(
    "noise",
    [
        "*Photo by Ann Lee on Unsplash*",
        "Figure 1: the architecture of the new scheduler",
        "[Read more on our blog →](https://example.org/blog)",
        '{{< figure src="/images/a.png" caption="A caption" >}}',
        "**Note:** this feature is in beta.",
    ],
)
def test_captions_and_read_more_links_are_passed_over(noise: str) -> None:
    assert lead(f"{noise}\n\n{REAL}").lead_text == REAL


def test_jekyll_release_post_with_greeting_emoji_and_liquid_issue_links() -> None:
    body = (
        "Hey Jekyllers,\n\nQuick bug-fix release for you all today:\n\n"
        "1. Fixes a regression in `jekyll serve` :tada:\n"
        "2. Adds a port option ([#1037]({{ site.repository }}/pull/1037))\n3. Three\n4. Four\n"
    )
    item = lead(body)
    assert item.lead_text == (
        "Quick bug-fix release for you all today:\n\n- Fixes a regression in `jekyll serve` 🎉\n\n"
        "- Adds a port option\n\n- Three\n\n- …"
    )
    assert lead("Hi Jekyllers! :wave:\n\n" + REAL).lead_text == REAL


def test_a_posted_by_footer_names_the_author_not_the_time() -> None:
    item = lead("- Alpha release\n- Beta release\n\nPosted by John at 10:00 AM\n\nPowered by Blogger")
    assert item.author == "John"
    assert item.lead_text == "- Alpha release\n\n- Beta release"


@pytest.mark.parametrize(
    "toc",
    [
        "## Contents\n\n- [Intro](#intro)\n- [Setup](#setup)\n- [Usage](#usage)",
        '<ul class="toc"><li><a href="#a">Intro</a></li><li><a href="#b">Setup</a></li></ul>',
    ],
)
def test_a_table_of_contents_is_never_the_lead(toc: str) -> None:
    assert lead(f"{toc}\n\n## Intro\n\n{REAL}").lead_text == REAL


def test_a_repeated_link_target_is_written_once_in_text() -> None:
    item = lead("[OBS](https://obs.example/) builds it and [OBS](https://obs.example/) ships it to everyone.")
    assert item.lead_text == "OBS <https://obs.example/> builds it and OBS ships it to everyone."


def test_check_and_preview_advice_names_the_post_and_what_to_do() -> None:
    from digest.check import check_leads
    from digest.lead.rubric import advice
    from digest.model import Edition, Section

    weak = lead("Install it with:\n\n    npm i x\n")  # only a colon sentence: nothing left
    assert advice(weak) == ["lead of p.md no prose found: add an `excerpt:` to the front matter"]
    good = lead(REAL)
    when = datetime(2026, 1, 8, tzinfo=ZoneInfo("UTC"))
    edition = Edition("2026-W02", when, when, (), (Section("News", (weak, good)),))
    findings = check_leads(edition)
    assert [(f.level, f.code) for f in findings] == [("warning", "lead")]
    assert "p.md" in findings[0].message and "excerpt" in findings[0].message
    clean = Edition("2026-W02", when, when, (), (Section("News", (good,)),))
    assert [f.level for f in check_leads(clean)] == ["ok"]


def test_markdown_inside_a_broken_html_table_is_not_a_lead() -> None:
    body = (
        '<table>\n<tr>\n\n<td width="105" >**Nickname:**\n</td>\n\n<td>I use none\n</td>\n</tr>\n</table>\n\n'
        + REAL
    )
    assert lead(body).lead_text == REAL


def test_a_bold_line_closed_on_the_next_line_leaves_no_stars() -> None:
    item = lead("**A Professional Distribution for Developers and Users\n**\n\n" + REAL)
    assert "*" not in item.lead_text


def test_changelog_label_items_take_their_nested_line_and_link_paragraphs_are_passed_over() -> None:
    body = "- **cluster**\n  - add cwd to cluster.settings (cjihrig)\n- **http, tls**:\n  - IPv6 support\n"
    assert (
        lead(body).lead_text
        == "- cluster: add cwd to cluster.settings (cjihrig)\n\n- http, tls: IPv6 support"
    )
    langs = "(Languages: [DE](https://de.example/), [ES](https://es.example/), [FR](https://fr.example/))"
    assert lead(f"{langs}\n\n{REAL}").lead_text == REAL


def test_an_excerpt_that_is_only_a_notice_gives_way_to_the_body() -> None:
    post = Post(
        path="p.md",
        title="T",
        date=datetime(2026, 1, 8, tzinfo=ZoneInfo("UTC")),
        categories=(),
        body=f"This blog is part of a series of technical posts about Leap.\n\n<!--more-->\n\n{REAL}",
        slug="p",
        excerpt="This blog is part of a series of technical posts about Leap.",
    )
    assert summarize(post, url=URL).lead_text == REAL


@pytest.mark.parametrize(
    "dateline",
    ["NODE.JS INTERACTIVE 2015, PORTLAND, OR. — ", "SAN FRANCISCO, Jan. 8, 2026 — ", "March 3, 2020 - "],
)
def test_a_press_release_dateline_is_dropped_from_the_first_sentence(dateline: str) -> None:
    assert lead(dateline + REAL).lead_text == REAL


def test_an_italic_series_note_and_a_colon_before_a_list_of_links_are_passed_over() -> None:
    assert lead(f"_This is the second post in a series on storage._\n\n{REAL}").lead_text == REAL
    body = f"{REAL} Further reading:\n\n- [One](https://a.example/)\n- [Two](https://b.example/)\n"
    assert lead(body).lead_text == REAL


@pytest.mark.parametrize(
    "body",
    ["{{<" * 50_000, "{{< note >}}" * 30_000, "{{% alert %}}x" * 30_000 + "{{% /alert %}}", "![a](" * 50_000],
)
def test_unclosed_hugo_shortcodes_and_images_cost_milliseconds(body: str) -> None:
    import time

    started = time.process_time()
    lead(body)
    assert time.process_time() - started < 1.0
