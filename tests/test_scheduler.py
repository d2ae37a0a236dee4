"""`digest scheduler` as a real process: fires `digest run` on a short schedule, survives a failed
run, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.commands.schedule import make_trigger
from digest.schedule import next_runs, parse_cron

CONFIG = """\
[site]
timezone = "Europe/London"
[posts]
folder = "posts"
[database]
url = "sqlite:///digest.db"
[schedule]
cron = "*/2 * * * * *"   # every two seconds: six fields, seconds first
"""


class Lines:
    """Reads a child's output on a thread, so the test can wait for a line with a deadline."""

    def __init__(self, stream) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.seen):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("timed out; output so far:\n" + "\n".join(self.seen))
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                if not predicate(self.seen):
                    raise AssertionError("process ended; output:\n" + "\n".join(self.seen))
                return
            self.seen.append(line)


def count(lines: list[str], text: str) -> int:
    return sum(text in line for line in lines)


def test_scheduler_runs_survives_a_failure_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(tmp_path / "config.toml"), "scheduler"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out = Lines(proc.stdout)
        # No posts folder yet: the first run fails, and the scheduler carries on.
        out.wait_for(lambda seen: count(seen, "failed with exit code 1") >= 1, timeout=60)
        assert count(out.seen, "posts folder not found") >= 1
        (tmp_path / "posts").mkdir()
        # Now runs succeed (nothing new to send, which is a success).
        out.wait_for(lambda seen: count(seen, ": finished in") >= 2, timeout=60)
        assert count(out.seen, "No new posts since") >= 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        out.wait_for(lambda seen: count(seen, "scheduler stopped") == 1, timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = "\n".join(out.seen)
    assert "scheduler started: '*/2 * * * * *' in Europe/London" in log
    assert "received SIGTERM" in log
    # Every run that started was logged as finished or failed before the scheduler said it stopped.
    stopped_at = next(i for i, line in enumerate(out.seen) if "scheduler stopped" in line)
    started = count(out.seen, ": starting digest run")
    ended = count(out.seen[:stopped_at], ": finished in") + count(
        out.seen[:stopped_at], "failed with exit code"
    )
    assert started == ended >= 3
    assert "Traceback" not in log


def test_trigger_fires_when_digest_schedule_says() -> None:
    london = ZoneInfo("Europe/London")
    cron = parse_cron("0 7 * * 1")
    trigger = make_trigger(cron, london)
    now = datetime(2026, 3, 20, tzinfo=UTC)
    fired, previous = [], None
    for _ in range(4):
        previous = trigger.get_next_fire_time(previous, now)
        fired.append(previous)
    assert fired == next_runs(cron, london, now, 4)
    assert [f.weekday() for f in fired] == [0, 0, 0, 0]  # Mondays (CronTrigger.from_crontab: Tuesdays)
    # At a firing time exactly, that time is the next fire time (APScheduler's contract).
    assert trigger.get_next_fire_time(None, fired[0]) == fired[0]


def test_trigger_moves_on_through_the_repeated_hour() -> None:
    # APScheduler 3's CronTrigger keeps returning 01:00 GMT here, which would spin the scheduler.
    london = ZoneInfo("Europe/London")
    trigger = make_trigger(parse_cron("0 * * * *"), london)
    previous, now = None, datetime(2026, 10, 24, 23, 30, tzinfo=UTC)
    seen = []
    for _ in range(4):
        previous = trigger.get_next_fire_time(previous, now)
        seen.append(previous.astimezone(UTC))
    assert seen == [datetime(2026, 10, 25, 0, 0, tzinfo=UTC) + timedelta(hours=i) for i in range(4)]


@pytest.mark.parametrize("cron", ["0 7 * *", "0 7 1 * 1"])
def test_scheduler_refuses_a_bad_cron(tmp_path: Path, cron: str) -> None:
    (tmp_path / "config.toml").write_text(f'[schedule]\ncron = "{cron}"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(tmp_path / "config.toml"), "scheduler"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "schedule.cron" in proc.stderr and "Traceback" not in proc.stderr
