"""The weekly edition: which one is due, what it carries, and sending it at most once.

`digest run` (cron, a systemd timer, CI, `digest scheduler`) and `digest send` both come here.
Each works out an edition id and window with the store, then builds the edition ONCE as an
``EditionPlan`` (``digest.plan``: posts, rendering, check, manifest) and hands that plan to the
delivery engine (``digest.send.delivery``), so the check, the recorded manifest and the emails
can never disagree.

- ``run_due``: the edition due at ``now`` by the schedule. Its window starts where the last
  edition that went out ended; a post back-dated into a window already sent is included
  (``edition.backdated = "include"``) or reported once ("skip"); nothing new means no edition.
- ``plan_for_send``: the week ending at ``as_of`` (`digest send`); a window the store recorded
  for that edition wins (a rerun, or an edition a run widened).
In both, the delivery engine's ledger keeps a post from any reader who already had it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from digest import editions, pipeline
from digest.check import Finding
from digest.config import Config
from digest.model import LoadResult, Post, Subscriber
from digest.plan import EditionPlan, make_plan
from digest.schedule import (
    DueEdition,
    EditionRecord,
    Window,
    backdated_posts,
    due_edition,
    parse_cron,
    sent_post_ids,
)
from digest.select import window_for
from digest.send.summary import SendSummary
from digest.store import Store

# deliver(config, store, plan, *, sender_name, dry_run) -> SendSummary: digest.send.delivery.deliver
Deliver = Callable[..., Any]


@dataclass
class RunOutcome:
    """What one `digest run` did, for the terminal, the scheduler's log and tests."""

    status: str  # sent | partly-sent | already-sent | cancelled | nothing-new | blocked | dry-run
    edition_id: str
    window: Window
    lines: list[str] = field(default_factory=list)
    findings: Sequence[Finding] = ()
    summary: SendSummary | None = None
    plan: EditionPlan | None = None

    @property
    def ok(self) -> bool:
        return self.status not in ("blocked", "partly-sent")


def sample_headers(config: Config) -> dict[str, str]:
    """The headers a reader's message will carry, for the check to inspect as they go out.

    Built by the same code as a real reader's, signed with a throwaway secret (the check reads
    their shape, and must not create or need the real one).
    """
    from digest.send.personalize import PersonalLinks

    sample = Subscriber(id=0, email="reader@example.org", status="active", categories=())
    recipient = PersonalLinks(config, secret="sample-for-the-check").recipient(sample)
    return {"From": config.sender.from_email, **recipient.headers}


def _fresh(loaded: LoadResult, leave_out: frozenset[str]) -> LoadResult:
    """The posts an edition may carry: none that went out before (or was deliberately skipped)."""
    if not leave_out:
        return loaded
    return LoadResult(tuple(p for p in loaded.posts if p.path not in leave_out), loaded.skipped)


def plan_for_send(
    config: Config,
    store: Store | None,
    as_of: datetime,
    *,
    edition_id: str | None = None,
    window: tuple[datetime, datetime] | None = None,
    posts: LoadResult | None = None,
) -> EditionPlan:
    """The edition `digest send` sends: the week ending at ``as_of`` (or the id and window given),
    where a window the store recorded for that edition wins (a rerun, or one a run widened).

    Every post in the window is a candidate: an explicit send leaves it to the per-reader ledger
    to keep a post from anyone who already had it (a reader who added a category still gets that
    category's posts), where the schedule's run leaves out whatever an earlier edition carried.
    """
    start, end = window or window_for(as_of, config.edition.window_days)
    eid = edition_id or pipeline.edition_id_for(end, config)
    records = editions.edition_records(store) if store is not None else []
    chosen = Window(start, end)
    for record in records:
        if record.id == eid:
            chosen = Window(record.window_start, record.window_end)
    loaded = posts if posts is not None else pipeline.load(config)
    return make_plan(
        config,
        edition_id=eid,
        window=chosen,
        posts=loaded,
        headers=sample_headers(config),
    )


def send(
    config: Config,
    store: Store,
    *,
    as_of: datetime | None = None,
    edition_id: str | None = None,
    window: tuple[datetime, datetime] | None = None,
    posts: LoadResult | None = None,
    **options: Any,
) -> SendSummary:
    """Plan the edition of ``as_of`` (default now) and deliver it: `digest send` as a function.

    ``options`` go to ``digest.send.delivery.deliver`` (sender, dry_run, send_at, ...).
    """
    from digest.send.delivery import deliver

    moment = as_of or datetime.now(UTC)
    plan = plan_for_send(config, store, moment, edition_id=edition_id, window=window, posts=posts)
    return deliver(config, store, plan, **options)


def send_test(
    config: Config,
    *,
    address: str,
    categories: Sequence[str] = (),
    as_of: datetime | None = None,
    store: Store | None = None,
    **options: Any,
) -> str:
    """One [TEST] copy of a category set's email of the edition of ``as_of``; nothing recorded."""
    from digest.send.delivery import send_test as send_one

    plan = plan_for_send(config, store, as_of or datetime.now(UTC))
    return send_one(config, plan, address=address, categories=categories, **options)


def due(config: Config, store: Store, now: datetime) -> tuple[DueEdition, list[EditionRecord]]:
    """The edition due at ``now`` by the schedule, and every edition the store knows."""
    records = editions.edition_records(store)
    found = due_edition(
        now=now,
        cron=parse_cron(config.schedule.cron),
        tz=config.schedule_tz,
        site_tz=config.tz,
        window_days=config.edition.window_days,
        records=records,
    )
    return found, records


def plan_due(
    config: Config, store: Store, found: DueEdition, records: Sequence[EditionRecord]
) -> EditionPlan:
    """The due edition, built once: its window widened for back-dated posts it includes."""
    tz = config.tz
    loaded = pipeline.load(config)
    already = sent_post_ids(r for r in records if r.id != found.id)
    lines: list[str] = []
    if found.state == "resume":
        lines.append(f"Edition {found.id} was started before and not finished; carrying on with it.")
    backdated = backdated_posts(
        [p for p in loaded.posts if p.published],  # a draft is not news, wherever it is dated
        last_sent_end=found.last_sent.window_end if found.last_sent else None,
        already_sent_ids=already,
        covered_since=editions.covered_since(records),
    )
    start = found.window.start
    skipped: list[str] = []
    included: list[Post] = []
    for post in backdated:
        if config.edition.backdated == "include":
            included.append(post)
            start = min(start, post.date.astimezone(tz), key=lambda d: d.astimezone(UTC))
        else:
            skipped.append(post.path)
    extra: dict[str, Any] = {editions.BACKDATED_SKIPPED: skipped} if skipped else {}
    plan = make_plan(
        config,
        edition_id=found.id,
        window=Window(start, found.window.end),
        scheduled=found.window,
        posts=_fresh(loaded, already | frozenset(skipped)),
        headers=sample_headers(config),
        manifest_extra=extra,
    )
    carried = {item.post_path for item in plan.edition.items}
    for post in backdated:
        when = post.date.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
        if post.path in skipped:
            lines.append(
                f"Back-dated post {post.path} ({when}) was never sent: skipped (edition.backdated = 'skip')."
            )
        elif post.path in carried:
            lines.append(f"Back-dated post {post.path} ({when}) was never sent: included in this edition.")
    return dataclasses.replace(plan, notes=tuple(lines))


def run_due(
    config: Config,
    *,
    now: datetime,
    store: Store,
    deliver: Deliver | None = None,
    sender_name: str | None = None,
    dry_run: bool = False,
) -> RunOutcome:
    """Work out the edition due at ``now``, build it once, check it, and send it (at most once)."""
    found, records = due(config, store, now)
    tz = config.tz
    if found.state == "sent":
        record = next(r for r in records if r.id == found.id)
        when = f" at {record.sent_at.astimezone(tz):%Y-%m-%d %H:%M %Z}" if record.sent_at else ""
        lines = [f"Edition {found.id} already went out{when}; nothing to do."]
        failed = _failed_deliveries(store, found.id)
        if failed:
            lines.append(f"{failed} reader(s) failed then: `digest status {found.id}` shows who and why.")
        return RunOutcome("already-sent", found.id, found.window, lines)
    if found.state == "cancelled":
        return RunOutcome(
            "cancelled",
            found.id,
            found.window,
            [f"Edition {found.id} was cancelled; nothing to do. Its posts go in the next edition."],
        )
    plan = plan_due(config, store, found, records)
    lines = list(plan.notes)
    if plan.post_count == 0:
        lines.append(
            f"No new posts since {found.window.start.astimezone(tz):%Y-%m-%d %H:%M %Z}; "
            f"no edition this time ({found.id} not sent)."
        )
        return RunOutcome("nothing-new", found.id, found.window, lines, plan=plan)
    if plan.blocked:
        if not dry_run:
            lines.append(f"Edition {found.id} not sent: the deliverability check found errors (see above).")
            return RunOutcome("blocked", found.id, found.window, lines, plan.findings, plan=plan)
        lines.append("The deliverability check found errors: a real run would stop here.")
    if deliver is None:
        from digest.send.delivery import deliver as deliver_plan

        deliver = deliver_plan
    summary = deliver(config, store, plan, sender_name=sender_name, dry_run=dry_run)
    lines.append(f"Edition {found.id} ({plan.post_count} post(s)){' dry run' if dry_run else ''}: {summary}")
    status = "dry-run" if dry_run else "sent" if getattr(summary, "ok", True) else "partly-sent"
    if status == "partly-sent":  # exit 1, so cron mail, systemd or CI shows it
        lines.append(f"Not every reader got it: `digest status {found.id}` shows who and why.")
    return RunOutcome(status, found.id, found.window, lines, plan.findings, summary, plan)


def _failed_deliveries(store: Store, edition_id: str) -> int:
    """How many readers the delivery engine recorded as failed for an edition."""
    from digest.send.status import edition_status

    return int(edition_status(store, edition_id).deliveries.get("failed", 0))


def schedule_state(config: Config, store: Store, now: datetime) -> tuple[datetime | None, str | None]:
    """Where the next window starts (the last sent window's end), and a line about the due edition.

    The line says "due now" only when `digest run` would send something: an edition with
    nothing new is not due, whatever the clock says.
    """
    found, records = due(config, store, now)
    went_out = [r for r in records if r.status == "sent"]
    last = max(went_out, key=lambda r: r.window_end.astimezone(UTC), default=None)
    last_end = last.window_end if last else None
    if not records:
        return last_end, None
    if found.state == "new":
        plan = plan_due(config, store, found, records)
        state = (
            "is due now; `digest run` sends it"
            if plan.post_count
            else "has nothing new to send yet; `digest run` sends nothing until a post is published"
        )
    else:
        state = {
            "sent": "already went out",
            "cancelled": "was cancelled",
            "resume": "was started and not finished; `digest run` carries on with it",
        }[found.state]
    if not records and found.state != "new":
        return last_end, None
    return (
        last_end,
        f"Latest scheduled edition {found.id} {state} (window {found.window.describe(config.tz)}).",
    )
