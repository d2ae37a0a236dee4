"""digest.safe_yaml through the post reader: aliases and nesting cannot blow up (issue 15)."""

from __future__ import annotations

import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from digest.errors import PostError
from digest.posts import parse_post
from digest.safe_yaml import MAX_ALIAS_VALUES, FrontMatterLimitError, SafeLoader

TZ = ZoneInfo("Europe/London")


def billion_laughs() -> bytes:
    """Nine levels of nine aliases: 445 bytes that stand for 387 million values."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join(["*" + previous] * 9) + "]")
        previous = name
    text = "---\ntitle: Laughs\ndate: 2026-01-07\n" + "\n".join(lines) + "\ncategories: *i\n---\n\nHa.\n"
    return text.encode()


def test_recursive_anchor_is_a_skip_naming_the_file_and_line() -> None:
    raw = b"---\ntitle: Loop\ncategories: &r [US, *r]\ndate: 2026-01-07\n---\n\nHello.\n"
    assert len(raw) < 70
    with pytest.raises(PostError) as caught:
        parse_post(raw, "2026/loop.md", tz=TZ)
    assert str(caught.value).startswith("2026/loop.md: ")
    assert "refers to the value it is part of" in caught.value.reason
    assert "line 3: categories: &r [US, *r]" in caught.value.reason
    # valid YAML that asks too much is "refused", not called invalid (its syntax is fine)
    assert caught.value.reason.startswith("the front matter is refused: ")
    assert "not valid YAML" not in caught.value.reason


@pytest.mark.parametrize("doc", ["m: &m {k: *m}", "a: &a [x, {y: [*a]}]"])
def test_recursion_through_maps_and_nesting_is_refused(doc: str) -> None:
    with pytest.raises(FrontMatterLimitError):
        SafeLoader(doc).get_single_node()


def test_billion_laughs_is_refused_in_well_under_a_second() -> None:
    raw = billion_laughs()
    assert len(raw) < 450
    started = time.process_time()
    with pytest.raises(PostError) as caught:
        parse_post(raw, "laughs.md", tz=TZ)
    assert time.process_time() - started < 0.5
    assert f"more than {MAX_ALIAS_VALUES:,} values" in caught.value.reason
    assert caught.value.reason.startswith("the front matter is refused: ")


def test_ordinary_aliases_still_work() -> None:
    raw = b"---\ntitle: Shared\nbase: &base [US, Europe]\ncategories: *base\ndate: 2026-01-07\n---\n\nHi.\n"
    post, _ = parse_post(raw, "shared.md", tz=TZ)
    assert post.categories == ("US", "Europe")


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    raw = b"---\ntitle: D\ndate: 2026-01-07\ncategories: " + b"[" * 999 + b"]" * 999 + b"\n---\nx\n"
    with pytest.raises(PostError, match="nested more than"):
        parse_post(raw, "deep.md", tz=TZ)


def test_undefined_alias_is_still_a_yaml_error() -> None:
    with pytest.raises(yaml.YAMLError):
        SafeLoader("a: *nowhere").get_single_node()


@pytest.mark.parametrize("listing", ["flow", "block"])
def test_a_hundred_thousand_categories_are_capped_quickly(listing: str) -> None:
    names = [f"C{i}" for i in range(100_000)]
    if listing == "flow":
        front = "categories: [US, " + ", ".join(names) + "]\n"
    else:
        front = "categories:\n- US\n" + "".join(f'- "{n}"\n' for n in names)
    raw = ("---\ntitle: Many\ndate: 2026-01-07\n" + front + "---\n\nHello.\n").encode()
    started = time.process_time()
    post, notices = parse_post(raw, "many.md", tz=TZ)
    assert time.process_time() - started < 1.0
    assert len(post.categories) == 50 and post.categories[0] == "US"
    assert any("only the first 50 are used" in message for _, message in notices)


def test_yaml_escapes_cannot_bring_control_characters_back() -> None:
    """Found by the fuzzer: the file is clean, but "\\u000b" in a quoted value becomes a VT."""
    raw = b'---\ntitle: "Word\\u000bbreak \\e"\nexcerpt: "An excerpt\\u000b with \\u001b controls"\ndate: 2026-01-07\n---\n\nx\n'
    post, notices = parse_post(raw, "escapes.md", tz=TZ)
    assert post.title == "Word break" and post.excerpt == "An excerpt  with  controls"
    assert [m.split(":")[0] for _, m in notices] == ["title", "excerpt"]


@pytest.mark.parametrize("front", ["published: [x]", "date: [2026-01-07]", "published: {a: b}"])
def test_a_list_where_a_flag_or_date_belongs_is_no_crash(front: str) -> None:
    """Found by the fuzzer: the fast path called .lower() on a list and stopped the whole run."""
    raw = f"---\ntitle: T\n{front}\n---\n\nx\n".encode()
    try:
        parse_post(raw, "2026-01-07-odd.md", tz=TZ)
    except PostError as exc:
        assert exc.path == "2026-01-07-odd.md"


def test_a_reader_bug_on_one_file_is_a_skip_not_a_stopped_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest import posts

    for name in ("2026-01-06-good.md", "2026-01-07-odd.md"):
        (tmp_path / name).write_text(f"---\ntitle: {name}\n---\n\nText.\n", encoding="utf-8")
    real = posts._split

    def flaky(text: str, rel: str) -> tuple[dict[str, object], str]:
        if "odd" in rel:
            raise AttributeError("'list' object has no attribute 'lower'")
        return real(text, rel)

    monkeypatch.setattr(posts, "_split", flaky)
    loaded = posts.load_posts(tmp_path, tz=TZ)
    assert [p.path for p in loaded.posts] == ["2026-01-06-good.md"]
    (skip,) = loaded.skipped
    assert skip.path == "2026-01-07-odd.md" and "AttributeError" in skip.reason


def test_the_posts_cache_is_dropped_when_the_cleaning_code_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest import posts_cache, textclean

    fake = tmp_path / "textclean.py"
    fake.write_text("v1", encoding="utf-8")
    monkeypatch.setattr(textclean, "__file__", str(fake))
    before = posts_cache.code_stamp()
    fake.write_text("version 2", encoding="utf-8")
    assert posts_cache.code_stamp() != before


@pytest.mark.parametrize(
    ("front", "why"),
    [
        ("z: '\\t'\n" + "".join(f"k{i}: {{a: [1, 2]}}\n" for i in range(100_000)), "more than the 200,000"),
        ("".join(f"k{i}: {{a: 1}}\n" for i in range(8_000)), "more than 20,000 values"),
        (
            "categories: # a comment sends this to YAML\n" + "".join(f"- C{i}\n" for i in range(100_000)),
            "200,000",
        ),
    ],
)
def test_front_matter_that_yaml_must_read_is_bounded(front: str, why: str) -> None:
    """Composing costs ~20 us a value even with libyaml: 100,000 keys took 4.6 s."""
    raw = ("---\ntitle: Big\ndate: 2026-01-07\n" + front + "---\n\nx\n").encode()
    started = time.process_time()
    with pytest.raises(PostError, match=why):
        parse_post(raw, "big.md", tz=TZ)
    assert time.process_time() - started < 0.5
