"""Issue 15's hostile posts, end to end through `digest preview`, `digest check` and `digest send --dry-run`.

Each is a real file in a real site, run by the real CLI in a subprocess: 18 posts with a control
character or non-character in the title or the lead, a recursive YAML anchor, a 445-byte
"billion laughs", and a post with 100,000 categories. The bar: no traceback, each hostile post
named (warned about, or skipped with its reason), every other post still in the edition, and
no post costs a second.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from send_fixtures import config_toml, write_posts
from test_safe_yaml import billion_laughs

CONTROLS = {
    "vt": "\x0b",
    "ff": "\x0c",
    "esc": "\x1b",
    "nul": "\x00",
    "soh": "\x01",
    "bel": "\x07",
    "us": "\x1f",
    "fffe": "\ufffe",
    "ffff": "\uffff",
}
GOOD = {
    "us-budget.md": ("Budget talks stall", "US", "2026-01-05 09:00"),
    "eu-rates.md": ("ECB holds rates", "Europe, Markets", "2026-01-06 10:30"),
    "climate-grid.md": ("Grid storage doubles", "Climate", "2026-01-08 18:15"),
}
AS_OF = "2026-01-09T12:00"


def _control_posts(folder: Path) -> dict[str, str]:
    """18 posts: each control character in the title and in the lead. Returns file -> field."""
    made = {}
    for name, char in CONTROLS.items():
        for field in ("title", "lead"):
            title = f"Control {name}{char} in title" if field == "title" else f"Control {name} in lead"
            lead = f"The lead has a {char} {name} in it, and goes on." if field == "lead" else "A plain lead."
            path = folder / f"2026-01-07-{name}-{field}.md"
            path.write_text(
                f'---\ntitle: "{title}"\ncategories: [US]\ndate: 2026-01-07 10:00\n---\n\n{lead}\n\nMore.\n',
                encoding="utf-8",
            )
            made[path.name] = "title" if field == "title" else "body"
    return made


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    posts = root / "posts"
    write_posts(posts, GOOD)
    _control_posts(posts)
    (posts / "2026-01-07-loop.md").write_text(
        "---\ntitle: Loop\ncategories: &r [US, *r]\ndate: 2026-01-07\n---\n\nHello.\n", encoding="utf-8"
    )
    (posts / "2026-01-07-laughs.md").write_bytes(billion_laughs())
    many = ", ".join(f"C{i}" for i in range(100_000))
    (posts / "2026-01-07-many.md").write_text(
        f"---\ntitle: Many categories\ncategories: [US, {many}]\ndate: 2026-01-07\n---\n\nMany.\n",
        encoding="utf-8",
    )
    config_toml(root, extra="[edition]\nsection_cap = 50\n")
    return root


def run_digest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DIGEST_CONFIG", "DIGEST_DATABASE_URL")}
    env["COLUMNS"] = "250"
    env["DIGEST_SECRET"] = "test-secret-that-is-long-enough-1234"
    return subprocess.run(
        [sys.executable, "-m", "digest", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _names_every_hostile_post(output: str) -> None:
    for name in CONTROLS:
        assert f"2026-01-07-{name}-title.md: title: 1 character that cannot appear in email" in output
        assert f"2026-01-07-{name}-lead.md: body: 1 character that cannot appear in email" in output
    assert "2026-01-07-loop.md: skipped" in output and "refers to the value it is part of" in output
    assert "2026-01-07-laughs.md: skipped" in output and "expand to more than 10,000 values" in output
    assert "2026-01-07-many.md: categories: 100,001 categories; only the first 50 are used" in output
    assert "Traceback" not in output


def test_preview_builds_the_edition_and_names_every_hostile_post(site: Path) -> None:
    started = time.monotonic()
    result = run_digest(site, "preview", "--as-of", AS_OF, "--out", "out", "--no-cache")
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    _names_every_hostile_post(output)
    html = (site / "out" / "digest.html").read_text(encoding="utf-8")
    text = (site / "out" / "digest.txt").read_text(encoding="utf-8")
    for title, *_ in GOOD.values():
        assert title in html and title in text
    for name in CONTROLS:  # cleaned, not dropped: the posts go out
        assert f"Control {name} in title" in text or f"Control {name}in title" in text
        assert f"Control {name} in lead" in text
    assert "Many categories" in text
    assert not any(char in html + text for char in CONTROLS.values())
    assert elapsed < 30  # 24 posts, two of them hostile YAML; was 187 s for the laughs alone


def test_check_runs_on_the_hostile_site_without_a_traceback(site: Path) -> None:
    result = run_digest(site, "check", "--as-of", AS_OF)
    output = result.stdout + result.stderr
    assert result.returncode in (0, 1), output  # 1 only for deliverability errors, listed
    _names_every_hostile_post(output)
    assert "22 post(s)" in output  # 3 good + 18 cleaned + the 100,000-category one


def test_dry_run_send_counts_every_reader(site: Path) -> None:
    for i, cats in enumerate(("US", "Europe", "Climate,US")):
        added = run_digest(
            site, "subscribers", "add", f"r{i}@example.org", "--categories", cats, "--confirmed"
        )
        assert added.returncode == 0, added.stdout + added.stderr
    result = run_digest(site, "send", "--dry-run", "--as-of", AS_OF)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    _names_every_hostile_post(output)
    assert re.search(r"would be sent\W+3\b", output), output
