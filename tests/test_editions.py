"""The editions table as digest.schedule sees it (digest.editions), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from digest import editions
from digest.schedule import Window

LONDON = ZoneInfo("Europe/London")


def w(d1: int, d2: int) -> Window:
    return Window(datetime(2026, 1, d1, 7, tzinfo=LONDON), datetime(2026, 1, d2, 7, tzinfo=LONDON))


def manifest(*paths: str) -> dict[str, Any]:
    return {"edition": "x", "sections": [{"name": "News", "posts": [{"path": p} for p in paths]}]}


def test_record_and_read_back(store: Any) -> None:
    record = editions.record_edition(store, edition_id="2026-W02", window=w(5, 12), manifest=manifest("a.md"))
    assert record.status == "building" and record.post_ids == {"a.md"}
    assert record.window_start == datetime(2026, 1, 5, 7, tzinfo=UTC)  # stored and returned in UTC
    again = editions.record_edition(store, edition_id="2026-W02", window=w(6, 13), manifest=manifest("b.md"))
    assert again.window == record.window  # first writer's window wins
    assert again.post_ids == {"b.md"}  # a manifest for a row still building replaces the old one
    assert editions.get_edition(store, "nope") is None


def test_last_sent_is_the_latest_window_that_went_out(store: Any) -> None:
    assert editions.last_sent_edition(store) is None
    editions.record_edition(store, edition_id="2026-W02", window=w(5, 12), status="sent")
    editions.record_edition(store, edition_id="2026-W03", window=w(12, 19), status="sent")
    editions.record_edition(store, edition_id="2026-W04", window=w(19, 26), status="cancelled")
    editions.record_edition(store, edition_id="2026-W05", window=w(26, 28), status="sending")
    last = editions.last_sent_edition(store)
    assert last is not None and last.id == "2026-W03"
    other = editions.last_sent_edition(store, exclude="2026-W03")
    assert other is not None and other.id == "2026-W02"
    records = editions.edition_records(store)
    assert [r.id for r in records] == ["2026-W02", "2026-W03", "2026-W04", "2026-W05"]
    assert editions.covered_since(records) == datetime(2026, 1, 5, 7, tzinfo=UTC)


def test_set_status_and_sent_manifest_is_kept(store: Any) -> None:
    editions.record_edition(store, edition_id="2026-W02", window=w(5, 12), manifest=manifest("a.md"))
    editions.set_status(store, "2026-W02", "sent", sent_at=datetime(2026, 1, 12, 7, 3, tzinfo=UTC))
    editions.record_edition(store, edition_id="2026-W02", window=w(5, 12), manifest=manifest("z.md"))
    record = editions.get_edition(store, "2026-W02")
    assert record is not None and record.status == "sent" and record.post_ids == {"a.md"}
    assert record.sent_at == datetime(2026, 1, 12, 7, 3, tzinfo=UTC)


def test_post_ids_from_manifest_tolerates_odd_input() -> None:
    assert editions.post_ids_from_manifest(None) == frozenset()
    assert editions.post_ids_from_manifest("not json") == frozenset()
    assert editions.post_ids_from_manifest("[1, 2]") == frozenset()
    data = {**manifest("a.md"), editions.BACKDATED_SKIPPED: ["old.md"]}
    assert editions.post_ids_from_manifest(data) == {"a.md", "old.md"}
