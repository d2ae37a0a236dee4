"""Reports that tell the truth (issue 12, point 5): read-only commands, status, dry runs, reruns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from test_hostile_cli_store import CONFIG, Result, one_line_error


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """``cli(folder, *args)``: digest.cli.main in this process, as a user runs it there."""
    from digest.cli import main

    def run(cwd: Path, *args: str) -> Result:
        with monkeypatch.context() as m:
            m.chdir(cwd)
            m.delenv("DIGEST_DATABASE_URL", raising=False)
            m.delenv("DIGEST_CONFIG", raising=False)
            capsys.readouterr()
            with pytest.raises(SystemExit) as info:
                main(list(args))
            out = capsys.readouterr()
        code = info.value.code
        return Result(code if isinstance(code, int) else (0 if code is None else 1), out.out, out.err)

    return run


def test_read_only_send_commands_create_no_database(tmp_path: Path, cli: Callable[..., Result]) -> None:
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    for args in (
        ("status",),
        ("status", "2026-W02"),
        ("send", "--dry-run"),
        ("run", "--dry-run"),
        ("cancel",),
    ):
        line = one_line_error(cli(tmp_path, *args))
        assert "there is no database at" in line, (args, line)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"], args
    shown = cli(tmp_path, "schedule")
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]
