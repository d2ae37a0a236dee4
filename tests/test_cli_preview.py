"""`digest preview` end to end, as a new user runs it: a real process, no config, odd posts.

These are the issue-2 promises at the CLI edge: built-in defaults work anywhere, a broken post is
skipped with a warning that names it while the edition still builds, categories filter the
sections, and an empty edition exits non-zero with a message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from digest.cli import COMMANDS, cli

GOOD = """---
title: "{title}"
categories: [{cats}]
date: {date}
source_url: https://source.example.org/{slug}
source_site: source.example.org
---

**{title}**

{lead} Second sentence of the lead.

## A heading

More text that is not the lead.
"""


def write_post(folder: Path, name: str, *, title: str, cats: str, date: str, lead: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    slug = name.removesuffix(".md")
    text = GOOD.format(title=title, cats=cats, date=date, slug=slug, lead=lead)
    (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    posts = tmp_path / "posts"
    write_post(
        posts / "2026",
        "2026-01-05-rates.md",
        title="Rates & <b>yields</b>",
        cats="Markets",
        date="2026-01-05 10:00:00 +0000",
        lead="Bond yields rose on Monday.",
    )
    write_post(
        posts / "2026",
        "2026-01-07-chips.md",
        title="Chip rules",
        cats="technology, Markets",
        date="2026-01-07T09:00:00Z",
        lead="New export rules were published.",
    )
    write_post(
        posts / "2025",
        "2025-12-01-old.md",
        title="Old news",
        cats="Markets",
        date="2025-12-01 10:00:00 +0000",
        lead="This is outside the window.",
    )
    (posts / "2026" / "2026-01-06-broken.md").write_text("---\ntitle: a: b: c\n---\nBody\n", encoding="utf-8")
    (posts / "notes.txt").write_text("not a post", encoding="utf-8")
    return tmp_path


def run_digest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DIGEST_CONFIG", "DIGEST_DATABASE_URL")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "digest", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_preview_on_built_in_defaults_writes_the_email_and_explains_skips(site: Path):
    result = run_digest(site, "preview", "--posts", "posts", "--as-of", "2026-01-09", "--out", "out")
    assert result.returncode == 0, result.stderr
    html = (site / "out" / "digest.html").read_text(encoding="utf-8")
    text = (site / "out" / "digest.txt").read_text(encoding="utf-8")
    assert "Chip rules" in html and "Chip rules" in text
    assert "Rates &amp; &lt;b&gt;yields&lt;/b&gt;" in html  # escaped, never markup
    assert "<b>yields</b>" not in html
    assert "Old news" not in html  # outside the 7-day window
    assert "Bond yields rose on Monday." in text
    assert "A heading" not in text  # the lead stops before the heading
    # The broken post is named with its reason, and did not stop the edition.
    assert "2026/2026-01-06-broken.md" in result.stdout + result.stderr
    assert "Skipped" in result.stdout
    assert "notes.txt" not in result.stdout + result.stderr  # other files are ignored silently


def test_categories_filter_sections_case_insensitively(site: Path):
    result = run_digest(
        site,
        "preview",
        "--posts",
        "posts",
        "--as-of",
        "2026-01-09",
        "--categories",
        "TECHNOLOGY",
        "--out",
        "o",
    )
    assert result.returncode == 0, result.stderr
    text = (site / "o" / "digest.txt").read_text(encoding="utf-8")
    assert "Chip rules" in text
    assert "Bond yields" not in text  # Markets only, not asked for


def test_empty_edition_exits_non_zero_with_a_message(site: Path):
    result = run_digest(site, "preview", "--posts", "posts", "--as-of", "2024-01-01", "--out", "o")
    assert result.returncode != 0
    assert "no posts" in (result.stdout + result.stderr).lower()
    assert not (site / "o" / "digest.html").exists()


def test_a_missing_posts_folder_is_a_clear_error(site: Path):
    result = run_digest(site, "preview", "--posts", "nowhere", "--out", "o")
    assert result.returncode != 0
    assert "nowhere" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_as_of_is_a_clear_error(site: Path):
    result = run_digest(site, "preview", "--posts", "posts", "--as-of", "next tuesday")
    assert result.returncode != 0
    assert "--as-of" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_config_names_the_key(site: Path):
    (site / "config.toml").write_text("[edition]\nlead_words = -3\n", encoding="utf-8")
    result = run_digest(site, "preview", "--posts", "posts")
    assert result.returncode == 1
    assert "edition.lead_words" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_has_help_with_an_example():
    for name in COMMANDS:
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None, f"digest {name} is not registered"
        assert "Example:" in (command.help or ""), f"digest {name} --help has no example"
