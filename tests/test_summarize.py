"""Lead summaries: what is skipped, what is kept, how it is trimmed, and that the HTML is safe."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.model import Item, Post
from digest.posts import load_posts
from digest.summarize import ELLIPSIS, summarize

URL = "https://example.com/news/2026/01/08/post.html"
FIXTURES = Path(__file__).parent / "fixtures" / "posts"


def lead(
    body: str, *, title: str = "A title", excerpt: str | None = None, path: str = "p.md", budget: int = 70
) -> Item:
    post = Post(
        path=path,
        title=title,
        date=datetime(2026, 1, 8, tzinfo=ZoneInfo("UTC")),
        categories=("News",),
        body=body,
        slug="post",
        excerpt=excerpt,
    )
    return summarize(post, url=URL, word_budget=budget)


def words_of_html(fragment: str) -> list[str]:
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).split()


def test_sample_style_post_skips_the_bold_title_line() -> None:
    posts = {p.path: p for p in load_posts(FIXTURES, tz=ZoneInfo("UTC")).posts}
    post = posts["2026/2026-01-05-bold-title-line.md"]
    item = summarize(post, url=URL)
    assert item.lead_text.startswith("The harbour reopened on Monday")
    assert "Harbour reopens" not in item.lead_text
    assert '<a href="https://port.example.org/">port authority</a>' in item.lead_html
    assert item.source_url == "https://news.example.org/harbour"
    assert item.categories == ("Europe",)


def test_wrapped_lines_are_one_paragraph() -> None:
    item = lead("This sentence is\nwrapped over\nthree lines.")
    assert item.lead_text == "This sentence is wrapped over three lines."
    assert not item.truncated


@pytest.mark.parametrize(
    "noise",
    [
        "# A heading",
        "Setext heading\n==============",
        "![a photo](/img/photo.jpg)",
        "[![badge](https://img.example/b.svg)](https://example.org)",
        "<!-- a comment\nover lines -->",
        '<iframe src="https://www.youtube.com/embed/x"></iframe>',
        "{% include figure.html src='x.png' %}",
        "```js\nconsole.log('code')\n```",
        "    indented code",
        "| a | b |\n|---|---|\n| 1 | 2 |",
        "---",
        "**A bold pseudo heading**",
        "A title",
        "2013.03.21, Version 0.10.1 (Stable)",
        "Source Code: https://example.org/dist/x.tar.gz",
        "[ref]: https://example.org/ref",
    ],
)
def test_non_prose_before_the_first_paragraph_is_skipped(noise: str) -> None:
    item = lead(f"{noise}\n\nThe real first paragraph is here.", title="A title")
    assert item.lead_text == "The real first paragraph is here."


def test_liquid_and_mdx_are_removed() -> None:
    body = (
        "import Chart from '../Chart'\nexport const x = 1\n\n<Chart data=\"x\" />\n\n"
        "Visit {{ site.title }} for {% if x %}more{% endif %} news.\n"
    )
    item = lead(body, path="post.mdx")
    assert item.lead_text == "Visit for more news."
    assert "{" not in item.lead_html and "import" not in item.lead_text


def test_wordpress_caption_shortcodes_are_removed() -> None:
    body = '[caption id="a1" width="650"][![poster](/p.png)](/p.png) *Poster by Aris*[/caption] The ballots are out.'
    assert lead(body).lead_text == "The ballots are out."


def test_liquid_highlight_block_is_code() -> None:
    item = lead("{% highlight ruby %}\nputs 'hi'\n{% endhighlight %}\n\nThe words.")
    assert item.lead_text == "The words."


def test_raw_html_body_has_paragraphs() -> None:
    body = (
        '<h2>Heading</h2>\n<p><img src="x.png"></p>\n'
        '<p>First <b>bold</b> and <a href="/rel">relative</a> text.</p>\n<p>Second paragraph.</p>'
    )
    item = lead(body)
    # Issue 13: paragraphs stay paragraphs; the text part keeps the link's target.
    assert item.lead_text == "First bold and relative <https://example.com/rel> text.\n\nSecond paragraph."
    assert item.lead_html == (
        '<p>First <strong>bold</strong> and <a href="https://example.com/rel">relative</a> text.</p>'
        "<p>Second paragraph.</p>"
    )


def test_list_only_post_gets_its_first_items_never_heading_or_code() -> None:
    body = (
        "## 2013.03.21, Version 0.10.1 (Stable)\n\n"
        "- npm: upgrade to 1.2.15\n\n- crypto: Improve performance (Fedor Indutny)\n"
        "- tls: always reset `this.ssl.error`\n  continued line\n\n```\ncode\n```\n"
    )
    item = lead(body, title="Node.js 0.10.1 (Stable)")
    # Issue 13: a short list, each item its own line (inline code keeps its backticks in text).
    assert item.lead_text == (
        "- npm: upgrade to 1.2.15\n\n- crypto: Improve performance (Fedor Indutny)\n\n"
        "- tls: always reset `this.ssl.error` continued line"
    )
    assert item.lead_html.startswith("<ul><li>npm: upgrade to 1.2.15</li>")
    assert "<code>this.ssl.error</code>" in item.lead_html
    assert "Version" not in item.lead_text


def test_paragraph_ending_in_colon_takes_the_list_that_follows() -> None:
    item = lead("Highlights of this release:\n\n- faster startup\n- smaller downloads\n\n## More")
    assert item.lead_text == "Highlights of this release:\n\n- faster startup\n\n- smaller downloads"
    assert item.lead_html == (
        "<p>Highlights of this release:</p><ul><li>faster startup</li><li>smaller downloads</li></ul>"
    )


def test_quote_only_post_uses_the_quote() -> None:
    assert lead("> Quoted words from\n> someone else.").lead_text == "Quoted words from someone else."


def test_excerpt_field_wins_and_falls_back_to_body_when_empty() -> None:
    assert lead("Body text.", excerpt="The *excerpt*.").lead_html == "The <em>excerpt</em>."
    assert lead("Body text.", excerpt="![only an image](x.png)").lead_text == "Body text."


def test_reference_links_are_resolved_from_the_end_of_the_body() -> None:
    body = (
        "See [the docs][docs] and [Node].\n\n"
        + "Filler paragraph.\n\n" * 50
        + "[docs]: /docs\n[node]: https://nodejs.org"
    )
    item = lead(body)
    assert item.lead_html.startswith(
        '<p>See <a href="https://example.com/docs">the docs</a> and <a href="https://nodejs.org">Node</a>.'
    )


def test_html_is_escaped_and_only_safe_tags_and_links_survive() -> None:
    body = (
        'Use <script>alert(1)</script> & [bad](javascript:alert(1)) or <a href="data:x">data</a> '
        "and [mail](mailto:a@example.com) <span onclick=x>span</span> ~~gone~~ **ok** `a<b`."
    )
    item = lead(body)
    assert "<script" not in item.lead_html and "onclick" not in item.lead_html
    assert 'href="javascript' not in item.lead_html and 'href="data' not in item.lead_html
    assert "&amp;" in item.lead_html and "<code>a&lt;b</code>" in item.lead_html
    assert '<a href="mailto:a@example.com">mail</a>' in item.lead_html
    assert "<strong>ok</strong>" in item.lead_html
    assert "gone" not in item.lead_text
    tags = set(re.findall(r"</?([a-z]+)", item.lead_html))
    assert tags <= {"a", "em", "strong", "code"}


def test_trims_at_a_sentence_boundary_with_an_ellipsis() -> None:
    sentences = [f"This is sentence number {i} of the lead, with ten words." for i in range(1, 12)]
    item = lead(" ".join(sentences), budget=35)
    assert item.truncated
    assert item.lead_text.endswith("words. " + ELLIPSIS)
    assert len(item.lead_text.split()) - 1 <= 35
    assert item.lead_text.count("sentence number") == 3


def test_abbreviations_are_not_sentence_ends() -> None:
    text = "Mr. Smith met the U.S. team in Paris today. " + "More words follow here and on. " * 10
    item = lead(text, budget=10)
    assert item.lead_text == "Mr. Smith met the U.S. team in Paris today. " + ELLIPSIS


def test_a_long_first_sentence_is_cut_at_a_word() -> None:
    item = lead("word, " * 100 + "end.", budget=20)
    assert item.truncated
    assert item.lead_text == " ".join(["word,"] * 19 + ["word" + ELLIPSIS])


def test_html_and_text_carry_the_same_words_when_cut() -> None:
    body = (
        "The **quick** brown [fox jumps over](https://fox.example/) the *lazy* dog. "
        "It does so with `style` and grace, twice a day. "
        "Then it **rests for a long while in the shade** of a tree."
    )
    for budget in range(3, 30):
        item = lead(body, budget=budget)
        text = re.sub(r" <https?://[^>]+>", "", item.lead_text).replace("`", "")
        assert words_of_html(item.lead_html) == text.split(), budget
        assert item.lead_html.count("<strong>") == item.lead_html.count("</strong>")
        assert item.lead_html.count("<a ") == item.lead_html.count("</a>")


def test_lead_that_fits_is_not_marked_truncated() -> None:
    item = lead("Short and sweet.\n\nAnother paragraph.", budget=70)
    assert item.lead_text == "Short and sweet.\n\nAnother paragraph."
    assert not item.truncated
    assert ELLIPSIS not in item.lead_text


def test_paragraphs_stop_at_a_heading() -> None:
    item = lead("First paragraph.\n\n## Section\n\nSecond section text.")
    assert item.lead_text == "First paragraph."


def test_empty_body_gives_an_empty_lead() -> None:
    item = lead("")
    assert (item.lead_text, item.lead_html, item.truncated) == ("", "", False)
    assert lead("# Only a heading\n\n```\ncode\n```").lead_text == ""


def test_huge_body_and_inline_image_are_cheap() -> None:
    image = "![big](data:image/png;base64," + "A" * 300_000 + ")"
    body = image + "\n\nThe first words.\n\n" + ("Another long paragraph of words. " * 20 + "\n\n") * 2000
    started = time.process_time()
    item = lead(body)
    elapsed = time.process_time() - started
    assert item.lead_text.startswith("The first words.")
    assert elapsed < 0.2, elapsed


def test_item_fields() -> None:
    item = lead("Text.", title="Title")
    assert (item.post_path, item.title, item.url) == ("p.md", "Title", URL)
    assert item.date == datetime(2026, 1, 8, tzinfo=ZoneInfo("UTC"))
