"""Reports that tell the truth (issue 12, point 5): read-only commands, status, dry runs, reruns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from test_hostile_cli_store import CONFIG, Result, one_line_error
from test_hostile_cli_store import digest as _digest_cli  # noqa: F401  (the `digest` fixture)


def test_read_only_send_commands_create_no_database(tmp_path: Path, digest: Callable[..., Result]) -> None:
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    for args in (
        ("status",),
        ("status", "2026-W02"),
        ("send", "--dry-run"),
        ("run", "--dry-run"),
        ("cancel",),
    ):
        line = one_line_error(digest(tmp_path, *args))
        assert "there is no database at" in line, (args, line)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"], args
    shown = digest(tmp_path, "schedule")
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]
