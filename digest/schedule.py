"""When an edition is due and which posts it covers: pure functions over times passed in.

Nothing here reads the clock, the disk or the database, so every rule can be tested with
explicit times (a late run, a skipped week, a double run, a daylight-saving change). The
store-facing helpers that feed these functions live in ``digest.editions``.

The rules, in one place:

- A window is half-open, ``[start, end)``: a post dated exactly at ``end`` belongs to the next
  edition, so consecutive windows neither overlap nor leave a gap.
- An edition's window starts where the last edition that went out ended (not "7 days ago"),
  and ends at the time of the run. A late run covers more, a skipped week is picked up by the
  next run, and a repeated run finds its edition already sent.
- The first edition covers ``window_days`` calendar days in the site's timezone (so a window
  across a daylight-saving change is 167 or 169 hours, from 07:00 to 07:00 local time).
- Cron expressions are read as wall-clock times in the schedule's timezone, as cron does. A time
  that does not exist (the spring-forward hour) runs once, shifted forward by the gap; a time
  that happens twice (the fall-back hour) runs at both instants; the second run finds its
  edition already sent. ``digest scheduler`` fires from ``next_runs`` too (as an APScheduler
  trigger), so ``digest schedule`` prints exactly what it will do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import pairwise
from typing import Literal, Protocol, TypeVar

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from digest.errors import ConfigError


class _Dated(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def date(self) -> datetime: ...


P = TypeVar("P", bound=_Dated)


def _aware(value: datetime, name: str) -> datetime:
    """Naive datetimes are ambiguous across timezones; refuse them rather than guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got {value.isoformat()})")
    return value


def _utc(value: datetime, name: str = "time") -> datetime:
    """Compare and subtract in UTC only.

    Python compares two datetimes of the same zone by wall clock, ignoring ``fold`` (PEP 495), so
    01:30 BST and 01:30 GMT on the night the clocks go back would compare equal.
    """
    return _aware(value, name).astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The span of post dates one edition covers: ``start <= post.date < end``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _aware(self.start, "window start")
        _aware(self.end, "window end")
        if _utc(self.end) < _utc(self.start):
            raise ValueError(f"window ends ({self.end}) before it starts ({self.start})")

    def __iter__(self) -> Iterator[datetime]:
        """``start, end = window``: pipeline.build_edition takes the window as a pair."""
        return iter((self.start, self.end))

    def __contains__(self, when: object) -> bool:
        if not isinstance(when, datetime):
            return False
        return _utc(self.start) <= _utc(when, "post date") < _utc(self.end)

    @property
    def empty(self) -> bool:
        return _utc(self.end) <= _utc(self.start)

    def astimezone(self, tz: tzinfo) -> Window:
        return Window(self.start.astimezone(tz), self.end.astimezone(tz))

    def describe(self, tz: tzinfo) -> str:
        """``Mon 05 Jan 07:00 → Mon 12 Jan 07:00 GMT``, for people reading a terminal."""
        start, end = self.start.astimezone(tz), self.end.astimezone(tz)
        fmt = "%a %d %b %H:%M" if start.year == end.year else "%a %d %b %Y %H:%M"
        start_zone = f" {start.tzname()}" if start.tzname() != end.tzname() else ""
        return f"{start.strftime(fmt)}{start_zone} → {end.strftime(fmt)} {end.tzname()}"


def due_window(*, now: datetime, last_sent_end: datetime | None, window_days: int, tz: tzinfo) -> Window:
    """The window for an edition built at ``now``.

    It starts at the end of the last edition that went out, so nothing is dropped or repeated
    however late, early or often runs happen; only the first edition falls back to
    ``window_days`` calendar days in the site timezone. If the last edition ended after ``now``
    (a run with an earlier ``--as-of``), the window is empty rather than reaching backwards.
    """
    local_now = _aware(now, "now").astimezone(tz)
    if last_sent_end is None:
        if window_days <= 0:
            raise ValueError(f"window_days must be positive (got {window_days})")
        # Aware arithmetic on one zone is wall-clock arithmetic: 07:00 minus 7 days is 07:00.
        start = (local_now - timedelta(days=window_days)).astimezone(UTC).astimezone(tz)
        return Window(start, local_now)
    start = _aware(last_sent_end, "last_sent_end").astimezone(tz)
    return Window(start, local_now if _utc(local_now) > _utc(start) else start)


def in_window(posts: Iterable[P], window: Window) -> list[P]:
    """The posts whose date falls in the window, in the order given."""
    return [p for p in posts if p.date in window]


@dataclass(frozen=True)
class Backdated:
    """Posts dated into a window that already went out, found after it went out."""

    posts: tuple[_Dated, ...]
    action: Literal["include", "skip"]

    def describe(self, tz: tzinfo) -> list[str]:
        verb = "included in this edition" if self.action == "include" else "skipped (edition.backdated)"
        return [
            f"{p.path}: dated {p.date.astimezone(tz):%Y-%m-%d %H:%M %Z}, before the last edition "
            f"that went out; {verb}"
            for p in self.posts
        ]


def backdated_posts(
    posts: Iterable[P],
    *,
    last_sent_end: datetime | None,
    already_sent_ids: Iterable[str],
    covered_since: datetime | None = None,
) -> list[P]:
    """Posts dated before the current window that no edition ever carried.

    These are posts published (or switched to ``published: true``) after the edition covering
    their date went out. ``covered_since`` is the start of the first edition's window: posts
    older than that are the archive from before the digest existed, not back-dated news.
    Sorted oldest first; ``config.edition.backdated`` decides whether they join the next
    edition ("include") or are only reported ("skip").
    """
    if last_sent_end is None:
        return []
    end = _utc(last_sent_end, "last_sent_end")
    since = _utc(covered_since, "covered_since") if covered_since is not None else None
    sent = set(already_sent_ids)
    found = [
        p
        for p in posts
        if _utc(p.date, f"{p.path} date") < end
        and (since is None or _utc(p.date) >= since)
        and p.path not in sent
    ]
    return sorted(found, key=lambda p: (_utc(p.date), p.path))


# ---------------------------------------------------------------------------------------------
# Cron expressions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cron:
    """A validated cron expression: five fields, or six with seconds first (for short tests)."""

    expr: str
    second: str
    minute: str
    hour: str
    day: str
    month: str
    day_of_week: str
    has_seconds: bool
    expanded: tuple[tuple[int | str, ...], ...]  # croniter's expansion: min, hour, dom, mon, dow[, sec]

    @property
    def at_most_weekly(self) -> bool:
        """True when no two runs can fall in one ISO week, so the ISO week can name the edition."""
        minute, hour, dom, _month, dow = self.expanded[:5]
        second = self.expanded[5] if self.has_seconds else (0,)
        if len(second) != 1 or len(minute) != 1 or len(hour) != 1 or "*" in (*second, *minute, *hour):
            return False
        if dom == ("*",):
            return dow != ("*",) and len(dow) == 1
        if dow != ("*",):
            return False
        days = sorted(int(d) for d in dom if d != "L")
        if len(days) != len(dom):
            return False
        gaps = [b - a for a, b in pairwise(days)] + [28 - days[-1] + days[0]]
        return min(gaps) >= 7


def parse_cron(expr: str, *, key: str = "schedule.cron") -> Cron:
    """Validate a cron expression, with a message that names the config key and the fix."""
    fields = expr.split()
    hint = (
        "use five fields, minute hour day-of-month month day-of-week, e.g. '0 7 * * 1' for "
        "Mondays at 07:00 (or six, with seconds first, for testing)"
    )
    if len(fields) not in (5, 6):
        raise ConfigError(f"{key} is {expr!r}, which has {len(fields)} fields; {hint}.")
    has_seconds = len(fields) == 6
    try:
        expanded, _ = croniter.expand(" ".join(fields), second_at_beginning=has_seconds)
    except (CroniterBadCronError, CroniterError, ValueError) as exc:
        raise ConfigError(
            f"{key} is {expr!r}, which is not a valid cron expression ({exc}); {hint}."
        ) from None
    values = tuple(tuple(v) for v in expanded)
    if values[2] != ("*",) and values[4] != ("*",):
        raise ConfigError(
            f"{key} is {expr!r}, which restricts both the day of the month and the day of the "
            "week; cron runs on either, which is rarely what is meant. Keep one and use '*' for the other."
        )
    second, rest = (fields[0], fields[1:]) if has_seconds else ("0", fields)
    minute, hour, day, month, day_of_week = rest
    return Cron(
        " ".join(fields),
        second,
        minute,
        hour,
        day,
        month,
        day_of_week,
        has_seconds=has_seconds,
        expanded=values,
    )


def _instants(wall: datetime, tz: tzinfo) -> list[datetime]:
    """The instants (in UTC) at which the wall-clock time ``wall`` happens in ``tz``: one or two."""
    first, second = wall.replace(tzinfo=tz, fold=0), wall.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
        return [first.astimezone(UTC)]  # in the spring-forward gap: once, shifted forward by the gap
    return [first.astimezone(UTC), second.astimezone(UTC)]  # in the fall-back hour: both instants


def _ambiguity(moment: datetime, tz: tzinfo) -> timedelta:
    """How far the wall clock repeats around ``moment`` (zero outside a fall-back hour)."""
    local = moment.astimezone(tz)
    other = local.replace(fold=1 - local.fold)
    return abs((other.utcoffset() or timedelta()) - (local.utcoffset() or timedelta()))


def _croniter(cron: Cron, start: datetime, *, backwards: bool = False) -> croniter:
    return croniter(cron.expr, start, second_at_beginning=cron.has_seconds, is_prev=backwards)


def next_runs(cron: str | Cron, tz: tzinfo, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` run times strictly after ``after``, as aware datetimes in ``tz``."""
    spec = cron if isinstance(cron, Cron) else parse_cron(cron)
    after = _utc(after, "after")
    if count <= 0:
        return []
    # Start early enough to see the second pass of a fall-back hour that ``after`` sits in.
    wall = after.astimezone(tz).replace(tzinfo=None, fold=0) - _ambiguity(after, tz)
    it = _croniter(spec, wall - timedelta(seconds=1))
    found: set[datetime] = set()
    try:
        while True:
            instants = _instants(it.get_next(datetime), tz)
            if len(found) >= count and len(instants) == 1 and instants[0] > max(found):
                break
            found.update(i for i in instants if i > after)
    except CroniterBadDateError:
        if not found:
            raise ConfigError(f"schedule.cron {spec.expr!r} never runs; check the day and month.") from None
    return [moment.astimezone(tz) for moment in sorted(found)[:count]]


def previous_run(cron: str | Cron, tz: tzinfo, at: datetime) -> datetime | None:
    """The latest run time at or before ``at`` (None if the expression never ran)."""
    spec = cron if isinstance(cron, Cron) else parse_cron(cron)
    at = _utc(at, "at")
    wall = at.astimezone(tz).replace(tzinfo=None, fold=0) + _ambiguity(at, tz)
    it = _croniter(spec, wall + timedelta(seconds=1), backwards=True)
    best: datetime | None = None
    try:
        while True:
            instants = _instants(it.get_prev(datetime), tz)
            if best is not None and len(instants) == 1 and instants[0] < best:
                break
            for i in instants:
                if i <= at and (best is None or i > best):
                    best = i
    except CroniterBadDateError:
        pass
    return best.astimezone(tz) if best is not None else None


# ---------------------------------------------------------------------------------------------
# Editions: ids and what is due
# ---------------------------------------------------------------------------------------------


def edition_id_for(as_of: datetime, tz: tzinfo) -> str:
    """The weekly edition's stable id: the ISO week of ``as_of`` in the site timezone, '2026-W02'."""
    year, week, _ = _aware(as_of, "as_of").astimezone(tz).isocalendar()
    return f"{year}-W{week:02d}"


def run_id_for(scheduled: datetime, tz: tzinfo, cron: Cron) -> str:
    """An edition id for a scheduled run: the ISO week, unless the schedule fires more often.

    A daily (or per-second, in tests) schedule would give two runs one id, and the second would
    be skipped as already sent; those get the local date and time instead ('2026-01-05T0700').
    """
    if cron.at_most_weekly:
        return edition_id_for(scheduled, tz)
    local = _aware(scheduled, "scheduled").astimezone(tz)
    return local.strftime("%Y-%m-%dT%H%M%S" if cron.has_seconds else "%Y-%m-%dT%H%M")


@dataclass(frozen=True)
class EditionRecord:
    """What the store knows about one edition, as plain data for the functions here."""

    id: str
    window_start: datetime
    window_end: datetime
    status: str  # building | sending | sent | cancelled
    sent_at: datetime | None = None
    post_ids: frozenset[str] = frozenset()

    @property
    def window(self) -> Window:
        return Window(self.window_start, self.window_end)


DueState = Literal["new", "resume", "sent", "cancelled"]


@dataclass(frozen=True)
class DueEdition:
    """The edition a run at ``now`` should deal with, and whether it still needs sending.

    ``state``: "new" (build and send), "resume" (an earlier run started it: finish it with the
    window it recorded), "sent" (nothing to do), "cancelled" (someone cancelled it; leave it).
    """

    id: str
    window: Window
    scheduled_for: datetime | None
    state: DueState
    last_sent: EditionRecord | None = None

    @property
    def needs_sending(self) -> bool:
        return self.state in ("new", "resume")


def due_edition(
    *,
    now: datetime,
    cron: str | Cron,
    tz: tzinfo,
    window_days: int,
    records: Iterable[EditionRecord] = (),
    site_tz: tzinfo | None = None,
) -> DueEdition:
    """Which edition is due at ``now``, its window, and whether it still needs sending.

    The edition is named after the latest scheduled time at or before ``now`` (a run late on
    Tuesday is still Monday's edition; a manual run before Monday's slot is last week's, which
    has normally gone out). ``records`` are the editions the store knows; the window starts at
    the end of the latest one that went out. ``tz`` is the schedule's zone (the cron's wall
    clock); ids and windows use ``site_tz`` (default: the same).
    """
    spec = cron if isinstance(cron, Cron) else parse_cron(cron)
    site = site_tz or tz
    scheduled = previous_run(spec, tz, now)
    edition_id = run_id_for(scheduled, site, spec) if scheduled else edition_id_for(now, site)
    known = list(records)
    existing = next((r for r in known if r.id == edition_id), None)
    went_out = [r for r in known if r.status == "sent" and r.id != edition_id]
    last_sent = max(went_out, key=lambda r: (_utc(r.window_end), r.id), default=None)
    if existing is not None and existing.status in ("sent", "cancelled"):
        state: DueState = "sent" if existing.status == "sent" else "cancelled"
        return DueEdition(edition_id, existing.window, scheduled, state, last_sent)
    if existing is not None:  # building or sending: finish it exactly as it was started
        return DueEdition(edition_id, existing.window, scheduled, "resume", last_sent)
    window = due_window(
        now=now,
        last_sent_end=last_sent.window_end if last_sent else None,
        window_days=window_days,
        tz=site,
    )
    return DueEdition(edition_id, window, scheduled, "new", last_sent)


@dataclass(frozen=True)
class PlannedRun:
    """One future run as ``digest schedule`` prints it."""

    at: datetime
    edition_id: str
    window: Window


def plan(
    *,
    cron: str | Cron,
    tz: tzinfo,
    now: datetime,
    count: int,
    last_sent_end: datetime | None,
    window_days: int,
) -> list[PlannedRun]:
    """The next ``count`` runs and the window each covers, if every run happens on time."""
    spec = cron if isinstance(cron, Cron) else parse_cron(cron)
    runs: list[PlannedRun] = []
    previous_end = last_sent_end
    for at in next_runs(spec, tz, now, count):
        window = due_window(now=at, last_sent_end=previous_end, window_days=window_days, tz=tz)
        runs.append(PlannedRun(at, run_id_for(at, tz, spec), window))
        previous_end = window.end
    return runs


def sent_post_ids(records: Iterable[EditionRecord]) -> frozenset[str]:
    """Every post id an edition that went out carried: never put in an edition again.

    Only "sent" editions count. A part-sent edition that was never finished starts no window
    either, so its posts come round in the next edition, and the delivery engine's per-reader
    ledger keeps them from anyone who already got them.
    """
    return frozenset(pid for r in records if r.status == "sent" for pid in r.post_ids)
