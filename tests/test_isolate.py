"""digest.isolate: a post that breaks the email is left out, named; the rest goes out (issue 15).

The post reader cleans control characters out of files, so these tests make the posts by hand
(as a plugin or a future reader could) to get a real MJML compile failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from send_fixtures import *  # noqa: F403  (fixtures)
from send_fixtures import AS_OF, SendSite

from digest import pipeline
from digest.config import BUILTIN_TEMPLATES, Config
from digest.errors import EmptyEditionError, RenderError
from digest.isolate import PostIsolator
from digest.model import Edition, LoadResult, Post, RenderedEdition
from digest.render import render_edition
from digest.send.delivery import deliver
from digest.send.outbox import read_outbox

TZ = ZoneInfo("Europe/London")
AS_OF_DT = datetime(2026, 1, 9, tzinfo=TZ)


def _post(i: int, title: str, category: str = "News", body: str = "") -> Post:
    return Post(
        path=f"2026/p{i:02d}.md",
        title=title,
        date=datetime(2026, 1, 7, 10, i, tzinfo=TZ),
        categories=(category,),
        body=body or f"{title} is the lead paragraph of this post, long enough to be a lead.\n",
        slug=f"p{i:02d}",
    )


def _edition(config: Config, posts: list[Post]) -> Edition:
    return pipeline.build_edition(config, as_of=AS_OF_DT, posts=LoadResult(tuple(posts)))


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config(edition={"section_cap": 50})


def test_posts_that_break_the_mjml_are_left_out_and_named(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    posts = [_post(i, f"Good post {i}", "News" if i % 2 else "Tech") for i in range(12)]
    posts[3] = _post(3, "Word line\x0bbreak")
    posts[8] = _post(8, "Fine title", body="A lead with an \x1b escape in it.\n")
    edition = _edition(config, posts)
    with pytest.raises(RenderError):  # what used to stop the whole edition
        render_edition(edition, config)
    with caplog.at_level(logging.WARNING, logger="digest.isolate"):
        rendered_edition, rendered = pipeline.render_isolated(config, edition)
    left_out = {skip.path: skip.reason for skip in rendered_edition.skipped}
    assert set(left_out) == {"2026/p03.md", "2026/p08.md"}
    assert all("the email cannot be built with this post" in why for why in left_out.values())
    assert all("does not compile" in why for why in left_out.values())
    assert rendered_edition.post_count == 10
    for i in (0, 1, 2, 4, 5, 6, 7, 9, 10, 11):
        assert f"Good post {i}" in rendered.html and f"Good post {i}" in rendered.text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "2026/p03.md: left out of edition 2026-W02" in logged and "2026/p08.md" in logged


def test_a_broken_template_is_still_the_templates_error(config: Config, tmp_path: Path) -> None:
    templates = tmp_path / "broken-templates"
    templates.mkdir()
    (templates / "edition.mjml.j2").write_text(
        "<mjml><mj-body><mj-section><mj-column><mj-text>{{ edition.id }}</mj-column></mj-body></mjml>",
        encoding="utf-8",
    )
    broken = replace(config, edition=replace(config.edition, templates=str(templates)))
    assert broken.templates_path == templates and templates != BUILTIN_TEMPLATES
    edition = _edition(broken, [_post(1, "One"), _post(2, "Two")])
    with pytest.raises(RenderError, match="does not compile"):
        pipeline.render_isolated(broken, edition)


def test_an_edition_of_only_broken_posts_says_so_and_names_them(config: Config) -> None:
    edition = _edition(config, [_post(1, "Bad\x00one"), _post(2, "Bad\x0ctwo")])
    with pytest.raises(EmptyEditionError) as caught:
        pipeline.render_isolated(config, edition)
    assert "2026/p01.md, 2026/p02.md" in str(caught.value)


def test_the_isolator_bisects_once_per_bad_post_across_category_sets(config: Config) -> None:
    calls = 0

    def counting(edition: Edition) -> RenderedEdition:
        nonlocal calls
        calls += 1
        return render_edition(edition, config)

    isolator = PostIsolator(counting)
    posts = [_post(i, f"Post {i}", ("News", "Tech", "Data Science")[i % 3]) for i in range(9)]
    posts[4] = _post(4, "Bad\x1bpost", "Tech")
    first, _ = isolator.render(_edition(config, posts))
    assert [s.path for s in first.skipped] == ["2026/p04.md"]
    calls = 0
    for wanted in (["Tech"], ["Tech", "News"], ["Tech", "Data Science"]):
        edition = pipeline.build_edition(
            config, as_of=AS_OF_DT, categories=wanted, posts=LoadResult(tuple(posts))
        )
        rendered_edition, _ = isolator.render(edition)
        assert "2026/p04.md" not in {i.post_path for i in rendered_edition.items}
    assert calls == 3  # known culprits are dropped up front: one render per set, no bisecting


def test_a_send_leaves_out_the_broken_post_and_delivers_the_rest(tmp_path: Path, fast_retries: None) -> None:
    site = SendSite(tmp_path)
    try:
        site.add("us@example.org", "US")
        site.add("asia@example.org", "Asia")
        loaded = pipeline.load(site.config)
        bad = next(p for p in loaded.posts if p.path == "us-budget.md")
        evil = replace(bad, path="us-evil.md", title="Evil\x0btitle", content_hash="")
        posts = LoadResult((*loaded.posts, evil), loaded.skipped)
        summary = deliver(
            site.config,
            site.store,
            as_of=datetime.fromisoformat(AS_OF),
            sender_name="outbox",
            outbox=tmp_path / "out",
            posts=posts,
        )
        assert summary.sent == 2 and summary.ok
        mail = {m["To"]: m for m in read_outbox(tmp_path / "out")}
        us_text = mail["us@example.org"].get_body(("plain",)).get_content()
        assert "Budget talks stall" in us_text and "Evil" not in us_text
        assert "A new chip plant" in mail["asia@example.org"].get_body(("plain",)).get_content()
    finally:
        site.store.dispose()
