"""`digest preview` and `digest serve` footguns from issue 15: user errors end in one line that says what to do."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from digest.commands.preview import preview_command
from digest.commands.serve import serve_command

ROOT = Path(__file__).resolve().parent.parent


def run_digest(cwd: Path, *args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DIGEST_CONFIG", "DIGEST_DATABASE_URL")}
    env["COLUMNS"] = str(columns)
    env["DIGEST_SECRET"] = "test-secret-that-is-long-enough-1234"
    return subprocess.run(
        [sys.executable, "-m", "digest", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "2026-01-07-a.md").write_text(
        "---\ntitle: A post\ncategories: [US]\n---\n\nA lead paragraph.\n", encoding="utf-8"
    )
    (tmp_path / "config.toml").write_text(
        '[[categories]]\nname = "US"\n\n[[categories]]\nname = "Europe"\n', encoding="utf-8"
    )
    return tmp_path


@pytest.mark.parametrize("command", [["preview", "--serve"], ["serve"]])
def test_a_busy_port_is_one_line_with_a_hint(site: Path, busy_port: int, command: list[str]) -> None:
    line = one_line_error(run_digest(site, *command, "--port", str(busy_port)))
    assert f"port {busy_port} on 127.0.0.1 is already in use" in line
    assert re.search(r"use --port \d+", line)


@pytest.mark.parametrize("command", [["preview", "--serve"], ["serve"]])
def test_an_unknown_host_is_one_line(site: Path, command: list[str]) -> None:
    line = one_line_error(run_digest(site, *command, "--host", "no-such-host.invalid", "--port", "0"))
    assert "no-such-host.invalid" in line and "--host" in line


def test_a_port_out_of_range_is_refused_by_the_option(site: Path) -> None:
    line = one_line_error(run_digest(site, "preview", "--serve", "--port", "99999"))
    assert "--port" in line


def test_an_unknown_category_is_named_with_the_ones_there_are(site: Path) -> None:
    line = one_line_error(run_digest(site, "preview", "--as-of", "2026-01-09", "--categories", "US,Sports"))
    assert "Sports is not a category" in line and "US,Europe" in line


def test_an_output_folder_that_cannot_be_made_is_one_line(site: Path) -> None:
    (site / "a-file").write_text("x", encoding="utf-8")
    line = one_line_error(run_digest(site, "preview", "--as-of", "2026-01-09", "--out", "a-file/build"))
    assert "a-file/build" in line and "--out" in line


@pytest.mark.parametrize("command", [preview_command, serve_command])
def test_help_examples_are_whole_lines_with_categories_of_the_shipped_config(command: click.Command) -> None:
    """At 60 columns click would rewrap a paragraph mid-argument; a pasted example must still run."""
    shipped = {c["name"] for c in tomllib.loads((ROOT / "config.toml").read_text("utf-8"))["categories"]}
    written = [
        line.strip() for line in (command.help or "").splitlines() if line.strip().startswith("Example:")
    ]
    assert len(written) >= 2
    shown = run_digest(ROOT, str(command.name), "--help", columns=60).stdout
    shown_lines = {line.strip() for line in shown.splitlines()}
    for example in written:
        assert example in shown_lines, f"rewrapped: {example}"
        for value in re.findall(r"--categories (\S+)", example):
            assert set(value.split(",")) <= shipped, example


@pytest.mark.parametrize("command", ["preview", "check"])
@pytest.mark.parametrize("as_of", ["0001-01-03", "9999-12-31T23:59"])
def test_an_as_of_near_the_ends_of_the_calendar_is_one_line(site: Path, command: str, as_of: str) -> None:
    line = one_line_error(run_digest(site, command, "--as-of", as_of))
    assert "--as-of" in line and "between 1900 and 9000" in line
