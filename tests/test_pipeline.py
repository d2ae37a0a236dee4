"""The orchestrator: what it caches between category sets of one send."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest import pipeline
from digest.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def test_each_post_is_summarised_once_across_category_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """A send builds an edition per category set; a post in many sets is summarised once."""
    config = load_config(ROOT / "config.toml")  # the sample site: posts/ and its categories
    calls: list[str] = []
    real = pipeline.summarize

    def counting(post, **kw):  # type: ignore[no-untyped-def]
        calls.append(post.path)
        return real(post, **kw)

    monkeypatch.setattr(pipeline, "summarize", counting)
    posts = pipeline.load(config, use_cache=False)
    as_of = datetime(2026, 1, 9, tzinfo=UTC)
    items = pipeline.ItemCache(config)  # what a send's plan owns
    editions = [
        pipeline.build_edition(config, as_of=as_of, categories=cats, posts=posts, items=items)
        for cats in (["US"], ["US", "Europe"], ["Europe", "Asia"], None)
    ]
    shown = {item.post_path for e in editions for s in e.sections for item in s.items}
    assert len(shown) >= 5
    assert sorted(calls) == sorted(shown)  # once each, however many sets showed it


def test_display_names_is_the_one_spelling_of_categories(tmp_path: Path) -> None:
    """Headings, the web pages and the CLI listings all spell a category key through one helper."""
    from digest.commands.subscribers import _display
    from digest.config import config_from_dict
    from digest.web.app import WebApp

    config = config_from_dict({"categories": ["US", "Data Science", "Europe"]}, root=tmp_path)
    given = ["europe", "zz-gone", "data science", " ", "US"]
    assert pipeline.display_names(config, given) == ["Europe", "zz-gone", "Data Science", "US"]
    ordered = ["US", "Data Science", "Europe", "zz-gone"]
    assert pipeline.display_names(config, given, config_order=True) == ordered
    assert _display(config, ["zz-gone", "europe", "data science", "us"]) == ", ".join(ordered)
    assert WebApp.topic_names(type("A", (), {"config": config})(), ("europe", "us", "zz-gone")) == [
        "US",
        "Europe",
        "zz-gone",
    ]
