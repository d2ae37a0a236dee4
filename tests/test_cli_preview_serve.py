"""`digest preview`: files and manifest, --against (what changed, exit 0) and --serve as a real process.

The live-reload path is tested here without a browser too: the Server-Sent Events stream must
announce a new version when a post or config.toml changes, so the page can reload itself.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest.cli import main

AS_OF = "2026-01-09"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "preview-test-secret")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The CLI as a person runs it (main turns DigestError into a message and exit 1)."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out = capsys.readouterr()
    return int(exited.value.code or 0), out.out + out.err


def preview(site: Any, capsys: pytest.CaptureFixture[str], out: Path, *extra: str) -> tuple[int, str]:
    return run(
        capsys,
        "--config",
        str(site.config_path),
        "preview",
        "--as-of",
        AS_OF,
        "--out",
        str(out),
        "--no-cache",
        *extra,
    )


def test_preview_writes_html_text_and_manifest_with_counts(preview_site, capsys, tmp_path):
    code, output = preview(preview_site, capsys, tmp_path / "out")
    assert code == 0, output
    assert "Subject: Test Brief: 4 new posts" in output
    data = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert (tmp_path / "out" / "digest.html").exists() and (tmp_path / "out" / "digest.txt").exists()
    assert data["edition"] == "2026-W02"
    assert data["window"]["timezone"] == "Europe/London"
    assert data["counts"] == {"(all)": 4, "News": 2, "Tech": 1, "Data Science": 1}
    paths = [p["path"] for s in data["sections"] for p in s["posts"]]
    assert sorted(paths) == sorted(
        [
            "2026-01-05-harbour.md",
            "2026-01-06-compiler.md",
            "2026-01-07-notebooks.md",
            "2026-01-08-council.md",
        ]
    )
    assert all(len(p["content_hash"]) == 64 for s in data["sections"] for p in s["posts"])


def test_against_prints_what_changed_and_exits_0(preview_site, capsys, tmp_path):
    assert preview(preview_site, capsys, tmp_path / "before")[0] == 0
    saved = tmp_path / "before" / "manifest.json"
    preview_site.write_post(
        "2026-01-06-compiler.md", "A faster compiler lands", "Tech", "2026-01-06 10:30", body="New body.\n"
    )
    preview_site.write_post("2026-01-08-chips.md", "New chips ship", "Tech", "2026-01-08 08:00")
    (preview_site.posts / "2026-01-05-harbour.md").unlink()

    code, output = preview(preview_site, capsys, tmp_path / "after", "--against", str(saved))
    assert code == 0, output
    assert "Compared with 2026-W02: 1 added, 1 removed, 1 changed, 2 unchanged" in output
    assert "+ added" in output and "New chips ship" in output
    assert "- removed" in output and "2026-01-05-harbour.md" in output
    assert "~ changed" in output and "content " in output
    assert "subject changed" not in output  # still four posts
    diff = json.loads((tmp_path / "after" / "manifest-diff.json").read_text(encoding="utf-8"))
    assert {p["path"]: p["change"] for p in diff["posts"]} == {
        "2026-01-08-chips.md": "added",
        "2026-01-05-harbour.md": "removed",
        "2026-01-06-compiler.md": "changed",
    }
    counts = {c["name"]: (c["old"], c["new"]) for c in diff["counts"]}
    assert counts["Tech"] == (1, 2) and counts["News"] == (2, 1)


def test_against_an_unchanged_edition_says_so(preview_site, capsys, tmp_path):
    preview(preview_site, capsys, tmp_path / "a")
    code, output = preview(
        preview_site, capsys, tmp_path / "b", "--against", str(tmp_path / "a" / "manifest.json")
    )
    assert code == 0
    assert "No changes since 2026-W02: 4 posts, same subject." in output


def test_against_an_empty_edition_still_compares(preview_site, capsys, tmp_path):
    preview(preview_site, capsys, tmp_path / "a")
    code, output = run(
        capsys,
        "--config",
        str(preview_site.config_path),
        "preview",
        "--as-of",
        "2026-03-01",
        "--out",
        str(tmp_path / "b"),
        "--against",
        str(tmp_path / "a" / "manifest.json"),
    )
    assert code == 0, output
    assert "has no posts" in output and "4 removed" in output
    assert (tmp_path / "b" / "manifest.json").exists() and not (tmp_path / "b" / "digest.html").exists()


def test_against_a_missing_or_bad_file_is_an_error(preview_site, capsys, tmp_path):
    code, output = preview(preview_site, capsys, tmp_path / "o", "--against", str(tmp_path / "nope.json"))
    assert code == 1 and "nope.json: no such manifest" in output
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2", encoding="utf-8")
    code, output = preview(preview_site, capsys, tmp_path / "o", "--against", str(bad))
    assert code == 1 and "bad.json: not valid JSON" in output


def test_empty_edition_without_against_is_still_an_error(preview_site, capsys, tmp_path):
    code, output = run(
        capsys,
        "--config",
        str(preview_site.config_path),
        "preview",
        "--as-of",
        "2026-03-01",
        "--out",
        str(tmp_path),
    )
    assert code == 1 and "has no posts" in output


def test_help_documents_serve_and_against(capsys):
    code, output = run(capsys, "preview", "--help")
    assert code == 0
    for option in ("--serve", "--host", "--port", "--against", "Example: digest preview --serve"):
        assert option in output


def read_events(url: str, into: list[str], stop: threading.Event) -> None:
    """Collect the `data:` lines of the page's event stream until told to stop."""
    try:
        with httpx.stream("GET", url + "/events", timeout=httpx.Timeout(5.0, read=30.0)) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    into.append(line[6:])
                if stop.is_set():
                    return
    except httpx.HTTPError:
        return


def wait_for(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_serve_pushes_a_new_version_when_a_post_changes(preview_site, preview_servers):
    proc, url = preview_servers.start("--out", str(preview_site.out))  # --out: save every build
    page = httpx.get(url + "/").text
    assert 'id="subject">Test Brief: 4 new posts<' in page
    events: list[str] = []
    stop = threading.Event()
    reader = threading.Thread(target=read_events, args=(url, events, stop), daemon=True)
    reader.start()
    assert wait_for(lambda: len(events) >= 1), "the stream did not say hello"
    first = events[0]
    assert f'data-token="{first}"' in page

    preview_site.write_post("2026-01-08-chips.md", "New chips ship", "Tech", "2026-01-08 08:00")
    assert wait_for(lambda: len(events) >= 2), f"no event after a post changed: {events}"
    assert events[-1] != first
    state = httpx.get(url + "/state").json()
    assert state["token"] == events[-1] and "2026-01-08-chips.md" in state["last_change"]
    assert 'id="subject">Test Brief: 5 new posts<' in httpx.get(url + "/").text
    # with --out, every build writes the manifest beside the HTML
    manifest = json.loads((preview_site.out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["post_count"] == 5 and (preview_site.out / "digest.html").exists()

    stop.set()
    assert preview_servers.stop(proc) == 0  # Ctrl+C ends it promptly, stream open or not


def test_serve_survives_a_broken_config_and_recovers(preview_site, preview_servers):
    proc, url = preview_servers.start()
    good = preview_site.config_path.read_text(encoding="utf-8")
    before = httpx.get(url + "/state").json()["version"]

    preview_site.config_path.write_text(good.replace("[site]", "[site"), encoding="utf-8")
    assert wait_for(lambda: httpx.get(url + "/state").json()["version"] > before)
    page = httpx.get(url + "/").text
    assert "config.toml is broken" in page and "not valid TOML" in page
    assert 'id="subject">Test Brief: 4 new posts<' in page  # the last good config keeps working

    version = httpx.get(url + "/state").json()["version"]
    preview_site.config_path.write_text(
        good.replace('name = "Test Brief"', 'name = "Renamed Brief"'), encoding="utf-8"
    )
    assert wait_for(lambda: httpx.get(url + "/state").json()["version"] > version)
    page = httpx.get(url + "/").text
    assert "config.toml is broken" not in page
    assert 'id="subject">Renamed Brief: 4 new posts<' in page
    assert preview_servers.stop(proc) == 0


def test_serve_rejects_a_bad_as_of_before_starting(preview_site, capsys):
    code, output = run(
        capsys, "--config", str(preview_site.config_path), "preview", "--serve", "--as-of", "someday"
    )
    assert code == 1 and "someday" in output
