"""`digest subscribers ...` and `digest categories` through click, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from digest import subscribers as subs
from digest.cli import cli
from digest.errors import StoreError
from digest.store import open_store

CONFIG = """
[posts]
folder = "posts"

[[categories]]
name = "News"
description = "What happened this week"

[[categories]]
name = "Data Science"

[[categories]]
name = "Tech"
"""

POST = """---
title: {title}
date: 2026-01-0{day}
categories: [{cats}]
---
Body of {title}.
"""


@pytest.fixture
def env(tmp_path, db_url, monkeypatch):
    """A config.toml with three categories and two posts, and the test database in the environment."""
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "2026-01-05-one.md").write_text(POST.format(title="One", day=5, cats="News, Travel"))
    (posts / "2026-01-06-two.md").write_text(POST.format(title="Two", day=6, cats="news"))
    monkeypatch.setenv("DIGEST_DATABASE_URL", db_url)
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    return tmp_path


def run(env, *args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["--config", str(env / "config.toml"), *args], input=input)


def db(env):
    from digest.config import load_config

    return open_store(load_config(env / "config.toml"))


def test_add_is_active_and_logged_as_cli(env):
    result = run(
        env, "subscribers", "add", "Reader@Example.com", "--categories", "news, data science", "--name", "Ada"
    )
    assert result.exit_code == 0, result.output
    assert result.output == "Added Reader@example.com (active): News, Data Science\n"
    store = db(env)
    try:
        sub = subs.get(store, "reader@example.com")
        assert (sub.status, sub.name, sub.categories) == ("active", "Ada", ("data science", "news"))
        assert [(e["kind"], e["source"]) for e in subs.events_for(store, sub.email)] == [("subscribe", "cli")]
    finally:
        store.dispose()


def test_add_pending_then_again(env):
    assert run(env, "subscribers", "add", "p@example.com", "-c", "Tech", "--pending").output == (
        "Added, waiting for confirmation: p@example.com (pending): Tech\n"
    )
    again = run(env, "subscribers", "add", "P@example.com", "-c", "Tech")
    assert again.output == "Added p@example.com (active): Tech\n"
    assert run(env, "subscribers", "add", "p@example.com", "-c", "Tech").output.startswith(
        "Already subscribed:"
    )


@pytest.mark.parametrize(
    ("email", "categories", "message"),
    [
        ("not-an-email", "News", "not a valid email address"),
        ("a@example.com\r\nBcc: b@example.com", "News", "line break"),
        (
            "a@example.com",
            "Sport",
            "unknown category 'Sport'; the categories in config.toml are: News, Data Science, Tech",
        ),
    ],
)
def test_add_refuses_bad_input(env, email, categories, message):
    result = run(env, "subscribers", "add", email, "--categories", categories)
    assert result.exit_code == 1
    assert isinstance(result.exception, StoreError)
    assert message in str(result.exception)
    listed = run(env, "subscribers", "list", "--format", "json")
    assert json.loads(listed.output) == []


def test_add_needs_categories(env):
    result = run(env, "subscribers", "add", "a@example.com")
    assert result.exit_code == 2
    assert "--categories" in result.output


def test_remove_unsubscribes_and_erase_deletes(env):
    run(env, "subscribers", "add", "gone@example.com", "-c", "News")
    result = run(env, "subscribers", "remove", "GONE@example.com")
    assert result.exit_code == 0
    assert result.output.startswith("Unsubscribed gone@example.com.")
    shown = run(env, "subscribers", "show", "gone@example.com")
    assert "gone@example.com (unsubscribed)" in shown.output
    assert "unsubscribe" in shown.output
    # --erase asks first; "n" keeps everything
    kept = run(env, "subscribers", "remove", "gone@example.com", "--erase", input="n\n")
    assert kept.exit_code == 1
    assert "unsubscribed" in run(env, "subscribers", "list", "-f", "csv").output
    erased = run(env, "subscribers", "remove", "gone@example.com", "--erase", "--yes")
    assert erased.exit_code == 0, erased.output
    assert erased.output.startswith("Erased gone@example.com")
    assert run(env, "subscribers", "list", "-f", "csv").output == "email,name,categories,status\n"
    missing = run(env, "subscribers", "remove", "gone@example.com", "--erase", "--yes")
    assert missing.exit_code == 1
    assert "no subscriber with the address gone@example.com" in str(missing.exception)


def test_list_filters_and_formats(env):
    run(env, "subscribers", "add", "a@example.com", "-c", "News,Tech", "--name", "=cmd()")
    run(env, "subscribers", "add", "b@example.com", "-c", "Tech", "--pending")
    run(env, "subscribers", "add", "c@bücher.de", "-c", "Data Science")
    csv_out = run(env, "subscribers", "list", "--format", "csv", "--status", "active", "--category", "tech")
    assert csv_out.output == "email,name,categories,status\na@example.com,'=cmd(),news;tech,active\n"
    rows = json.loads(run(env, "subscribers", "list", "-f", "json").output)
    assert [(r["email"], r["status"]) for r in rows] == [
        ("a@example.com", "active"),
        ("b@example.com", "pending"),
        ("c@xn--bcher-kva.de", "active"),
    ]
    assert rows[0]["categories"] == ["news", "tech"]
    assert rows[0]["created_at"].endswith("+00:00")
    pending = json.loads(run(env, "subscribers", "list", "-f", "json", "-s", "pending").output)
    assert [r["email"] for r in pending] == ["b@example.com"]
    table = run(env, "subscribers", "list")
    assert table.exit_code == 0
    assert "3 subscribers" in table.output
    assert "a@example.com" in table.output and "News, Tech" in table.output
    unknown = run(env, "subscribers", "list", "--category", "Sport")
    assert unknown.exit_code == 1 and "unknown category 'Sport'" in str(unknown.exception)
    bad_status = run(env, "subscribers", "list", "--status", "vip")
    assert bad_status.exit_code == 2


def test_list_empty_table(env):
    assert run(env, "subscribers", "list").output == "No subscribers match.\n"


def test_import_reports_lines_and_export_round_trips(env):
    csv_file = env / "in.csv"
    csv_file.write_text(
        "email,name,categories,status\n"
        "one@example.com,One,News;Tech,\n"
        "broken,,News,\n"
        "two@example.com,Two,Data Science|news,pending\n"
        "three@example.com,,Gossip,\n",
        encoding="utf-8",
    )
    result = run(env, "subscribers", "import", str(csv_file))
    assert result.exit_code == 1
    assert f"{csv_file}: line 3: 'broken' is not a valid email address" in result.stderr
    assert f"{csv_file}: line 5: three@example.com: unknown category 'Gossip'" in result.stderr
    assert result.stdout == f"{csv_file}: 4 rows: 2 added, 0 updated, 0 unchanged, 2 refused.\n"

    out = env / "out.csv"
    exported = run(env, "subscribers", "export", str(out))
    assert exported.exit_code == 0
    assert "Wrote 2 subscribers" in exported.stderr
    assert out.read_text(encoding="utf-8") == (
        "email,name,categories,status\n"
        "one@example.com,One,news;tech,active\n"
        "two@example.com,Two,data science;news,pending\n"
    )
    assert run(env, "subscribers", "export").stdout == out.read_text(encoding="utf-8")
    again = run(env, "subscribers", "import", str(out))
    assert again.exit_code == 0
    assert again.stdout.endswith("0 added, 0 updated, 2 unchanged, 0 refused.\n")


def test_import_missing_file(env):
    result = run(env, "subscribers", "import", str(env / "nope.csv"))
    assert result.exit_code == 1
    assert "file not found" in str(result.exception)


def test_categories_counts_posts_and_subscribers(env):
    run(env, "subscribers", "add", "a@example.com", "-c", "News,Tech")
    run(env, "subscribers", "add", "b@example.com", "-c", "News", "--pending")
    result = run(env, "categories", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert (rows["News"]["posts"], rows["News"]["subscribers"]) == (2, 1)
    assert (rows["Tech"]["posts"], rows["Tech"]["subscribers"]) == (0, 1)
    assert rows["Travel"] == {
        "name": "Travel",
        "description": "",
        "in_config": False,
        "posts": 1,
        "subscribers": 0,
    }
    table = run(env, "categories")
    assert "Travel (not in config.toml)" in table.output
    assert "What happened this week" in table.output


def test_categories_without_posts_folder(env):
    import shutil

    shutil.rmtree(env / "posts")
    result = run(env, "categories")
    assert result.exit_code == 0
    assert "Posts not counted" in result.output
    assert "News" in result.output


def test_no_categories_in_config(env):
    (env / "config.toml").write_text("", encoding="utf-8")
    result = run(env, "subscribers", "add", "a@example.com", "-c", "News")
    assert result.exit_code == 1
    assert "[[categories]]" in str(result.exception)


@pytest.mark.parametrize(
    "command",
    [
        ["subscribers"],
        ["subscribers", "add"],
        ["subscribers", "remove"],
        ["subscribers", "list"],
        ["subscribers", "show"],
        ["subscribers", "import"],
        ["subscribers", "export"],
        ["categories"],
    ],
)
def test_every_command_has_help_with_an_example(env, command):
    result = run(env, *command, "--help")
    assert result.exit_code == 0
    assert "Example: digest " in result.output
