"""`digest schedule`, `digest run` and `digest scheduler`: the weekly edition, without anyone remembering.

- ``digest run`` calls ``digest.weekly.run_due`` (the due edition, built once, checked, sent at
  most once) and prints what it did. Cron, a systemd timer or a CI workflow call it.
- ``digest schedule`` prints the next run times and the window each would cover.
- ``digest scheduler`` stays running and fires ``digest run`` on the schedule (APScheduler).

The rules themselves (windows, ids, DST) are pure functions in ``digest.schedule``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from types import FrameType
from typing import Any

import click
from rich.console import Console

from digest.commands.common import as_of_option, current_config, moment, print_findings
from digest.config import Config
from digest.errors import DigestError
from digest.schedule import (
    Cron,
    next_runs,
    parse_cron,
    plan,
)

log = logging.getLogger("digest.scheduler")


# ---------------------------------------------------------------------------------------------
# digest run
# ---------------------------------------------------------------------------------------------


@click.command("run")
@as_of_option("Act as if it were this time [default: now].")
@click.option("--dry-run", is_flag=True, help="Build and check everything, count recipients, send nothing.")
@click.option(
    "--sender",
    "sender_name",
    type=click.Choice(["outbox", "sendgrid", "smtp"]),
    help="Override sender.backend.",
)
def run_command(as_of: str | None, dry_run: bool, sender_name: str | None) -> None:
    """Send the edition that is due now, once: what cron, a systemd timer or CI calls.

    Works out the due edition from the schedule and the editions already sent (its window
    starts where the last one that went out ended), builds it, runs `digest check` on it, and
    sends it through the configured sender. Safe to repeat: if the edition already went out,
    it says so and does nothing; if nothing new was published, no edition goes out. Exits 1
    when the check finds errors (nothing is sent).

    \b
    Example:
      digest run
      digest run --dry-run --as-of 2026-01-12T07:00
    """
    from digest.store import open_store
    from digest.weekly import run_due

    config = current_config()
    console = Console()
    store = open_store(config, create=not dry_run)  # a dry run never creates a database
    try:
        outcome = run_due(
            config, now=moment(config, as_of), store=store, sender_name=sender_name, dry_run=dry_run
        )
    finally:
        store.dispose()
    if outcome.findings and any(f.level != "ok" for f in outcome.findings):
        print_findings(console, [f for f in outcome.findings if f.level != "ok"])
    for line in outcome.lines:
        click.echo(line)
    if not outcome.ok:
        raise click.exceptions.Exit(1)


# ---------------------------------------------------------------------------------------------
# digest schedule
# ---------------------------------------------------------------------------------------------


@click.command("schedule")
@click.option(
    "-n", "--count", default=5, show_default=True, type=click.IntRange(1, 100), help="How many runs."
)
@as_of_option("List runs after this time [default: now].")
def schedule_command(count: int, as_of: str | None) -> None:
    """Print the next run times and the window each edition would cover.

    Times are in the schedule's time zone ([schedule] timezone, else site.timezone), through
    daylight-saving changes. The first window starts where the last edition that went out
    ended (from the database), or edition.window_days before the run for the first edition.

    \b
    Example:
      digest schedule --count 8
    """
    config = current_config()
    console = Console()
    now = moment(config, as_of)
    cron = parse_cron(config.schedule.cron)
    last_end, due_line = _store_view(config, now)
    runs = plan(
        cron=cron,
        tz=config.schedule_tz,
        now=now,
        count=count,
        last_sent_end=last_end,
        window_days=config.edition.window_days,
    )
    zone = config.schedule.timezone or config.site.timezone
    console.print(
        f"Schedule '{cron.expr}' in {zone} (edit [schedule] in config.toml).", highlight=False, markup=False
    )
    if due_line is not None:
        console.print(due_line, highlight=False)
    rows = [
        (
            f"{r.at.astimezone(config.schedule_tz):%a %d %b %Y %H:%M %Z}",
            r.edition_id,
            r.window.describe(config.tz),
        )
        for r in runs
    ]
    widths = [max(len(row[i]) for row in [("Run at", "Edition", ""), *rows]) for i in range(2)]
    click.echo(f"{'Run at':<{widths[0]}}  {'Edition':<{widths[1]}}  Window (posts dated from, up to)")
    for at, edition_id, window in rows:
        click.echo(f"{at:<{widths[0]}}  {edition_id:<{widths[1]}}  {window}")
    if last_end is None:
        console.print(
            f"No edition has gone out yet: the first covers edition.window_days = "
            f"{config.edition.window_days} days; later windows assume every run happens on time."
        )


def _store_view(config: Config, now: datetime) -> tuple[datetime | None, str | None]:
    """The last sent window end and a line about the due edition, if the database can be read."""
    from digest.store import NoDatabaseError, open_store
    from digest.weekly import schedule_state

    try:
        store = open_store(config, create=False)  # looking never creates a database
    except NoDatabaseError:
        return None, None  # no database yet: no edition went out
    except DigestError as exc:
        log.warning("cannot read the editions table (%s); assuming no edition went out yet", exc)
        return None, None
    try:
        return schedule_state(config, store, now)
    finally:
        store.dispose()


# ---------------------------------------------------------------------------------------------
# digest scheduler
# ---------------------------------------------------------------------------------------------


def make_trigger(cron: Cron, tz: tzinfo) -> Any:
    """An APScheduler trigger that fires exactly when ``digest schedule`` says.

    Not ``CronTrigger.from_crontab``: in APScheduler 3 it reads weekday numbers from Monday = 0
    (so '0 7 * * 1' fires on Tuesdays) and, in the hour the clocks go back, keeps returning the
    same past time. This trigger asks ``digest.schedule.next_runs`` (croniter) instead.
    """
    from apscheduler.triggers.base import BaseTrigger

    class CronScheduleTrigger(BaseTrigger):  # type: ignore[misc]
        def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
            after = previous_fire_time if previous_fire_time is not None else now - timedelta(microseconds=1)
            runs = next_runs(cron, tz, after, 1)
            return runs[0] if runs else None

        def __str__(self) -> str:
            return f"cron[{cron.expr}] in {tz}"

    return CronScheduleTrigger()


class _Runner:
    """Fires `digest run` as a child process, one at a time, and logs how each run went.

    A child process, so a crash, a leak or a hung provider in one run cannot take the
    scheduler down; the next firing starts clean.
    """

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.argv = list(argv)
        self.env = env
        self.count = 0
        self.failures = 0
        self._child: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    def __call__(self) -> None:
        self._idle.clear()
        try:
            self._run()
        finally:
            self._idle.set()

    def _run(self) -> None:
        self.count += 1
        number = self.count
        log.info("run %d: starting digest run", number)
        started = time.monotonic()
        try:
            with self._lock:
                self._child = subprocess.Popen(
                    self.argv,
                    env=self.env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,  # a Ctrl+C or SIGTERM to the scheduler is not the run's
                )
            child = self._child
            assert child.stdout is not None
            for line in child.stdout:
                if line.strip():
                    log.info("run %d: %s", number, line.rstrip())
            code = child.wait()
        except OSError as exc:
            self.failures += 1
            log.error("run %d: could not start (%s)", number, exc)
            return
        finally:
            with self._lock:
                self._child = None
        elapsed = time.monotonic() - started
        if code == 0:
            log.info("run %d: finished in %.1fs", number, elapsed)
        else:
            self.failures += 1
            log.error(
                "run %d: failed with exit code %d after %.1fs; the next run is on schedule",
                number,
                code,
                elapsed,
            )

    def wait(self) -> None:
        """Block until the run in progress (if any) has finished and been logged."""
        if not self._idle.is_set():
            log.info("waiting for run %d to finish (send SIGTERM again to stop it now)", self.count)
            while not self._idle.wait(0.2):
                pass

    def terminate(self) -> None:
        with self._lock:
            if self._child is not None and self._child.poll() is None:
                log.warning("stopping run %d", self.count)
                self._child.terminate()


def run_argv(config: Config) -> list[str]:
    """The command each firing runs: this Python, this package, this config."""
    argv = [sys.executable, "-m", "digest"]
    if config.source is not None:
        argv += ["--config", str(config.source)]
    return [*argv, "run"]


@click.command("scheduler")
def scheduler_command() -> None:
    """Keep running and fire `digest run` on the schedule, for machines without cron.

    Uses [schedule] cron and timezone from config.toml (a 6-field cron with seconds first is
    accepted for testing). Each run is a separate `digest run` process; its output is logged,
    a failed run is logged and the next one happens on time. SIGTERM or Ctrl+C stops the
    scheduler after the run in progress finishes (a second signal stops that run too).
    Each run reads config.toml afresh; restart the scheduler after changing [schedule].

    \b
    Example:
      digest scheduler
    """
    from apscheduler.schedulers.blocking import BlockingScheduler

    config = current_config()
    _setup_logging()
    cron = parse_cron(config.schedule.cron)
    tz = config.schedule_tz
    runner = _Runner(run_argv(config), dict(os.environ))
    scheduler = BlockingScheduler(timezone=tz)
    scheduler.add_job(
        runner,
        make_trigger(cron, tz),
        id="digest-run",
        name="digest run",
        max_instances=1,  # a run still going when the next is due: skip that firing
        coalesce=True,  # after a pause (laptop asleep), run once, not once per missed slot
        misfire_grace_time=3600,
    )
    stopping = {"signals": 0}

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping["signals"] += 1
        if stopping["signals"] == 1:
            log.info("received %s; stopping after the current run", signal.Signals(signum).name)
            scheduler.shutdown(wait=False)
        else:
            runner.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    first = next_runs(cron, tz, datetime.now(UTC), 1)
    log.info(
        "scheduler started: '%s' in %s; first run at %s",
        cron.expr,
        config.schedule.timezone or config.site.timezone,
        first[0].isoformat() if first else "never",
    )
    scheduler.start()  # blocks until stop() shuts it down
    runner.wait()
    log.info("scheduler stopped after %d run(s), %d failed", runner.count, runner.failures)


def _setup_logging() -> None:
    """Timestamped INFO lines on stderr (journald and CI logs keep them), whatever -v says."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S%z"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
