"""The subscriber service on SQLite and PostgreSQL, with malformed and hostile input."""

from __future__ import annotations

import io
from datetime import UTC

import pytest
from sqlalchemy import func, select

from digest import subscribers as subs
from digest.errors import StoreError
from digest.store import subscriber_categories, subscribers, subscription_events
from digest.subscribers import lifecycle


@pytest.fixture
def config(make_config):
    return make_config()


def table_counts(store) -> tuple[int, int, int]:
    with store.session() as session:
        return tuple(
            session.execute(select(func.count()).select_from(t)).scalar()
            for t in (subscribers, subscriber_categories, subscription_events)
        )


# -- normalise_email (pure) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Reader@Example.COM", "Reader@example.com"),
        ("  spaced@example.com\t", "spaced@example.com"),
        ("a@bücher.de", "a@xn--bcher-kva.de"),
        ("a@BÜCHER.de", "a@xn--bcher-kva.de"),
        ("a@xn--bcher-kva.de", "a@xn--bcher-kva.de"),
        ("first.last+tag@example.co.uk", "first.last+tag@example.co.uk"),
    ],
)
def test_normalise_email(raw, expected):
    assert subs.normalise_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("no-at-sign", "must have an @-sign"),
        ("two@@example.com", "not a valid email address"),
        ("a@localhost", "not a valid email address"),
        ("Joe <joe@example.com>", "display name"),
        ("a@example.com\r\nBcc: victim@example.com", "line break"),
        ("a@example.com\n", "line break"),
        ("a@exa mple.com", "not a valid email address"),
        ("x" * 65 + "@example.com", "before the @"),
        ("a@" + "b" * 250 + ".com", "254"),
        ("a" * 10_000 + "@example.com", "10012 characters"),
    ],
)
def test_normalise_email_refuses_with_the_reason(raw, reason):
    with pytest.raises(StoreError, match=reason) as info:
        subs.normalise_email(raw)
    assert len(str(info.value)) < 300  # a hostile 10 kB address is not echoed back whole


def test_normalise_email_refuses_non_text():
    with pytest.raises(StoreError, match="not text"):
        subs.normalise_email(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ada   Lovelace ", "Ada Lovelace"),
        ("Eve\r\nBcc: victim@example.com", "Eve Bcc: victim@example.com"),
        ("Tab\tand\x00nul\x1b[31m", "Tab and nul [31m"),
        ("evil\u202egnp.exe", "evilgnp.exe"),
        ("line\u2028sep", "line sep"),
        ("Zoë 🎉", "Zoë 🎉"),
        (None, ""),
    ],
)
def test_clean_name(raw, expected):
    assert subs.clean_name(raw) == expected


def test_clean_name_refuses_overlong():
    with pytest.raises(StoreError, match="limit is 100"):
        subs.clean_name("x" * 101)


def test_split_categories_keeps_known_names_with_spaces(config):
    assert subs.split_categories(config, "News;Data Science|tech") == ["News", "Data Science", "tech"]
    assert subs.split_categories(config, "news tech") == ["news", "tech"]
    assert subs.split_categories(config, "data  science, ,") == ["data  science"]


def test_resolve_categories_matches_without_case(config):
    assert subs.resolve_categories(config, [" NEWS ", "data science", "News"]) == ("data science", "news")


def test_unknown_category_lists_the_valid_ones(config):
    with pytest.raises(StoreError, match=r"unknown category 'Sport'.*News, Data Science, Tech"):
        subs.resolve_categories(config, ["News", "Sport"])


def test_no_category_chosen(config):
    with pytest.raises(StoreError, match="at least one category"):
        subs.resolve_categories(config, [" ", ""])


def test_config_without_categories_says_to_add_them(make_config):
    with pytest.raises(StoreError, match=r"\[\[categories\]\]"):
        subs.resolve_categories(make_config(categories=[]), ["News"])


# -- subscribe and the life cycle ---------------------------------------------------------------


def test_subscribe_new_is_pending_until_confirmed(store, config):
    sub, outcome = subs.subscribe(store, config, "New@Example.com", "News,Tech", name="N", source="web")
    assert outcome == "pending"
    assert (sub.email, sub.status, sub.categories, sub.name) == (
        "New@example.com",
        "pending",
        ("news", "tech"),
        "N",
    )
    assert sub.confirmed_at is None
    assert sub.created_at.tzinfo is UTC
    confirmed = subs.confirm(store, "new@example.com", source="web")
    assert confirmed.status == "active"
    assert confirmed.confirmed_at is not None
    # a second click on the link changes nothing
    assert subs.confirm(store, "NEW@example.com", source="web") == confirmed
    kinds = [e["kind"] for e in subs.events_for(store, "new@example.com")]
    assert kinds == ["subscribe", "confirm"]


def test_subscribe_confirmed_is_active_at_once(store, config):
    sub, outcome = subs.subscribe(store, config, "admin-added@example.com", ["Tech"], confirmed=True)
    assert (outcome, sub.status) == ("created", "active")
    assert sub.confirmed_at is not None


def test_double_subscribe_is_one_row_and_case_insensitive(store, config):
    subs.subscribe(store, config, "Twice@example.com", ["News"], source="web")
    sub, outcome = subs.subscribe(store, config, "twice@EXAMPLE.com", ["Tech"], source="web")
    assert outcome == "pending"
    assert sub.email == "Twice@example.com"  # the first spelling is kept
    assert sub.categories == ("tech",)  # the newest unconfirmed request wins
    assert table_counts(store)[0] == 1


def test_web_subscribe_cannot_change_an_active_reader(store, config):
    subs.subscribe(store, config, "active@example.com", ["News"], name="Real", confirmed=True)
    before = subs.events_for(store, "active@example.com")
    sub, outcome = subs.subscribe(store, config, "ACTIVE@example.com", ["Tech"], name="Mallory", source="web")
    assert outcome == "already_active"
    assert (sub.categories, sub.name, sub.status) == (("news",), "Real", "active")
    assert subs.events_for(store, "active@example.com") == before


def test_admin_subscribe_updates_an_active_reader(store, config):
    subs.subscribe(store, config, "active@example.com", ["News"], confirmed=True)
    sub, outcome = subs.subscribe(store, config, "active@example.com", ["Tech"], name="Ann", confirmed=True)
    assert outcome == "already_active"
    assert (sub.categories, sub.name) == (("tech",), "Ann")
    assert subs.events_for(store, "active@example.com")[-1]["kind"] == "categories"


def test_resubscribe_after_unsubscribe(store, config):
    subs.subscribe(store, config, "back@example.com", ["News"], confirmed=True)
    gone = subs.unsubscribe(store, "back@example.com", source="web")
    assert gone.status == "unsubscribed"
    # from the web: needs a fresh confirmation
    again, outcome = subs.subscribe(store, config, "back@example.com", ["Tech"], source="web")
    assert (outcome, again.status) == ("pending", "pending")
    # by an admin: active again at once
    again, outcome = subs.subscribe(store, config, "back@example.com", ["Tech"], confirmed=True)
    assert (outcome, again.status) == ("resubscribed", "active")


def test_confirm_refuses_unknown_and_ended(store, config):
    with pytest.raises(StoreError, match=r"no subscriber with the address nobody@example\.com"):
        subs.confirm(store, "nobody@example.com", source="web")
    subs.subscribe(store, config, "late@example.com", ["News"], source="web")
    subs.unsubscribe(store, "late@example.com", source="web")
    with pytest.raises(StoreError, match="is unsubscribed, not waiting for confirmation"):
        subs.confirm(store, "late@example.com", source="web")


def test_set_categories(store, config):
    subs.subscribe(store, config, "prefs@example.com", ["News"], confirmed=True)
    sub = subs.set_categories(store, config, "prefs@example.com", ["Tech", "data science"], source="web")
    assert sub.categories == ("data science", "tech")
    event = subs.events_for(store, "prefs@example.com")[-1]
    assert event["kind"] == "categories"
    assert event["detail"] == {"from": ["news"], "to": ["data science", "tech"]}
    assert event["source"] == "web"


def test_unknown_category_changes_nothing(store, config):
    subs.subscribe(store, config, "prefs@example.com", ["News"], confirmed=True)
    before = table_counts(store)
    with pytest.raises(StoreError, match="unknown category"):
        subs.set_categories(store, config, "prefs@example.com", ["News", "Gossip"], source="web")
    with pytest.raises(StoreError, match="unknown category"):
        subs.subscribe(store, config, "someone@example.com", ["Gossip"], source="web")
    assert table_counts(store) == before
    assert subs.get(store, "prefs@example.com").categories == ("news",)


def test_pause_and_resume(store, config):
    subs.subscribe(store, config, "p@example.com", ["News"], confirmed=True)
    assert subs.set_status(store, "p@example.com", "pause", source="web").status == "paused"
    assert list(subs.iter_subscribers(store)) == []
    assert subs.set_status(store, "p@example.com", "active", source="web").status == "active"
    assert [e["kind"] for e in subs.events_for(store, "p@example.com")] == ["subscribe", "pause", "resume"]


def test_resume_does_not_restore_consent(store, config):
    subs.subscribe(store, config, "p@example.com", ["News"], source="web")
    with pytest.raises(StoreError, match="it is pending, not paused; confirm first"):
        subs.set_status(store, "p@example.com", "resume", source="web")
    subs.unsubscribe(store, "p@example.com", source="web")
    with pytest.raises(StoreError, match="subscribe again"):
        subs.set_status(store, "p@example.com", "active", source="cli")


def test_bounce_and_complaint_are_logged_with_detail(store, config):
    subs.subscribe(store, config, "b@example.com", ["News"], confirmed=True)
    sub = subs.set_status(store, "b@example.com", "bounced", source="webhook", detail={"event_id": "e1"})
    assert sub.status == "bounced"
    subs.set_status(store, "b@example.com", "complaint", source="webhook", detail={"event_id": "e2"})
    events = subs.events_for(store, "b@example.com")
    assert [e["kind"] for e in events] == ["subscribe", "bounce", "complaint"]
    assert events[1]["detail"] == {"from": "active", "event_id": "e1"}
    assert subs.get(store, "b@example.com").status == "complained"


def test_set_status_refuses_unknown(store, config):
    subs.subscribe(store, config, "s@example.com", ["News"], confirmed=True)
    with pytest.raises(StoreError, match="use one of"):
        subs.set_status(store, "s@example.com", "vip", source="cli")


def test_unsubscribe_twice_logs_once(store, config):
    subs.subscribe(store, config, "u@example.com", ["News"], confirmed=True)
    first = subs.unsubscribe(store, "u@example.com", source="web")
    second = subs.unsubscribe(store, "U@example.com", source="web")
    assert first == second
    assert [e["kind"] for e in subs.events_for(store, "u@example.com")] == ["subscribe", "unsubscribe"]


def test_unsubscribe_unknown(store):
    with pytest.raises(StoreError, match="no subscriber"):
        subs.unsubscribe(store, "ghost@example.com", source="web")


def test_remove_erases_everything(store, config):
    subs.subscribe(store, config, "erase@example.com", ["News", "Tech"], confirmed=True)
    subs.subscribe(store, config, "stay@example.com", ["News"], confirmed=True)
    subs.remove(store, "ERASE@example.com")
    assert subs.get(store, "erase@example.com") is None
    assert subs.events_for(store, "erase@example.com") == []
    assert table_counts(store) == (1, 1, 1)
    with pytest.raises(StoreError, match="no subscriber"):
        subs.remove(store, "erase@example.com")


def test_bad_source_is_refused(store, config):
    with pytest.raises(StoreError, match="source"):
        subs.subscribe(store, config, "s@example.com", ["News"], source="x" * 40)
    assert table_counts(store) == (0, 0, 0)


@pytest.mark.parametrize(
    "email",
    ["bad", "a@example.com\r\nBcc: x@example.com", "x" * 300 + "@example.com", "<a@example.com>"],
)
def test_hostile_subscribe_writes_nothing(store, config, email):
    with pytest.raises(StoreError, match="not a valid email address"):
        subs.subscribe(store, config, email, ["News"], source="web")
    assert table_counts(store) == (0, 0, 0)


def test_crlf_name_is_cleaned_before_storing(store, config):
    sub, _ = subs.subscribe(store, config, "n@example.com", ["News"], name="Eve\r\nBcc: x@example.com")
    assert "\r" not in sub.name and "\n" not in sub.name
    with pytest.raises(StoreError, match="limit is 100"):
        subs.subscribe(store, config, "long@example.com", ["News"], name="y" * 500)
    assert subs.get(store, "long@example.com") is None


def test_unicode_domain_is_one_reader_in_both_spellings(store, config):
    subs.subscribe(store, config, "leser@bücher.de", ["News"], confirmed=True)
    sub, outcome = subs.subscribe(store, config, "LESER@xn--bcher-kva.de", ["News"], source="web")
    assert outcome == "already_active"
    assert sub.email == "leser@xn--bcher-kva.de"
    assert subs.get(store, "Leser@BÜCHER.de") == sub


def test_failure_midway_rolls_back_the_whole_change(store, config, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(lifecycle, "_log", boom)
    with pytest.raises(RuntimeError):
        subs.subscribe(store, config, "half@example.com", ["News"], confirmed=True)
    assert table_counts(store) == (0, 0, 0)


# -- reading -----------------------------------------------------------------------------------


def test_iter_subscribers_streams_in_id_order_with_categories(store, config):
    for i in range(7):
        cats = ["News"] if i % 2 else ["Tech", "Data Science"]
        subs.subscribe(store, config, f"r{i}@example.com", cats, confirmed=True)
    subs.unsubscribe(store, "r3@example.com", source="cli")
    got = list(subs.iter_subscribers(store, batch_size=2))
    assert [s.email for s in got] == [f"r{i}@example.com" for i in (0, 1, 2, 4, 5, 6)]
    assert [s.id for s in got] == sorted(s.id for s in got)
    assert got[0].categories == ("data science", "tech")
    news = list(subs.iter_subscribers(store, categories=["NEWS"], batch_size=1))
    assert [s.email for s in news] == ["r1@example.com", "r5@example.com"]
    everyone = list(subs.iter_subscribers(store, statuses=None, batch_size=3))
    assert len(everyone) == 7
    assert [s.email for s in subs.iter_subscribers(store, statuses=["unsubscribed"])] == ["r3@example.com"]


def test_iter_subscribers_pages_exactly(store, config):
    for i in range(4):
        subs.subscribe(store, config, f"p{i}@example.com", ["News"], confirmed=True)
    assert len(list(subs.iter_subscribers(store, batch_size=4))) == 4
    assert len(list(subs.iter_subscribers(store, batch_size=1))) == 4


def test_iter_subscribers_refuses_unknown_status(store):
    with pytest.raises(StoreError, match="unknown status"):
        list(subs.iter_subscribers(store, statuses=["gone"]))


def test_counts(store, config):
    subs.subscribe(store, config, "a@example.com", ["News", "Tech"], confirmed=True)
    subs.subscribe(store, config, "b@example.com", ["News"], confirmed=True)
    subs.subscribe(store, config, "c@example.com", ["News"], source="web")
    assert subs.count_by_category(store) == {"news": 2, "tech": 1}
    assert subs.count_by_category(store, statuses=["pending"]) == {"news": 1}
    assert subs.count_by_status(store)["active"] == 2


# -- CSV ---------------------------------------------------------------------------------------


def write(tmp_path, text: str, name: str = "in.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_reports_bad_rows_by_line_and_goes_on(store, config, tmp_path):
    path = write(
        tmp_path,
        "email,name,categories,status\n"
        "good@example.com,Good,News;Tech,\n"  # line 2
        "not-an-email,,News,\n"  # line 3
        "\n"  # line 4: blank, skipped
        "unknown@example.com,,Gossip,\n"  # line 5
        '"multi@example.com","Two\nLines",Data Science|News,paused\n'  # lines 6-7
        "nocats@example.com,,,\n"  # line 8
        "badstatus@example.com,,News,vip\n"  # line 9
        "GOOD@example.com,Good Again,news tech,\n",  # line 10: same reader, updated name
    )
    report = subs.import_csv(store, config, path)
    assert (report.created, report.updated, report.unchanged) == (2, 1, 0)
    assert [(p.line, p.email) for p in report.problems] == [
        (3, "not-an-email"),
        (5, "unknown@example.com"),
        (8, "nocats@example.com"),
        (9, "badstatus@example.com"),
    ]
    assert "Gossip" in report.problems[1].message
    assert str(report.problems[1]).startswith("line 5: unknown@example.com: unknown category")
    assert report.rows == 7
    assert not report.ok
    multi = subs.get(store, "multi@example.com")
    assert (multi.name, multi.status, multi.categories) == ("Two Lines", "paused", ("data science", "news"))
    assert subs.get(store, "good@example.com").name == "Good Again"
    assert [e["source"] for e in subs.events_for(store, "good@example.com")] == ["import", "import"]
    assert table_counts(store)[0] == 2


def test_import_never_resubscribes(store, config, tmp_path):
    subs.subscribe(store, config, "left@example.com", ["News"], confirmed=True)
    subs.unsubscribe(store, "left@example.com", source="web")
    report = subs.import_csv(store, config, write(tmp_path, "email,status\nleft@example.com,active\n"))
    assert [p.line for p in report.problems] == [2]
    assert "does not subscribe them again" in report.problems[0].message
    assert subs.get(store, "left@example.com").status == "unsubscribed"


def test_import_unchanged_row(store, config, tmp_path):
    subs.subscribe(store, config, "same@example.com", ["News"], confirmed=True)
    report = subs.import_csv(store, config, write(tmp_path, "email,categories\nsame@example.com,News\n"))
    assert report.unchanged == 1 and report.ok


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"name,categories\nx,News\n", "no 'email' column"),
        (b"email\nok@example.com\n\xff\xfe\n", "line 3 is not UTF-8"),
    ],
)
def test_import_refuses_unusable_files_before_writing(store, config, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=message):
        subs.import_csv(store, config, path)
    assert table_counts(store) == (0, 0, 0)


def test_import_missing_file(store, config, tmp_path):
    with pytest.raises(StoreError, match="file not found"):
        subs.import_csv(store, config, tmp_path / "nope.csv")


def test_import_without_configured_categories(store, make_config, tmp_path):
    with pytest.raises(StoreError, match=r"\[\[categories\]\]"):
        subs.import_csv(store, make_config(categories=[]), write(tmp_path, "email\na@example.com\n"))


def test_import_accepts_bom_and_header_case(store, config, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffEmail, Name ,Categories\nbom@example.com,Bo,Tech\n".encode())
    report = subs.import_csv(store, config, path)
    assert report.created == 1 and report.ok
    assert subs.get(store, "bom@example.com").status == "active"


def test_export_round_trips_through_import(store, config, tmp_path, make_config):
    subs.subscribe(
        store, config, "a@example.com", ["News", "Data Science"], name="=HYPERLINK(1)", confirmed=True
    )
    subs.subscribe(store, config, "b@bücher.de", ["Tech"], name='Bé, "quoted"', confirmed=True)
    subs.subscribe(store, config, "c@example.com", ["Tech"], source="web")
    out = io.StringIO()
    assert subs.export_csv(store, out) == 3
    text = out.getvalue()
    assert text.splitlines()[0] == "email,name,categories,status"
    assert "'=HYPERLINK(1)" in text  # a spreadsheet will not run it
    from digest.store import open_store

    other = open_store(make_config(), url=f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        report = subs.import_csv(other, config, write(tmp_path, text, "export.csv"))
        assert report.created == 3 and report.ok
        assert [
            (s.email, s.name, s.categories, s.status) for s in subs.iter_subscribers(other, statuses=None)
        ] == [(s.email, s.name, s.categories, s.status) for s in subs.iter_subscribers(store, statuses=None)]
    finally:
        other.dispose()


# -- subscribers.category_set (denormalised for the sender) ------------------------------------


def stored_sets(store) -> dict[str, str]:
    """email -> the category_set column, read straight from the table."""
    with store.session() as session:
        return dict(session.execute(select(subscribers.c.email, subscribers.c.category_set)).all())


def sets_from_rows(store) -> dict[str, str]:
    """email -> what the category_set column should hold, worked out from subscriber_categories."""
    with store.session() as session:
        rows = session.execute(
            select(subscribers.c.email, subscriber_categories.c.category_key).join(
                subscriber_categories, subscriber_categories.c.subscriber_id == subscribers.c.id, isouter=True
            )
        ).all()
    found: dict[str, list[str]] = {}
    for email, key in rows:
        found.setdefault(email, [])
        if key is not None:
            found[email].append(key)
    return {email: subs.category_set_label(keys) for email, keys in found.items()}


def test_category_set_label_is_sorted_and_round_trips():
    assert subs.category_set_label(["tech", "data science", "news", "tech"]) == "data science, news, tech"
    assert subs.category_set_keys("data science, news, tech") == ("data science", "news", "tech")
    assert subs.category_set_label([]) == "" and subs.category_set_keys("") == ()


def test_category_set_follows_every_change(store, config, tmp_path):
    subs.subscribe(store, config, "a@example.com", ["Tech", "News"], confirmed=True)
    subs.subscribe(store, config, "web@example.com", "Data Science", source="web")
    assert stored_sets(store) == {"a@example.com": "news, tech", "web@example.com": "data science"}
    subs.set_categories(store, config, "a@example.com", ["Data Science"], source="web")
    assert stored_sets(store)["a@example.com"] == "data science"
    subs.subscribe(store, config, "a@example.com", ["News", "Data Science", "Tech"], confirmed=True)
    assert stored_sets(store)["a@example.com"] == "data science, news, tech"
    subs.unsubscribe(store, "a@example.com", source="web")
    assert stored_sets(store)["a@example.com"] == "data science, news, tech"  # kept, not mailed
    subs.subscribe(store, config, "a@example.com", ["News"], confirmed=True, force_reason="asked by phone")
    assert stored_sets(store)["a@example.com"] == "news"
    subs.unsubscribe(store, "web@example.com", source="web")
    subs.subscribe(store, config, "web@example.com", ["Tech", "News"], source="web")  # pending again
    assert stored_sets(store)["web@example.com"] == "news, tech"
    report = subs.import_csv(
        store,
        config,
        write(
            tmp_path,
            "email,name,categories,status\n"
            "new@example.com,,Tech;News,\n"
            "a@example.com,,Data Science|Tech,\n"
            "web@example.com,Renamed,,\n",  # no categories given: the set stays
        ),
    )
    assert report.ok and (report.created, report.updated) == (1, 2)
    assert stored_sets(store) == {
        "a@example.com": "data science, tech",
        "web@example.com": "news, tech",
        "new@example.com": "news, tech",
    }
    assert stored_sets(store) == sets_from_rows(store)


def test_category_set_is_not_changed_by_a_failed_change(store, config):
    subs.subscribe(store, config, "a@example.com", ["Tech"], confirmed=True)
    with pytest.raises(StoreError):
        subs.set_categories(store, config, "a@example.com", ["Gossip"], source="web")
    assert stored_sets(store) == {"a@example.com": "tech"} == sets_from_rows(store)


def test_iter_send_rows_groups_each_set_and_pages_exactly(store, config):
    wanted = ["News", ["Tech", "News"], "Tech", "News", ["News", "Tech"], "Data Science", "News"]
    for i, cats in enumerate(wanted):
        subs.subscribe(store, config, f"r{i}@example.com", cats, name=f"R{i}", confirmed=True)
    subs.subscribe(store, config, "pending@example.com", "News", source="web")
    subs.subscribe(store, config, "gone@example.com", "News", confirmed=True)
    subs.unsubscribe(store, "gone@example.com", source="web")
    everyone = list(subs.iter_send_rows(store))
    assert [row[3] for row in everyone] == ["data science"] + ["news"] * 3 + ["news, tech"] * 2 + ["tech"]
    assert all(isinstance(row, tuple) and len(row) == 4 for row in everyone)
    by_set = [(row[3], row[0]) for row in everyone]
    assert by_set == sorted(by_set)  # ids ascending within each set
    assert {row[1] for row in everyone} == {f"r{i}@example.com" for i in range(len(wanted))}
    assert everyone[0][2] == "R5"
    for page in (1, 2, 3, 7, 100):
        assert list(subs.iter_send_rows(store, page=page)) == everyone
    pending = list(subs.iter_send_rows(store, statuses=["pending"]))
    assert [row[1] for row in pending] == ["pending@example.com"]
    with pytest.raises(StoreError):
        list(subs.iter_send_rows(store, statuses=["gone"]))


def test_changed_send_rows_finds_readers_changed_since_in_send_order(store, config):
    """What a send reads again after its stream: active readers whose row changed since it began."""
    from datetime import UTC, datetime, timedelta

    for i, cats in enumerate(["News", "Tech", "News", ["News", "Tech"]]):
        subs.subscribe(store, config, f"r{i}@example.com", cats, confirmed=True)
    since = datetime.now(UTC)
    assert subs.changed_send_rows(store, since + timedelta(seconds=1)) == []
    everyone = list(subs.iter_send_rows(store))
    assert subs.changed_send_rows(store, since - timedelta(hours=1)) == everyone  # same rows, same order
    later = datetime.now(UTC)
    subs.set_categories(store, config, "r2@example.com", ["Tech"], source="web")  # moves set
    subs.subscribe(store, config, "late@example.com", "News", confirmed=True)  # confirms now
    subs.subscribe(store, config, "pending@example.com", "News", source="web")  # not active
    subs.unsubscribe(store, "r0@example.com", source="web")  # changed, but no longer active
    changed = subs.changed_send_rows(store, later)
    assert [(row[1], row[3]) for row in changed] == [("late@example.com", "news"), ("r2@example.com", "tech")]
    for page in (1, 2):
        assert subs.changed_send_rows(store, later, page=page) == changed
