"""Fault tests with a real process: `digest send` killed with SIGKILL part-way, then run again.

The fake SendGrid server runs in this process; the CLI runs in a subprocess pointed at it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_sendgrid import FakeSendGrid
from send_fixtures import *  # noqa: F403  (fixtures)
from send_fixtures import API_KEY, SendSite, config_toml

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def _env(server: FakeSendGrid) -> dict[str, str]:
    return {
        **os.environ,
        "SENDGRID_API_KEY": API_KEY,
        "SENDGRID_API_HOST": server.url,
        "DIGEST_SECRET": "test-secret-that-is-long-enough-1234",
    }


def _cmd(config: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "digest",
        "--config",
        str(config),
        "send",
        "--as-of",
        "2026-01-09T12:00",
        *extra,
    ]


def _kill_when(server: FakeSendGrid, config: Path, condition, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(_cmd(config), env=_env(server), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not condition():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the send never reached the kill point"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _site(tmp_path: Path, n: int) -> tuple[SendSite, Path, list[str]]:
    site = SendSite(tmp_path)
    emails = site.add_many(n, seed=7)
    site.store.dispose()
    return site, config_toml(tmp_path, sender="sendgrid"), emails


def _undecided(root: Path) -> set[str]:
    import sqlite3

    with sqlite3.connect(root / "digest.db") as c:
        rows = c.execute(
            "SELECT s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
            "WHERE d.state IN ('undecided', 'in_flight')"
        ).fetchall()
    return {r[0] for r in rows}


def test_killed_after_the_provider_took_a_batch(tmp_path: Path, fast_retries: None) -> None:
    """The worst moment: SendGrid accepted batch 5, the process dies before recording it.

    One request at a time, so the moment is exact (several at once: the kill-at-many-points
    test below and the kill -9 cases of tests/fault_matrix.py)."""
    _, config, emails = _site(tmp_path, 60)
    config.write_text(config.read_text().replace("max_retries = 4", "max_retries = 4\nmax_in_flight = 1"))
    with FakeSendGrid(api_key=API_KEY) as server:
        server.fail_next("ok", times=4)
        server.fail_next("accept_hang", seconds=30)
        _kill_when(server, config, lambda: len(server.accepted) >= 5)
        assert 0 < sum(server.delivered().values()) < 60
        rerun = subprocess.run(_cmd(config), env=_env(server), capture_output=True, text=True, timeout=120)
        # Nobody twice: the batches in flight at the kill (up to sender.max_in_flight) are
        # reported undecided, not resent; everyone else got it.
        delivered = server.delivered()
        assert set(delivered.values()) == {1}
        assert set(emails) - set(delivered) <= _undecided(tmp_path)
        assert "in flight" in rerun.stdout and rerun.returncode == 1
        status = subprocess.run(
            [sys.executable, "-m", "digest", "--config", str(config), "status", "2026-W02"],
            env=_env(server),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "in flight" in status.stdout and "--resend-in-flight" in status.stdout.replace("\n", " ")


def test_killed_before_the_provider_answered_then_resend_in_flight(
    tmp_path: Path, fast_retries: None
) -> None:
    """The request hangs (not taken); after the kill the operator checks and resends in-flight batches.

    One request at a time here, so the hung batch is the only undecided one: with several in
    flight, the others may have been taken, and a blanket resend is the operator's risk (the
    Event Webhook settles those instead: tests/fault_matrix.py stall_settled_by_webhook)."""
    _, config, emails = _site(tmp_path, 60)
    config.write_text(config.read_text().replace("max_retries = 4", "max_retries = 4\nmax_in_flight = 1"))
    with FakeSendGrid(api_key=API_KEY) as server:
        server.fail_next("ok", times=3)
        server.fail_next("hang", seconds=30)
        _kill_when(server, config, lambda: server.mail_requests() >= 4)
        first = sum(server.delivered().values())
        plain = subprocess.run(_cmd(config), env=_env(server), capture_output=True, text=True, timeout=120)
        assert plain.returncode == 1 and "in flight" in plain.stdout
        missing = set(emails) - set(server.delivered())
        assert missing, "the hung batch's readers have not had it yet"
        resend = subprocess.run(
            _cmd(config, "--resend-in-flight"), env=_env(server), capture_output=True, text=True, timeout=120
        )
        assert resend.returncode == 0, resend.stdout + resend.stderr
        assert server.delivered() == Counter({e: 1 for e in emails})
        assert first < 60


def test_killed_at_many_points_never_duplicates(tmp_path: Path, fast_retries: None) -> None:
    """Kill after each of several accepted requests, rerun each time: still exactly once."""
    _, config, emails = _site(tmp_path, 80)
    with FakeSendGrid(api_key=API_KEY) as server:
        for kill_at in (2, 6, 11):
            server.state.faults.clear()
            server.fail_next("ok", times=max(0, kill_at - len(server.accepted) - 1))
            server.fail_next("accept_hang", seconds=30)
            _kill_when(server, config, lambda k=kill_at: len(server.accepted) >= k)
        server.state.faults.clear()
        subprocess.run(_cmd(config), env=_env(server), capture_output=True, text=True, timeout=120)
        delivered = server.delivered()
        assert set(delivered.values()) == {1}, "nobody twice"
        # Several requests are in flight at once: those a kill caught before their answer are
        # undecided (listed, never resent blindly), not silently dropped.
        missing = set(emails) - set(delivered)
        assert missing <= _undecided(tmp_path), missing
