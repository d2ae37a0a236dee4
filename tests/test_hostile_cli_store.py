"""Every error a user can cause at the terminal ends in one line that says what to do (issue 15).

The CLI is run as a user runs it, ``python -m digest`` in a subprocess, so what is checked is
what they would see: exit code 1, one ``Error:`` line, no traceback (``-v`` keeps it). Also
consent on re-adding, the categories `add` keeps, read-only commands that create nothing, and
the store's errors (locked, read-only, not a database, missing folder).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from digest import store as store_module
from digest import subscribers as subs
from digest.config import Config
from digest.errors import StoreError
from digest.store import DatabaseBusyError, NoDatabaseError, open_store

CONFIG = """
[[categories]]
name = "US"
[[categories]]
name = "Europe"
"""


def subprocess_digest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point in its own process: what a user at a terminal sees."""
    env = {k: v for k, v in os.environ.items() if k not in ("DIGEST_DATABASE_URL", "DIGEST_CONFIG")}
    return subprocess.run(
        [sys.executable, "-m", "digest", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def digest(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """``digest(folder, *args, env={...})``: digest.cli.main in this process (fast), as a user runs it."""
    from digest.cli import main

    def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Result:
        with monkeypatch.context() as m:
            m.chdir(cwd)
            m.delenv("DIGEST_DATABASE_URL", raising=False)
            m.delenv("DIGEST_CONFIG", raising=False)
            for key, value in (env or {}).items():
                m.setenv(key, value)
            capsys.readouterr()
            with pytest.raises(SystemExit) as info:
                main(list(args))
            out = capsys.readouterr()
        code = info.value.code
        return Result(code if isinstance(code, int) else (0 if code is None else 1), out.out, out.err)

    return run


def one_line_error(result: Result | subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    return tmp_path


def test_export_to_a_missing_folder(folder: Path, digest: Callable[..., Result]) -> None:
    assert digest(folder, "subscribers", "add", "a@example.com", "-c", "US").returncode == 0
    line = one_line_error(digest(folder, "subscribers", "export", "/missing/dir/x.csv"))
    assert "/missing/dir does not exist" in line and "mkdir -p" in line
    # The real entry point, in its own process: one line; -v keeps the traceback.
    line = one_line_error(subprocess_digest(folder, "subscribers", "export", "/missing/dir/x.csv"))
    assert "/missing/dir does not exist" in line
    assert (
        "Traceback" in subprocess_digest(folder, "-v", "subscribers", "export", "/missing/dir/x.csv").stderr
    )


def test_database_url_at_a_file_that_is_not_a_database(folder: Path, digest: Callable[..., Result]) -> None:
    (folder / "notes.txt").write_text("not a database\n" * 100, encoding="utf-8")
    env = {"DIGEST_DATABASE_URL": f"sqlite:///{folder / 'notes.txt'}"}
    for args in (("subscribers", "list"), ("subscribers", "add", "a@example.com", "-c", "US")):
        line = one_line_error(digest(folder, *args, env=env))
        assert "is not a digest database" in line and "DIGEST_DATABASE_URL" in line
    assert (folder / "notes.txt").read_text(encoding="utf-8").startswith("not a database")


def test_database_url_in_a_missing_folder_is_an_error_not_a_new_database(
    folder: Path, digest: Callable[..., Result]
) -> None:
    env = {"DIGEST_DATABASE_URL": "sqlite:///nonexistent/dir/digest.db"}
    line = one_line_error(digest(folder, "subscribers", "add", "a@example.com", "-c", "US", env=env))
    assert "nonexistent/dir for the database digest.db does not exist" in line
    assert not (folder / "nonexistent").exists()


def test_read_only_database_file(folder: Path, digest: Callable[..., Result]) -> None:
    assert digest(folder, "subscribers", "add", "a@example.com", "-c", "US").returncode == 0
    # A folder and file this user can read but not write. Root writes anything, so as root the
    # command runs with the effective user `nobody` (and back to root after).
    shared = Path(tempfile.mkdtemp(prefix="digest-ro-"))
    try:
        for name in ("config.toml", "digest.db"):
            (shared / name).write_bytes((folder / name).read_bytes())
        (shared / "digest.db").chmod(0o444)
        shared.chmod(0o555)
        demote = os.geteuid() == 0
        if demote:
            os.seteuid(65534)
        try:
            result = digest(shared, "subscribers", "add", "b@example.com", "-c", "US")
        finally:
            if demote:
                os.seteuid(0)
        line = one_line_error(result)
        assert "read-only" in line and "write access" in line, line
    finally:
        shared.chmod(0o755)
        for child in shared.iterdir():
            child.unlink()
        shared.rmdir()


def test_read_only_commands_create_no_database(tmp_path: Path, digest: Callable[..., Result]) -> None:
    for args in (
        ("categories",),
        ("subscribers", "list"),
        ("subscribers", "list", "--format", "json"),
        ("subscribers", "show", "a@example.com"),
        ("subscribers", "export"),
        ("subscribers", "remove", "a@example.com"),
    ):
        result = digest(tmp_path, *args)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert sorted(p.name for p in tmp_path.iterdir()) == [], (args, result.stdout, result.stderr)
    listed = digest(tmp_path, "subscribers", "list", "--format", "json")
    assert listed.returncode == 0 and listed.stdout.strip() == "[]"


def test_categories_without_config_shows_the_table_syntax(
    tmp_path: Path, digest: Callable[..., Result]
) -> None:
    result = digest(tmp_path, "categories")
    assert "add [[categories]] to config.toml" in result.stdout, result.stdout
    assert "add [] to" not in result.stdout


# --- consent, and what `add` does to categories ---------------------------------------------------


def test_add_does_not_resubscribe_someone_who_left(folder: Path, digest: Callable[..., Result]) -> None:
    assert digest(folder, "subscribers", "add", "ana@example.com", "-c", "US").returncode == 0
    assert digest(folder, "subscribers", "remove", "ana@example.com").returncode == 0
    line = one_line_error(digest(folder, "subscribers", "add", "ana@example.com", "-c", "US"))
    assert "unsubscribed on" in line and "--force --reason" in line and "Nothing was changed" in line
    assert "needs --reason" in one_line_error(
        digest(folder, "subscribers", "add", "ana@example.com", "-c", "US", "--force")
    )
    forced = digest(
        folder,
        "subscribers",
        "add",
        "ana@example.com",
        "-c",
        "US",
        "--force",
        "--reason",
        "asked by email on 5 Jan",
    )
    assert forced.returncode == 0 and forced.stdout.startswith("Subscribed again: ana@example.com (active)")
    shown = digest(folder, "subscribers", "show", "ana@example.com").stdout
    assert '"forced": true' in shown and "asked by email on 5 Jan" in shown


def test_add_keeps_other_categories_and_says_what_changed(
    folder: Path, digest: Callable[..., Result]
) -> None:
    assert digest(folder, "subscribers", "add", "ana@example.com", "-c", "US,Europe").returncode == 0
    same = digest(folder, "subscribers", "add", "ANA@example.com", "-c", "US")
    assert same.stdout == "Already subscribed: ana@example.com (active): US, Europe (nothing changed)\n"
    replaced = digest(folder, "subscribers", "add", "ANA@example.com", "-c", "US", "--replace")
    assert replaced.stdout == "Already subscribed: ana@example.com (active): US (removed Europe)\n"
    added = digest(folder, "subscribers", "add", "ana@example.com", "-c", "Europe")
    assert added.stdout == "Already subscribed: ana@example.com (active): US, Europe (added Europe)\n"


def test_library_consent_rules(make_config: Callable[..., Config]) -> None:
    config = make_config()
    store = open_store(config, url="sqlite://")
    for status in ("unsubscribed", "bounced", "complained", "paused"):
        email = f"{status}@example.com"
        subs.subscribe(store, config, email, ["News"], confirmed=True)
        subs.set_status(store, email, status, source="test")
        with pytest.raises(subs.ConsentError, match="needs their consent"):
            subs.subscribe(store, config, email, ["News"], confirmed=True)
        assert subs.get(store, email).status == status  # type: ignore[union-attr]
        # Their own click (the web form restarts double opt-in) is always allowed.
        again, outcome = subs.subscribe(store, config, email, ["News"], source="web")
        if status != "paused":
            assert (outcome, again.status) == (subs.PENDING, "pending")
    store.dispose()


# --- the store's errors -----------------------------------------------------------------------


def test_no_database_for_read_only_opens(make_config: Callable[..., Config], tmp_path: Path) -> None:
    config = make_config(database={"url": "sqlite:///fresh.db"})
    with pytest.raises(NoDatabaseError, match=r"no database at .*fresh\.db yet"):
        open_store(config, create=False)
    assert not (tmp_path / "fresh.db").exists()
    open_store(config).dispose()
    open_store(config, create=False).dispose()


def test_lock_renew_while_another_writer_holds_sqlite(
    make_config: Callable[..., Config], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert

    from digest.send.delivery import EditionLock
    from digest.store import editions

    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    config = make_config(database={"url": "sqlite:///lock.db"})
    store = open_store(config)
    now = datetime.now(UTC)
    with store.session() as s:
        s.execute(
            insert(editions).values(
                id="2026-W02", window_start=now - timedelta(days=7), window_end=now, status="sending"
            )
        )
    lock = EditionLock(store, "2026-W02")
    lock.acquire()
    other = sqlite3.connect(tmp_path / "lock.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        with pytest.raises(DatabaseBusyError) as info:
            lock.renew(force=True)
        message = str(info.value)
        assert "locked by another writer" in message and "run the same command again" in message
        assert isinstance(info.value, StoreError) and info.value.retryable
    finally:
        other.execute("ROLLBACK")
        other.close()
    lock.renew(force=True)  # free again: the retry works
    lock.release()
    store.dispose()


def test_store_errors_are_store_errors(make_config: Callable[..., Config], tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StoreError, match="is not a digest database"):
        open_store(make_config(), url=f"sqlite:///{tmp_path / 'junk.db'}")
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="is a folder"):
        open_store(make_config(), url=f"sqlite:///{tmp_path / 'dir.db'}")
