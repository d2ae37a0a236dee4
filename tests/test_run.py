"""`digest run` logic (digest.weekly.run_due) on a real SQLite store, with a stand-in for the
delivery engine; and the `digest schedule` / `digest check` / `digest run` command lines."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from digest import editions
from digest.cli import cli
from digest.config import Config, load_config
from digest.store import open_store
from digest.weekly import run_due

LONDON = ZoneInfo("Europe/London")
ADDRESS = "The Brief, 1 Example Street, London N1 1AA"
CONFIG = f"""\
[site]
name = "The Brief"
base_url = "https://brief.example.com"
timezone = "Europe/London"
postal_address = "{ADDRESS}"
[posts]
folder = "posts"
cache = ""
[edition]
backdated = "{{backdated}}"
[sender]
backend = "outbox"
from_email = "brief@example.com"
sending_domain = "example.com"
[database]
url = "sqlite:///digest.db"
[schedule]
cron = "0 7 * * 1"
timezone = "Europe/London"
[[categories]]
name = "News"
[[categories]]
name = "Tech"
"""


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LONDON)


class Site:
    def __init__(self, root: Path, backdated: str = "include") -> None:
        self.root = root
        (root / "posts").mkdir(parents=True)
        (root / "config.toml").write_text(CONFIG.replace("{backdated}", backdated), encoding="utf-8")

    def post(self, name: str, date: str, category: str = "News") -> None:
        (self.root / "posts" / f"{name}.md").write_text(
            f'---\ntitle: "{name.title()}"\ncategories: [{category}]\ndate: {date}\n---\n\n'
            f"{name.title()} happened, and this is the lead paragraph about it.\n",
            encoding="utf-8",
        )

    @property
    def config(self) -> Config:
        return load_config(self.root / "config.toml")


class FakeDelivery:
    """Stands in for digest.send.delivery: records the call and marks the edition sent."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, config: Config, store: Any, plan: Any, **kwargs: Any) -> str:
        self.calls.append({"plan": plan, **kwargs})
        if not kwargs["dry_run"]:
            editions.record_edition(store, edition_id=plan.id, window=plan.scheduled, manifest=plan.manifest)
            editions.set_status(store, plan.id, "sent", sent_at=plan.scheduled.end)
        return "3 sent."

    def posts(self, n: int = -1) -> list[str]:
        return [item.post_path for item in self.calls[n]["plan"].edition.items]


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path / "site")


def run(site: Site, now: datetime, deliver: FakeDelivery, **kw: Any):
    store = open_store(site.config)
    try:
        return run_due(site.config, now=now, store=store, deliver=deliver, **kw)
    finally:
        store.dispose()


def records(site: Site) -> list[editions.EditionRecord]:
    store = open_store(site.config)
    try:
        return editions.edition_records(store)
    finally:
        store.dispose()


def test_run_twice_sends_once(site: Site) -> None:
    site.post("harbour", "2026-01-08 09:00")
    deliver = FakeDelivery()
    first = run(site, at(2026, 1, 12, 7), deliver)
    assert first.status == "sent" and first.edition_id == "2026-W03"
    assert deliver.posts() == ["harbour.md"]
    again = run(site, at(2026, 1, 12, 7, 5), deliver)
    assert again.status == "already-sent" and len(deliver.calls) == 1
    assert "already went out" in again.lines[0]
    [record] = records(site)
    assert record.status == "sent" and record.post_ids == {"harbour.md"}


def test_nothing_new_sends_nothing_and_records_nothing(site: Site) -> None:
    site.post("old", "2025-06-01 09:00")
    deliver = FakeDelivery()
    outcome = run(site, at(2026, 1, 12, 7), deliver)
    assert outcome.status == "nothing-new" and deliver.calls == []
    assert "No new posts since 2026-01-05 07:00 GMT" in outcome.lines[-1]
    assert records(site) == []


def test_skipped_week_and_late_run_pick_up_every_post_once(site: Site) -> None:
    deliver = FakeDelivery()
    site.post("one", "2026-01-08 09:00")
    run(site, at(2026, 1, 12, 7), deliver)
    site.post("two", "2026-01-14 09:00")  # the 19 January run never happens
    site.post("three", "2026-01-21 09:00")
    site.post("future", "2026-01-28 09:00")  # dated after the late run: next time
    late = run(site, at(2026, 1, 27, 18), deliver)  # Tuesday evening, a week late
    assert late.edition_id == "2026-W05"
    assert sorted(deliver.posts()) == ["three.md", "two.md"]
    nxt = run(site, at(2026, 2, 2, 7), deliver)
    assert nxt.status == "sent" and deliver.posts() == ["future.md"]


def test_backdated_post_is_included_next_time(site: Site) -> None:
    deliver = FakeDelivery()
    site.post("one", "2026-01-08 09:00")
    run(site, at(2026, 1, 12, 7), deliver)
    site.post("late", "2026-01-09 12:00")  # published after W03 went out, dated into its window
    site.post("new", "2026-01-14 09:00")
    outcome = run(site, at(2026, 1, 19, 7), deliver)
    assert sorted(deliver.posts()) == ["late.md", "new.md"]
    assert any("Back-dated post late.md" in line and "included" in line for line in outcome.lines)
    # The recorded window is still the scheduled one; the next starts where it ended.
    w04 = next(r for r in records(site) if r.id == "2026-W04")
    assert w04.window_start == at(2026, 1, 12, 7)


def test_backdated_post_is_reported_once_when_skipping(tmp_path: Path) -> None:
    site = Site(tmp_path / "site", backdated="skip")
    deliver = FakeDelivery()
    site.post("one", "2026-01-08 09:00")
    run(site, at(2026, 1, 12, 7), deliver)
    site.post("late", "2026-01-09 12:00")
    site.post("new", "2026-01-14 09:00")
    outcome = run(site, at(2026, 1, 19, 7), deliver)
    assert deliver.posts() == ["new.md"]
    assert any("late.md" in line and "skipped" in line for line in outcome.lines)
    site.post("newer", "2026-01-21 09:00")
    later = run(site, at(2026, 1, 26, 7), deliver)
    assert deliver.posts() == ["newer.md"]
    assert not any("late.md" in line for line in later.lines)


def test_a_post_that_went_out_is_not_sent_again_after_its_date_changes(site: Site) -> None:
    deliver = FakeDelivery()
    site.post("one", "2026-01-08 09:00")
    run(site, at(2026, 1, 12, 7), deliver)
    site.post("one", "2026-01-15 09:00")  # the author re-dated it into the next window
    site.post("two", "2026-01-16 09:00")
    run(site, at(2026, 1, 19, 7), deliver)
    assert deliver.posts() == ["two.md"]


def test_half_sent_edition_is_resumed_with_its_window(site: Site) -> None:
    site.post("one", "2026-01-08 09:00")
    deliver = FakeDelivery()
    store = open_store(site.config)
    try:
        from digest.schedule import Window

        editions.record_edition(
            store,
            edition_id="2026-W03",
            window=Window(at(2026, 1, 5, 7), at(2026, 1, 12, 7)),
            status="sending",
        )
    finally:
        store.dispose()
    outcome = run(site, at(2026, 1, 12, 9), deliver)
    assert outcome.status == "sent" and "carrying on" in outcome.lines[0]
    assert deliver.calls[0]["plan"].scheduled.end == at(2026, 1, 12, 7)


def test_check_errors_stop_a_real_run_but_not_a_dry_run(site: Site) -> None:
    text = (
        (site.root / "config.toml")
        .read_text()
        .replace('sending_domain = "example.com"', 'sending_domain = "other.org"')
    )
    (site.root / "config.toml").write_text(text)
    site.post("one", "2026-01-08 09:00")
    deliver = FakeDelivery()
    blocked = run(site, at(2026, 1, 12, 7), deliver)
    assert blocked.status == "blocked" and not blocked.ok and deliver.calls == []
    assert any(f.code == "from-domain" and f.level == "error" for f in blocked.findings)
    assert records(site) == []
    dry = run(site, at(2026, 1, 12, 7), deliver, dry_run=True)
    assert dry.status == "dry-run" and deliver.calls[0]["dry_run"] is True
    assert records(site) == []


def test_manifest_is_recorded(site: Site) -> None:
    site.post("one", "2026-01-08 09:00")
    run(site, at(2026, 1, 12, 7), FakeDelivery())
    store = open_store(site.config)
    try:
        from sqlalchemy import select

        from digest.store import editions as table

        with store.session() as s:
            manifest = json.loads(s.execute(select(table.c.manifest)).scalar_one())
    finally:
        store.dispose()
    assert manifest["edition"] == "2026-W03" and manifest["post_count"] == 1


# --- command lines ---------------------------------------------------------------------------


def invoke(site: Site, *args: str):
    return CliRunner().invoke(
        cli, ["--config", str(site.root / "config.toml"), *args], catch_exceptions=False
    )


def test_schedule_command_prints_runs_and_windows(site: Site) -> None:
    result = invoke(site, "schedule", "--count", "3", "--as-of", "2026-03-20")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Schedule '0 7 * * 1' in Europe/London" in out
    for line in ("Mon 23 Mar 2026 07:00 GMT", "Mon 30 Mar 2026 07:00 BST", "Mon 06 Apr 2026 07:00 BST"):
        assert line in out
    assert "2026-W13" in out and "2026-W15" in out
    assert "No edition has gone out yet" in out


def test_schedule_command_starts_from_the_last_edition(site: Site) -> None:
    site.post("one", "2026-01-08 09:00")
    run(site, at(2026, 1, 12, 7), FakeDelivery())
    result = invoke(site, "schedule", "--count", "1", "--as-of", "2026-01-13")
    assert result.exit_code == 0, result.output
    assert "Latest scheduled edition 2026-W03 already went out" in result.output
    assert "Mon 12 Jan 07:00 → Mon 19 Jan 07:00 GMT" in result.output


def test_check_command_exits_1_on_errors(site: Site) -> None:
    site.post("one", "2026-01-08 09:00")
    ok = invoke(site, "check", "--as-of", "2026-01-12T07:00")
    assert ok.exit_code == 0, ok.output
    assert "✓ postal-address" in ok.output and "No errors" in ok.output
    text = (
        (site.root / "config.toml")
        .read_text()
        .replace(f'postal_address = "{ADDRESS}"', 'postal_address = ""')
    )
    (site.root / "config.toml").write_text(text)
    bad = invoke(site, "check", "--as-of", "2026-01-12T07:00")
    assert bad.exit_code == 1
    assert "✗ postal-address" in bad.output and "fix: Set site.postal_address" in bad.output


def test_run_command_with_nothing_new(site: Site) -> None:
    result = invoke(site, "run", "--as-of", "2026-01-12T07:00")
    assert result.exit_code == 0, result.output
    assert (
        "No new posts since 2026-01-05 07:00 GMT; no edition this time (2026-W03 not sent)." in result.output
    )


# --- CLI footguns (issue 15) ----------------------------------------------------------------


def main_output(site: Site, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run `digest ...` as the entry point does (DigestError -> message, exit 1)."""
    from digest.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["--config", str(site.root / "config.toml"), *args])
    captured = capsys.readouterr()
    return int(stopped.value.code or 0), captured.out + captured.err


def test_send_test_refuses_what_is_not_an_address(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.post("one", "2026-01-08 09:00")
    code, out = main_output(site, capsys, "send", "--test", "not-an-email", "--as-of", "2026-01-12T07:00")
    assert code == 1 and "not-an-email" in out
    assert not (site.root / "build" / "outbox").exists()


def test_an_unknown_category_is_named_with_the_known_ones(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.post("one", "2026-01-08 09:00")
    for args in (
        ("check", "--as-of", "2026-01-12T07:00", "--categories", "News,Sprots"),
        ("send", "--test", "me@example.org", "--as-of", "2026-01-12T07:00", "--category", "Sprots"),
    ):
        code, out = main_output(site, capsys, *args)
        assert code == 1
        assert "unknown category 'Sprots'" in out and "News, Tech" in out, out
        assert "published" not in out


def test_categories_take_commas_or_repeated_options(site: Site) -> None:
    site.post("one", "2026-01-08 09:00", category="News")
    site.post("two", "2026-01-08 10:00", category="Tech")
    commas = invoke(site, "check", "--as-of", "2026-01-12T07:00", "--categories", "news,TECH")
    repeated = invoke(
        site, "check", "--as-of", "2026-01-12T07:00", "--category", "News", "--category", "Tech"
    )
    assert commas.exit_code == 0 and repeated.exit_code == 0
    assert "for News, Tech: 2 post(s)" in commas.output and "for News, Tech: 2 post(s)" in repeated.output


def test_check_reads_another_posts_folder(site: Site, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "x.md").write_text(
        '---\ntitle: "Elsewhere"\ncategories: [News]\ndate: 2026-01-08 09:00\n---\n\nA lead paragraph here.\n',
        encoding="utf-8",
    )
    result = invoke(site, "check", "--as-of", "2026-01-12T07:00", "--posts", str(other))
    assert result.exit_code == 0, result.output
    assert ": 1 post(s)" in result.output


def test_status_and_cancel_default_to_the_latest_edition(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = main_output(site, capsys, "status")  # looking creates no database (issue 12)
    assert code == 1 and "there is no database at" in out
    assert not any(site.root.glob("**/digest.db"))
    site.post("one", "2026-01-08 09:00")
    run(site, at(2026, 1, 12, 7), FakeDelivery())
    site.post("two", "2026-01-14 09:00")
    run(site, at(2026, 1, 19, 7), FakeDelivery())
    code, out = main_output(site, capsys, "status")
    assert code == 0 and "Edition 2026-W04" in out
    code, out = main_output(site, capsys, "cancel")
    assert code == 1 and "2026-W04 was not scheduled with --send-at" in out


def test_schedule_does_not_call_an_empty_edition_due(site: Site) -> None:
    site.post("one", "2026-01-08 09:00")
    run(site, at(2026, 1, 12, 7), FakeDelivery())
    nothing = run(site, at(2026, 1, 19, 7, 5), FakeDelivery())
    assert nothing.status == "nothing-new"
    result = invoke(site, "schedule", "--count", "1", "--as-of", "2026-01-19T08:00")
    assert result.exit_code == 0, result.output
    assert "due now" not in result.output
    assert "Latest scheduled edition 2026-W04 has nothing new to send yet" in result.output
    site.post("two", "2026-01-15 09:00")
    later = invoke(site, "schedule", "--count", "1", "--as-of", "2026-01-19T08:00")
    assert "2026-W04 is due now" in later.output


def test_a_backdated_draft_is_not_said_to_be_included(site: Site) -> None:
    deliver = FakeDelivery()
    site.post("one", "2026-01-08 09:00")
    run(site, at(2026, 1, 12, 7), deliver)
    (site.root / "posts" / "draft.md").write_text(
        '---\ntitle: "Draft"\ncategories: [News]\ndate: 2026-01-09 12:00\npublished: false\n---\n\nNot yet.\n',
        encoding="utf-8",
    )
    site.post("new", "2026-01-14 09:00")
    outcome = run(site, at(2026, 1, 19, 7), deliver)
    assert deliver.posts() == ["new.md"]
    assert not any("draft.md" in line for line in outcome.lines)


def test_the_check_and_the_send_read_one_plan(site: Site) -> None:
    """A back-dated post widens the run's window: the plan the check saw is what is sent."""
    deliver = FakeDelivery()
    site.post("one", "2026-01-08 09:00")
    run(site, at(2026, 1, 12, 7), deliver)
    site.post("late", "2026-01-09 12:00")
    site.post("new", "2026-01-14 09:00")
    outcome = run(site, at(2026, 1, 19, 7), deliver)
    plan = deliver.calls[-1]["plan"]
    assert outcome.plan is plan
    assert plan.window.start == at(2026, 1, 9, 12) and plan.scheduled.start == at(2026, 1, 12, 7)
    carried = {p["path"] for s in plan.manifest["sections"] for p in s["posts"]}
    assert carried == {item.post_path for item in plan.edition.items} == {"late.md", "new.md"}
    assert {item.post_path for item in plan.edition_for(["News"]).items} == carried


def test_a_test_send_with_nothing_new_names_categories_as_config_spells_them(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.post("one", "2026-01-08 09:00", category="News")
    code, out = main_output(
        site,
        capsys,
        "send",
        "--test",
        "me@example.org",
        "--as-of",
        "2026-01-12T07:00",
        "--categories",
        "tech",
    )
    assert code == 1 and "Nothing in Tech was published" in out, out
