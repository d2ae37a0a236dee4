"""Window and schedule rules as pure functions with explicit times (digest.schedule)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from digest.errors import ConfigError
from digest.schedule import (
    EditionRecord,
    Window,
    backdated_posts,
    due_edition,
    due_window,
    edition_id_for,
    in_window,
    next_runs,
    parse_cron,
    plan,
    previous_run,
    run_id_for,
    sent_post_ids,
)

LONDON = ZoneInfo("Europe/London")
WEEKLY = "0 7 * * 1"  # Mondays 07:00


@dataclass(frozen=True)
class P:
    path: str
    date: datetime


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, tz=LONDON) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=tz)


def sent(eid: str, start: datetime, end: datetime, *posts: str) -> EditionRecord:
    return EditionRecord(eid, start, end, "sent", sent_at=end, post_ids=frozenset(posts))


# --- edition ids -----------------------------------------------------------------------------


def test_edition_id_is_the_iso_week_in_the_site_timezone() -> None:
    assert edition_id_for(at(2026, 1, 12, 7), LONDON) == "2026-W03"
    # Sunday 23:30 in New York is already Monday in London: the site's zone decides.
    ny = ZoneInfo("America/New_York")
    assert edition_id_for(at(2026, 1, 11, 23, 30, tz=ny), ny) == "2026-W02"
    assert edition_id_for(at(2026, 1, 11, 23, 30, tz=ny), LONDON) == "2026-W03"
    # ISO years: 1 January 2027 is in week 53 of 2026.
    assert edition_id_for(at(2027, 1, 1, 12), LONDON) == "2026-W53"


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        edition_id_for(datetime(2026, 1, 12, 7), LONDON)
    with pytest.raises(ValueError, match="timezone-aware"):
        due_window(now=datetime(2026, 1, 12), last_sent_end=None, window_days=7, tz=LONDON)


# --- windows ---------------------------------------------------------------------------------


def test_first_edition_covers_window_days() -> None:
    w = due_window(now=at(2026, 1, 12, 7), last_sent_end=None, window_days=7, tz=LONDON)
    assert (w.start, w.end) == (at(2026, 1, 5, 7), at(2026, 1, 12, 7))


def test_window_is_half_open_so_a_post_on_the_boundary_goes_out_once() -> None:
    boundary = at(2026, 1, 12, 7)
    first = Window(at(2026, 1, 5, 7), boundary)
    second = due_window(now=at(2026, 1, 19, 7), last_sent_end=first.end, window_days=7, tz=LONDON)
    on_boundary = P("edge.md", boundary)
    assert on_boundary not in in_window([on_boundary], first)
    assert in_window([on_boundary], second) == [on_boundary]


def test_late_run_starts_where_the_last_edition_ended_and_covers_up_to_now() -> None:
    last_end = at(2026, 1, 12, 7)
    late = at(2026, 1, 20, 15, 30)  # Tuesday afternoon instead of Monday 07:00
    w = due_window(now=late, last_sent_end=last_end, window_days=7, tz=LONDON)
    assert (w.start, w.end) == (last_end, late)
    posts = [P("a.md", at(2026, 1, 12, 6, 59)), P("b.md", at(2026, 1, 19, 9)), P("c.md", at(2026, 1, 20, 12))]
    assert [p.path for p in in_window(posts, w)] == ["b.md", "c.md"]


def test_skipped_week_is_covered_by_the_next_run() -> None:
    last_end = at(2026, 1, 5, 7)  # the 12 January run never happened
    w = due_window(now=at(2026, 1, 19, 7), last_sent_end=last_end, window_days=7, tz=LONDON)
    assert w.start == last_end and w.end - w.start == timedelta(days=14)
    posts = [P("wk2.md", at(2026, 1, 8)), P("wk3.md", at(2026, 1, 15))]
    assert in_window(posts, w) == posts


def test_double_run_finds_the_edition_already_sent() -> None:
    first = due_edition(now=at(2026, 1, 12, 7), cron=WEEKLY, tz=LONDON, window_days=7, records=())
    assert (first.id, first.state) == ("2026-W03", "new")
    record = sent(first.id, first.window.start, first.window.end, "a.md")
    again = due_edition(now=at(2026, 1, 12, 7, 5), cron=WEEKLY, tz=LONDON, window_days=7, records=[record])
    assert (again.id, again.state, again.window) == ("2026-W03", "sent", first.window)
    assert not again.needs_sending


def test_a_run_that_died_half_way_is_resumed_with_its_recorded_window() -> None:
    start, end = at(2026, 1, 5, 7), at(2026, 1, 12, 7)
    record = EditionRecord("2026-W03", start, end, "sending")
    due = due_edition(now=at(2026, 1, 12, 9), cron=WEEKLY, tz=LONDON, window_days=7, records=[record])
    assert due.state == "resume" and due.window == Window(start, end) and due.needs_sending


def test_a_late_run_is_still_the_scheduled_weeks_edition() -> None:
    last = sent("2026-W03", at(2026, 1, 5, 7), at(2026, 1, 12, 7))
    # Monday's 07:00 run happens on Sunday night instead: still 2026-W04, window to now.
    due = due_edition(now=at(2026, 1, 25, 23), cron=WEEKLY, tz=LONDON, window_days=7, records=[last])
    assert due.id == "2026-W04" and due.scheduled_for == at(2026, 1, 19, 7)
    assert due.window == Window(at(2026, 1, 12, 7), at(2026, 1, 25, 23))


def test_a_manual_run_before_the_slot_belongs_to_last_week() -> None:
    due = due_edition(now=at(2026, 1, 19, 6, 59), cron=WEEKLY, tz=LONDON, window_days=7, records=())
    assert due.id == "2026-W03"


def test_cancelled_edition_is_left_alone() -> None:
    record = EditionRecord("2026-W03", at(2026, 1, 5, 7), at(2026, 1, 12, 7), "cancelled")
    due = due_edition(now=at(2026, 1, 12, 8), cron=WEEKLY, tz=LONDON, window_days=7, records=[record])
    assert due.state == "cancelled" and not due.needs_sending


def test_clock_behind_the_last_edition_gives_an_empty_window() -> None:
    w = due_window(now=at(2026, 1, 10), last_sent_end=at(2026, 1, 12, 7), window_days=7, tz=LONDON)
    assert w.empty and w.start == w.end == at(2026, 1, 12, 7)


# --- back-dated posts ------------------------------------------------------------------------


def test_backdated_post_is_found_and_old_archive_is_not() -> None:
    first_start, last_end = at(2026, 1, 5, 7), at(2026, 1, 12, 7)
    posts = [
        P("archive.md", at(2025, 6, 1)),  # before the digest existed
        P("sent.md", at(2026, 1, 8)),  # went out in 2026-W03
        P("late.md", at(2026, 1, 9, 12)),  # dated into the sent window, published afterwards
        P("new.md", at(2026, 1, 14)),  # in the coming window: not back-dated
    ]
    found = backdated_posts(
        posts, last_sent_end=last_end, already_sent_ids={"sent.md"}, covered_since=first_start
    )
    assert [p.path for p in found] == ["late.md"]
    # Without a lower bound the archive counts too (a caller that knows no history).
    assert [p.path for p in backdated_posts(posts, last_sent_end=last_end, already_sent_ids={"sent.md"})] == [
        "archive.md",
        "late.md",
    ]


def test_no_backdated_posts_before_the_first_edition() -> None:
    assert backdated_posts([P("a.md", at(2020, 1, 1))], last_sent_end=None, already_sent_ids=()) == []


def test_sent_post_ids_count_only_editions_that_went_out() -> None:
    w = (at(2026, 1, 5), at(2026, 1, 12))
    records = [
        EditionRecord("a", *w, "sent", post_ids=frozenset({"1.md"})),
        EditionRecord("b", *w, "sending", post_ids=frozenset({"2.md"})),
        EditionRecord("c", *w, "cancelled", post_ids=frozenset({"3.md"})),
    ]
    assert sent_post_ids(records) == {"1.md"}


# --- time zones and daylight saving ----------------------------------------------------------


def test_post_dated_with_a_utc_offset_is_placed_by_its_instant() -> None:
    w = Window(at(2026, 1, 5, 7), at(2026, 1, 12, 7))
    # 01:30 on the 12th in New York is 06:30 in London: inside. 02:30 is 07:30: outside.
    ny = timezone(timedelta(hours=-5))
    inside, outside = P("in.md", at(2026, 1, 12, 1, 30, tz=ny)), P("out.md", at(2026, 1, 12, 2, 30, tz=ny))
    assert in_window([inside, outside], w) == [inside]
    # +05:30 (India) late on the 4th London time is still before the window.
    ist = timezone(timedelta(hours=5, minutes=30))
    assert in_window([P("x.md", at(2026, 1, 5, 12, 29, tz=ist))], w) == []
    assert in_window([P("y.md", at(2026, 1, 5, 12, 30, tz=ist))], w) != []


def test_first_window_across_spring_forward_is_seven_local_days() -> None:
    # Clocks go forward at 01:00 GMT on Sunday 29 March 2026.
    w = due_window(now=at(2026, 3, 30, 7), last_sent_end=None, window_days=7, tz=LONDON)
    assert w.start == at(2026, 3, 23, 7) and w.start.utcoffset() == timedelta(0)
    assert w.end.utcoffset() == timedelta(hours=1)
    assert w.end.astimezone(UTC) - w.start.astimezone(UTC) == timedelta(hours=167)


def test_first_window_across_fall_back_is_seven_local_days() -> None:
    # Clocks go back at 02:00 BST on Sunday 25 October 2026.
    w = due_window(now=at(2026, 10, 26, 7), last_sent_end=None, window_days=7, tz=LONDON)
    assert w.start == at(2026, 10, 19, 7)
    assert w.end.astimezone(UTC) - w.start.astimezone(UTC) == timedelta(hours=169)


def test_runs_at_the_dst_boundary_neither_drop_nor_repeat_a_post() -> None:
    # Weekly runs either side of the spring change, and a post in the hour that doesn't exist
    # locally (written with an explicit UTC time).
    runs = next_runs(WEEKLY, LONDON, at(2026, 3, 20), 3)
    assert runs == [at(2026, 3, 23, 7), at(2026, 3, 30, 7), at(2026, 4, 6, 7)]
    assert [r.astimezone(UTC).hour for r in runs] == [7, 6, 6]
    windows, last_end = [], at(2026, 3, 16, 7)
    for run in runs:
        w = due_window(now=run, last_sent_end=last_end, window_days=7, tz=LONDON)
        windows.append(w)
        last_end = w.end
    posts = [
        P("gap.md", datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),  # 02:30 BST
        P("edge.md", datetime(2026, 3, 30, 6, 0, tzinfo=UTC)),  # exactly the 07:00 BST run
        P("before.md", datetime(2026, 3, 30, 5, 59, 59, tzinfo=UTC)),
    ]
    placed = [[p.path for p in in_window(posts, w)] for w in windows]
    assert placed == [[], ["gap.md", "before.md"], ["edge.md"]]


def test_next_runs_across_both_dst_changes_stay_at_local_wall_time() -> None:
    runs = next_runs(WEEKLY, LONDON, at(2026, 10, 20), 2)
    assert runs == [at(2026, 10, 26, 7), at(2026, 11, 2, 7)]
    assert runs[0].utcoffset() == timedelta(0)


def test_a_time_inside_the_spring_gap_runs_once_shifted_forward() -> None:
    runs = next_runs("30 1 * * *", LONDON, at(2026, 3, 28, 2), 3)
    utc = [r.astimezone(UTC) for r in runs]
    assert utc == [
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # 01:30 GMT doesn't exist: 02:30 BST
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 31, 0, 30, tzinfo=UTC),
    ]


def utc(times: list[datetime]) -> list[datetime]:
    """Compare in UTC: Python compares times of one zone by wall clock, ignoring fold."""
    return [t.astimezone(UTC) for t in times]


def test_a_time_in_the_repeated_hour_runs_at_both_instants_and_shares_one_id() -> None:
    cron = parse_cron("30 1 * * 0")  # Sundays 01:30, weekly
    runs = next_runs(cron, LONDON, at(2026, 10, 24), 3)
    assert utc(runs) == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
        datetime(2026, 11, 1, 1, 30, tzinfo=UTC),
    ]
    assert [r.fold for r in runs[:2]] == [0, 1]
    assert run_id_for(runs[0], LONDON, cron) == run_id_for(runs[1], LONDON, cron) == "2026-W43"
    # Starting inside the repeated hour still finds the second 01:30.
    after = datetime(2026, 10, 25, 0, 45, tzinfo=UTC)
    assert utc(next_runs(cron, LONDON, after, 1)) == [datetime(2026, 10, 25, 1, 30, tzinfo=UTC)]


def test_previous_run_is_the_latest_at_or_before() -> None:
    assert previous_run(WEEKLY, LONDON, at(2026, 3, 30, 7)) == at(2026, 3, 30, 7)
    assert previous_run(WEEKLY, LONDON, at(2026, 3, 30, 6, 59)) == at(2026, 3, 23, 7)
    hourly = parse_cron("0 * * * *")
    after_fold = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 01:10 GMT, second pass of 01:xx
    found = previous_run(hourly, LONDON, after_fold)
    assert found is not None and found.astimezone(UTC) == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
    for run in next_runs(hourly, LONDON, at(2026, 10, 24, 22), 8):
        assert utc([previous_run(hourly, LONDON, run)]) == utc([run])


def test_next_runs_agree_with_previous_run_through_a_day_of_changes() -> None:
    cron = parse_cron("*/20 * * * *")
    runs = utc(next_runs(cron, LONDON, at(2026, 10, 24, 22), 30))
    assert all(b - a == timedelta(minutes=20) for a, b in pairwise(runs))
    for earlier, later in pairwise(runs):
        assert utc([previous_run(cron, LONDON, later - timedelta(microseconds=1))]) == [earlier]


# --- cron expressions ------------------------------------------------------------------------


def test_six_field_cron_has_seconds_first() -> None:
    cron = parse_cron("*/2 * * * * *")
    runs = next_runs(cron, UTC, datetime(2026, 1, 1, tzinfo=UTC), 3)
    assert [r.second for r in runs] == [2, 4, 6]
    assert not cron.at_most_weekly
    assert run_id_for(runs[0], UTC, cron) == "2026-01-01T000002"


@pytest.mark.parametrize(
    ("expr", "weekly"),
    [
        ("0 7 * * 1", True),
        ("0 7 * * 1,4", False),
        ("0 7 * * *", False),
        ("0 7 1 * *", True),
        ("0 7 1,3 * *", False),
    ],
)
def test_at_most_weekly(expr: str, weekly: bool) -> None:
    assert parse_cron(expr).at_most_weekly is weekly


def test_sunday_may_be_0_or_7_or_a_name() -> None:
    after = at(2026, 1, 1)
    assert next_runs("0 7 * * 0", LONDON, after, 1) == next_runs("0 7 * * 7", LONDON, after, 1)
    assert next_runs("0 7 * * sun", LONDON, after, 1) == [at(2026, 1, 4, 7)]


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("0 7 * *", "4 fields"),
        ("61 7 * * 1", "not a valid cron"),
        ("0 7 1 * 1", "both the day of the month and the day of the week"),
    ],
)
def test_bad_cron_names_the_key(expr: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        parse_cron(expr)
    assert "schedule.cron" in str(info.value)


def test_cron_that_never_fires() -> None:
    with pytest.raises(ConfigError, match="never runs"):
        next_runs("0 0 30 2 *", UTC, datetime(2026, 1, 1, tzinfo=UTC), 1)


def test_plan_chains_windows_from_the_last_edition() -> None:
    runs = plan(
        cron=WEEKLY, tz=LONDON, now=at(2026, 1, 14), count=3, last_sent_end=at(2026, 1, 12, 7), window_days=7
    )
    assert [r.edition_id for r in runs] == ["2026-W04", "2026-W05", "2026-W06"]
    assert runs[0].window == Window(at(2026, 1, 12, 7), at(2026, 1, 19, 7))
    assert all(a.window.end == b.window.start for a, b in pairwise(runs))
    first = plan(cron=WEEKLY, tz=LONDON, now=at(2026, 1, 14), count=1, last_sent_end=None, window_days=7)
    assert first[0].window == Window(at(2026, 1, 12, 7), at(2026, 1, 19, 7))


def test_due_edition_ignores_cancelled_and_unfinished_editions_for_the_window_start() -> None:
    records = [
        sent("2026-W02", at(2025, 12, 29, 7), at(2026, 1, 5, 7)),
        EditionRecord("2026-W03", at(2026, 1, 5, 7), at(2026, 1, 12, 7), "cancelled"),
    ]
    due = due_edition(now=at(2026, 1, 19, 7), cron=WEEKLY, tz=LONDON, window_days=7, records=records)
    # W03 was cancelled, so its posts are still to go: W04 starts where W02 ended.
    assert due.id == "2026-W04" and due.window.start == at(2026, 1, 5, 7)
    assert due.last_sent is not None and due.last_sent.id == "2026-W02"


def test_schedule_zone_sets_the_clock_and_site_zone_names_the_edition() -> None:
    # Sunday 23:00 in New York is Monday 04:00 in London: the edition is London's ISO week.
    ny = ZoneInfo("America/New_York")
    due = due_edition(
        now=at(2026, 1, 12, 4, 30), cron="0 23 * * 0", tz=ny, site_tz=LONDON, window_days=7, records=()
    )
    assert due.scheduled_for is not None and due.scheduled_for.astimezone(LONDON) == at(2026, 1, 12, 4)
    assert due.id == "2026-W03"
    assert due.window.end.tzinfo is LONDON
