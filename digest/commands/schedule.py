"""`digest schedule`, `digest run` and `digest scheduler`: the weekly edition, without anyone remembering.

- ``digest run`` does once what the schedule does: works out the due edition from the store,
  builds it, checks it, and sends it. It is safe to repeat: a second call for an edition that
  went out does nothing and says so. Cron, a systemd timer or a CI workflow call it.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from types import FrameType
from typing import Any

import click
from rich.console import Console

from digest import pipeline
from digest.check import Finding, check_edition, has_errors
from digest.commands.preview import as_of_option
from digest.config import Config
from digest.errors import DigestError
from digest.model import LoadResult
from digest.schedule import (
    Cron,
    DueEdition,
    Window,
    backdated_posts,
    due_edition,
    next_runs,
    parse_cron,
    plan,
    sent_post_ids,
)

log = logging.getLogger("digest.scheduler")


# ---------------------------------------------------------------------------------------------
# digest run
# ---------------------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    """What one `digest run` did, for the terminal, the scheduler's log and tests."""

    status: str  # sent | partly-sent | already-sent | cancelled | nothing-new | blocked | dry-run
    edition_id: str
    window: Window
    lines: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    summary: Any = None

    @property
    def ok(self) -> bool:
        return self.status not in ("blocked", "partly-sent")


# deliver(config, store, *, edition, due, posts, sender_name, dry_run) -> summary with __str__
Deliver = Callable[..., Any]


def _due(config: Config, now: datetime, cron: Cron, records: Sequence[Any]) -> DueEdition:
    """The edition due at ``now`` given what the store recorded, in the config's zones."""
    return due_edition(
        now=now,
        cron=cron,
        tz=config.schedule_tz,
        site_tz=config.tz,
        window_days=config.edition.window_days,
        records=records,
    )


def run_due(
    config: Config,
    *,
    now: datetime,
    store: Any,
    deliver: Deliver | None = None,
    sender_name: str | None = None,
    dry_run: bool = False,
) -> RunOutcome:
    """Work out the edition due at ``now``, build it, check it, and send it (at most once)."""
    from digest import editions as edition_store

    cron = parse_cron(config.schedule.cron)
    records = edition_store.edition_records(store)
    due = _due(config, now, cron, records)
    tz = config.tz
    if due.state == "sent":
        record = next(r for r in records if r.id == due.id)
        when = f" at {record.sent_at.astimezone(tz):%Y-%m-%d %H:%M %Z}" if record.sent_at else ""
        lines = [f"Edition {due.id} already went out{when}; nothing to do."]
        failed = _failed_deliveries(store, due.id)
        if failed:
            lines.append(f"{failed} reader(s) failed then: `digest status {due.id}` shows who and why.")
        return RunOutcome("already-sent", due.id, due.window, lines)
    if due.state == "cancelled":
        return RunOutcome(
            "cancelled",
            due.id,
            due.window,
            [f"Edition {due.id} was cancelled; nothing to do. Its posts go in the next edition."],
        )

    loaded = pipeline.load(config)
    already = sent_post_ids(r for r in records if r.id != due.id)
    lines: list[str] = []
    if due.state == "resume":
        lines.append(f"Edition {due.id} was started before and not finished; carrying on with it.")
    backdated = backdated_posts(
        loaded.posts,
        last_sent_end=due.last_sent.window_end if due.last_sent else None,
        already_sent_ids=already,
        covered_since=edition_store.covered_since(records),
    )
    start = due.window.start
    skipped_ids: list[str] = []
    for post in backdated:
        when = post.date.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
        if config.edition.backdated == "include":
            lines.append(f"Back-dated post {post.path} ({when}) was never sent: included in this edition.")
            start = min(start, post.date.astimezone(tz), key=lambda d: d.astimezone(UTC))
        else:
            lines.append(
                f"Back-dated post {post.path} ({when}) was never sent: skipped (edition.backdated = 'skip')."
            )
            skipped_ids.append(post.path)
    # Posts that went out in an earlier edition never come back, whatever their date says now.
    fresh = LoadResult(
        posts=tuple(p for p in loaded.posts if p.path not in already and p.path not in skipped_ids),
        skipped=loaded.skipped,
    )
    edition = pipeline.build_edition(
        config, as_of=due.window.end, window=(start, due.window.end), edition_id=due.id, posts=fresh
    )
    if edition.post_count == 0:
        lines.append(
            f"No new posts since {due.window.start.astimezone(tz):%Y-%m-%d %H:%M %Z}; "
            f"no edition this time ({due.id} not sent)."
        )
        return RunOutcome("nothing-new", due.id, due.window, lines)

    edition, rendered = pipeline.render_isolated(config, edition)  # a broken post is left out
    findings = check_edition(rendered, config, headers=_sender_headers(config, due.id))
    if has_errors(findings):
        if not dry_run:
            lines.append(f"Edition {due.id} not sent: the deliverability check found errors (see above).")
            return RunOutcome("blocked", due.id, due.window, lines, findings)
        lines.append("The deliverability check found errors: a real run would stop here.")

    manifest = pipeline.manifest(edition, rendered, config)
    if skipped_ids:
        manifest[edition_store.BACKDATED_SKIPPED] = skipped_ids
    if not dry_run:
        edition_store.record_edition(store, edition_id=due.id, window=due.window, manifest=manifest)
    summary = (deliver or _deliver)(
        config,
        store,
        edition=edition,
        due=due,
        posts=fresh,
        sender_name=sender_name,
        dry_run=dry_run,
    )
    lines.append(f"Edition {due.id} ({edition.post_count} post(s)){' dry run' if dry_run else ''}: {summary}")
    status = "dry-run" if dry_run else "sent" if getattr(summary, "ok", True) else "partly-sent"
    if status == "partly-sent":  # exit 1, so cron mail, systemd or CI shows it
        lines.append(f"Not every reader got it: `digest status {due.id}` shows who and why.")
    return RunOutcome(status, due.id, due.window, lines, findings, summary)


def _sender_headers(config: Config, edition_id: str) -> dict[str, str] | None:
    """The headers the delivery engine will put on a reader's message, for the check to inspect.

    None (the check then relies on the unsubscribe placeholder) if they cannot be made here,
    e.g. without a signing secret.
    """
    try:
        from digest.model import Subscriber
        from digest.send.delivery import _PersonalLinks

        sample = Subscriber(id=0, email="reader@example.org", status="active", categories=())
        recipient = _PersonalLinks(config, edition_id).recipient(sample)
    except (ImportError, AttributeError, TypeError, DigestError):
        return None
    return {"From": config.sender.from_email, **recipient.headers}


def _failed_deliveries(store: Any, edition_id: str) -> int:
    """How many readers the delivery engine recorded as failed for an edition (0 if unknown)."""
    try:
        from digest.send.delivery import edition_status

        return int(edition_status(store, edition_id).deliveries.get("failed", 0))
    except (ImportError, AttributeError, DigestError):
        return 0


def _deliver(config: Config, store: Any, **kwargs: Any) -> Any:
    """Hand the edition to the delivery engine (digest.send.delivery), which sends it exactly once."""
    try:
        from digest.send import delivery
    except ImportError as exc:  # pragma: no cover - while the delivery engine is missing
        raise DigestError("the delivery engine (digest.send.delivery) is not installed.") from exc
    return delivery.deliver_due(config, store, **kwargs)  # type: ignore[attr-defined]


@click.command("run")
@click.option("--as-of", "as_of", metavar="DATE[THH:MM]", help="Act as if it were this time [default: now].")
@click.option("--dry-run", is_flag=True, help="Build and check everything, count recipients, send nothing.")
@click.option(
    "--sender",
    "sender_name",
    type=click.Choice(["outbox", "sendgrid", "smtp"]),
    help="Override sender.backend.",
)
@click.pass_obj
def run_command(state: object, as_of: str | None, dry_run: bool, sender_name: str | None) -> None:
    """Send the edition that is due now, once: what cron, a systemd timer or CI calls.

    Works out the due edition from the schedule and the editions already sent (its window
    starts where the last one that went out ended), builds it, runs `digest check` on it, and
    sends it through the configured sender. Safe to repeat: if the edition already went out,
    it says so and does nothing; if nothing new was published, no edition goes out. Exits 1
    when the check finds errors (nothing is sent).

    Example: digest run

    Example: digest run --dry-run --as-of 2026-01-12T07:00
    """
    from digest.store import open_store

    config: Config = state.config  # type: ignore[attr-defined]
    console = Console()
    now = as_of_option(config, as_of)
    store = open_store(config)
    try:
        outcome = run_due(config, now=now, store=store, sender_name=sender_name, dry_run=dry_run)
    finally:
        store.dispose()
    if outcome.findings and any(f.level != "ok" for f in outcome.findings):
        from digest.commands.check import print_findings

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
@click.option("--as-of", "as_of", metavar="DATE[THH:MM]", help="List runs after this time [default: now].")
@click.pass_obj
def schedule_command(state: object, count: int, as_of: str | None) -> None:
    """Print the next run times and the window each edition would cover.

    Times are in the schedule's time zone ([schedule] timezone, else site.timezone), through
    daylight-saving changes. The first window starts where the last edition that went out
    ended (from the database), or edition.window_days before the run for the first edition.

    Example: digest schedule --count 8
    """
    config: Config = state.config  # type: ignore[attr-defined]
    console = Console()
    now = as_of_option(config, as_of)
    cron = parse_cron(config.schedule.cron)
    last_end, due = _store_view(config, now, cron)
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
    if due is not None:
        console.print(_due_line(due, config.tz), highlight=False)
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


def _store_view(config: Config, now: datetime, cron: Cron) -> tuple[datetime | None, DueEdition | None]:
    """The last sent window end and the currently due edition, if the database can be read."""
    from digest import editions as edition_store
    from digest.store import open_store

    try:
        store = open_store(config)
    except DigestError as exc:
        log.warning("cannot read the editions table (%s); assuming no edition went out yet", exc)
        return None, None
    try:
        records = edition_store.edition_records(store)
    finally:
        store.dispose()
    due = _due(config, now, cron, records)
    went_out = [r for r in records if r.status == "sent"]
    last = max(went_out, key=lambda r: r.window_end.astimezone(UTC), default=None)
    return (last.window_end if last else None), (due if records else None)


def _due_line(due: DueEdition, tz: tzinfo) -> str:
    state = {
        "sent": "already went out",
        "cancelled": "was cancelled",
        "resume": "was started and not finished; `digest run` carries on with it",
        "new": "is due now; `digest run` sends it",
    }[due.state]
    return f"Latest scheduled edition {due.id} {state} (window {due.window.describe(tz)})."


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

    class CronScheduleTrigger(BaseTrigger):
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
@click.pass_obj
def scheduler_command(state: object) -> None:
    """Keep running and fire `digest run` on the schedule, for machines without cron.

    Uses [schedule] cron and timezone from config.toml (a 6-field cron with seconds first is
    accepted for testing). Each run is a separate `digest run` process; its output is logged,
    a failed run is logged and the next one happens on time. SIGTERM or Ctrl+C stops the
    scheduler after the run in progress finishes (a second signal stops that run too).
    Each run reads config.toml afresh; restart the scheduler after changing [schedule].

    Example: digest scheduler
    """
    from apscheduler.schedulers.blocking import BlockingScheduler

    config: Config = state.config  # type: ignore[attr-defined]
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
