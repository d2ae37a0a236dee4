"""The post loader over tests/fixtures/posts (one file per edge case) and a few files written here."""

from __future__ import annotations

import logging
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest import posts as posts_module
from digest.errors import ConfigError
from digest.model import LoadResult, Post
from digest.posts import load_posts, parse_date_text

FIXTURES = Path(__file__).parent / "fixtures" / "posts"
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def loaded() -> LoadResult:
    return load_posts(FIXTURES, tz=NEW_YORK)


def by_path(result: LoadResult) -> dict[str, Post]:
    return {p.path: p for p in result.posts}


def skipped(result: LoadResult) -> dict[str, str]:
    return {s.path: s.reason for s in result.skipped}


def test_reads_md_markdown_mdx_recursively_and_ignores_the_rest(loaded: LoadResult) -> None:
    paths = set(by_path(loaded)) | set(skipped(loaded))
    assert "sub/deeper/nested.markdown" in paths
    assert "component.mdx" in paths
    assert "2026/2026-01-05-bold-title-line.md" in paths
    assert "notes.txt" not in paths
    assert ".hidden.md" not in paths
    # Stable order: sorted by relative path.
    assert [p.path for p in loaded.posts] == sorted(p.path for p in loaded.posts)


def test_every_unusable_file_is_skipped_with_a_reason(loaded: LoadResult) -> None:
    reasons = skipped(loaded)
    assert set(reasons) == {"index.md", "broken-yaml.md", "empty.md", "unclosed.md", "bad-date.md"}
    assert reasons["empty.md"] == "empty file"
    assert reasons["index.md"].startswith("no date")
    assert "closing ---" in reasons["unclosed.md"]
    assert "sometime in January" in reasons["bad-date.md"]


def test_yaml_error_names_the_line_and_suggests_quotes(loaded: LoadResult) -> None:
    reason = skipped(loaded)["broken-yaml.md"]
    assert "not valid YAML" in reason
    assert "line 2" in reason
    assert "Breaking news: colons everywhere" in reason
    assert "quotes" in reason


def test_skips_are_logged_as_warnings(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="digest.posts"):
        result = load_posts(FIXTURES, tz=NEW_YORK)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for skip in result.skipped:
        assert any(m.startswith(skip.path) and skip.reason in m for m in messages), skip


def test_dates_in_every_spelling_become_aware_site_time(loaded: LoadResult) -> None:
    posts = by_path(loaded)
    utc = ZoneInfo("UTC")
    jekyll = posts["2026/2026-01-06-jekyll-date.md"].date
    assert jekyll == datetime(2026, 1, 6, 8, 0, tzinfo=utc)
    assert jekyll.tzinfo == NEW_YORK and jekyll.hour == 3
    assert posts["iso-z.md"].date == datetime(2026, 1, 7, 16, 0, tzinfo=utc)
    assert posts["naive.md"].date == datetime(2026, 1, 6, 9, 0, tzinfo=NEW_YORK)
    assert posts["date-only.md"].date == datetime(2026, 1, 4, tzinfo=NEW_YORK)
    assert posts["2026-01-03-from-file-name.md"].date == datetime(2026, 1, 3, tzinfo=NEW_YORK)
    # PyYAML gives the sample post's naive date; it is site time.
    assert posts["2026/2026-01-05-bold-title-line.md"].date == datetime(
        2026, 1, 5, 8, 33, 56, tzinfo=NEW_YORK
    )


def test_impossible_offset_is_read_as_site_time(loaded: LoadResult) -> None:
    post = by_path(loaded)["2026-01-02-impossible-offset.md"]
    assert post.date == datetime(2026, 1, 2, 17, 30, tzinfo=NEW_YORK)


def test_unreadable_date_falls_back_to_the_file_name_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="digest.posts"):
        result = load_posts(FIXTURES, tz=NEW_YORK)
    assert by_path(result)["2026-01-01-bad-date.md"].date == datetime(2026, 1, 1, tzinfo=NEW_YORK)
    assert any(
        "2026-01-01-bad-date.md" in r.getMessage() and "file name" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-08 08:33:56 +0000", datetime(2026, 1, 8, 8, 33, 56, tzinfo=ZoneInfo("UTC"))),
        ("2026-01-08 08:33:56 -0500", datetime(2026, 1, 8, 13, 33, 56, tzinfo=ZoneInfo("UTC"))),
        ("2026-01-08T08:33:56.500Z", datetime(2026, 1, 8, 8, 33, 56, 500000, tzinfo=ZoneInfo("UTC"))),
        ("2026-01-08T10:00:00+02:00", datetime(2026, 1, 8, 8, 0, tzinfo=ZoneInfo("UTC"))),
        ("2026-1-8", datetime(2026, 1, 8)),
        ("2026-01-08 08:33", datetime(2026, 1, 8, 8, 33)),
    ],
)
def test_parse_date_text(text: str, expected: datetime) -> None:
    assert parse_date_text(text) == expected


@pytest.mark.parametrize("text", ["2026-02-30", "sometime", "2021-02-08 16:30-:00+16:30", "2026-01-08 25:00"])
def test_parse_date_text_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_date_text(text)


def test_categories_keep_display_names_and_dedupe_case_insensitively(loaded: LoadResult) -> None:
    posts = by_path(loaded)
    assert posts["2026/2026-01-06-jekyll-date.md"].categories == ("US", "Europe")
    assert posts["iso-z.md"].categories == ("Board Elections",)  # singular `category` is one name
    assert posts["naive.md"].categories == ("us", "Tech")  # first spelling kept, "US" dropped
    assert posts["date-only.md"].categories == ("Tech",)
    assert posts["more-separator.md"].categories == ()


def test_title_from_slug_when_missing_and_yaml_11_surprises_kept_as_text(loaded: LoadResult) -> None:
    posts = by_path(loaded)
    named = posts["2026-01-03-from-file-name.md"]
    assert named.title == "From File Name"
    assert named.slug == "from-file-name"
    odd = posts["yaml-surprises.md"]
    assert odd.title == "no"
    assert odd.slug == "1.10"  # a `content` key did not break anything either


def test_slug_comes_from_file_name_without_date(loaded: LoadResult) -> None:
    posts = by_path(loaded)
    assert posts["2026/2026-01-05-bold-title-line.md"].slug == "bold-title-line"
    assert posts["naive.md"].slug == "naive"


def test_unpublished_posts_are_kept_but_marked(loaded: LoadResult) -> None:
    assert by_path(loaded)["unpublished.md"].published is False
    assert by_path(loaded)["naive.md"].published is True


def test_excerpts_field_marker_with_spaces_and_own_separator(loaded: LoadResult) -> None:
    posts = by_path(loaded)
    assert posts["excerpt-field.md"].excerpt == "The *excerpt* field wins."
    assert posts["more-separator.md"].excerpt == "Before the marker."
    assert posts["own-separator.md"].excerpt == "Only this part."
    assert posts["naive.md"].excerpt is None


def test_bom_crlf_and_cp1252(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="digest.posts"):
        posts = by_path(load_posts(FIXTURES, tz=NEW_YORK))
    bom = posts["bom-crlf.md"]
    assert bom.title == "BOM and CRLF"
    assert bom.categories == ("Tech",)
    assert "\r" not in bom.body and bom.body.startswith("Windows line endings")
    old = posts["cp1252.md"]
    assert old.title == "Café news"
    assert old.body.startswith("\u201cQuoted\u201d")
    assert any("cp1252.md" in r.getMessage() and "Windows-1252" in r.getMessage() for r in caplog.records)


def test_other_fields_and_content_hash(loaded: LoadResult) -> None:
    post = by_path(loaded)["2026/2026-01-05-bold-title-line.md"]
    assert post.source_url == "https://news.example.org/harbour"
    assert post.source_site == "news.example.org"
    assert post.body.startswith("**Harbour reopens after storm**")
    import hashlib

    raw = (FIXTURES / post.path).read_bytes()
    assert post.content_hash == hashlib.sha256(raw).hexdigest()


def test_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="posts folder not found"):
        load_posts(tmp_path / "nope", tz=LONDON)


def test_extensions_are_configurable(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("---\ntitle: A\ndate: 2026-01-01\n---\nx\n")
    (tmp_path / "b.txt").write_text("---\ntitle: B\ndate: 2026-01-01\n---\nx\n")
    assert [p.path for p in load_posts(tmp_path, tz=LONDON, extensions=["txt"]).posts] == ["b.txt"]


# --- cache ---------------------------------------------------------------------------------------


def _write(path: Path, title: str, *, age_seconds: int = 3600) -> None:
    path.write_text(f"---\ntitle: {title}\ndate: 2026-01-05\n---\n\nBody of {title}.\n", encoding="utf-8")
    old = datetime.now().timestamp() - age_seconds
    os.utime(path, (old, old))


def test_cache_serves_unchanged_posts_without_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, cache = tmp_path / "posts", tmp_path / "cache"
    folder.mkdir()
    _write(folder / "a.md", "Alpha")
    _write(folder / "b.md", "Beta")
    first = load_posts(folder, tz=LONDON, cache_dir=cache)
    assert list(cache.glob("posts-*.pickle"))

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed although cached")

    monkeypatch.setattr(posts_module, "parse_post", boom)
    assert load_posts(folder, tz=LONDON, cache_dir=cache) == first


def test_cache_sees_an_edit_and_a_deletion(tmp_path: Path) -> None:
    folder, cache = tmp_path / "posts", tmp_path / "cache"
    folder.mkdir()
    _write(folder / "a.md", "Alpha")
    _write(folder / "b.md", "Beta")
    assert [p.title for p in load_posts(folder, tz=LONDON, cache_dir=cache).posts] == ["Alpha", "Beta"]
    _write(folder / "a.md", "Alpha edited", age_seconds=60)
    (folder / "b.md").unlink()
    result = load_posts(folder, tz=LONDON, cache_dir=cache)
    assert [p.title for p in result.posts] == ["Alpha edited"]
    assert result.posts[0].body == "Body of Alpha edited."


def test_cache_catches_a_same_size_edit_within_the_same_mtime(tmp_path: Path) -> None:
    """An edit in the same clock tick (same size, same mtime) must still be seen: racy entries."""
    folder, cache = tmp_path / "posts", tmp_path / "cache"
    folder.mkdir()
    post = folder / "a.md"
    post.write_text("---\ntitle: Aaaa\ndate: 2026-01-05\n---\nx\n")
    stat = post.stat()
    assert load_posts(folder, tz=LONDON, cache_dir=cache).posts[0].title == "Aaaa"
    post.write_text("---\ntitle: Bbbb\ndate: 2026-01-05\n---\nx\n")
    os.utime(post, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert post.stat().st_size == stat.st_size
    assert load_posts(folder, tz=LONDON, cache_dir=cache).posts[0].title == "Bbbb"


def test_cache_is_per_time_zone_and_survives_corruption(tmp_path: Path) -> None:
    folder, cache = tmp_path / "posts", tmp_path / "cache"
    folder.mkdir()
    (folder / "a.md").write_text("---\ntitle: A\ndate: 2026-01-05 12:00\n---\nx\n")
    assert load_posts(folder, tz=LONDON, cache_dir=cache).posts[0].date.tzinfo == LONDON
    assert load_posts(folder, tz=NEW_YORK, cache_dir=cache).posts[0].date == datetime(
        2026, 1, 5, 12, tzinfo=NEW_YORK
    )
    for file in cache.glob("posts-*.pickle"):
        file.write_bytes(b"not a pickle")
    assert load_posts(folder, tz=LONDON, cache_dir=cache).posts[0].title == "A"
    assert not list(cache.glob("*.tmp"))  # written atomically, no leftovers


def test_cached_skips_are_still_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder, cache = tmp_path / "posts", tmp_path / "cache"
    shutil.copytree(FIXTURES, folder)
    first = load_posts(folder, tz=LONDON, cache_dir=cache)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="digest.posts"):
        second = load_posts(folder, tz=LONDON, cache_dir=cache)
    assert second.skipped == first.skipped
    assert sum("skipped" in r.getMessage() for r in caplog.records) == len(first.skipped)


def test_dates_are_timezone_aware_everywhere(loaded: LoadResult) -> None:
    for post in loaded.posts:
        assert post.date.utcoffset() is not None, post.path
        assert abs(post.date.utcoffset() or timedelta()) <= timedelta(hours=14)
