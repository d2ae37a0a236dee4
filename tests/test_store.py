"""The store: migrations on open, schema equal to the models, SQLite settings, sessions, time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from digest import subscribers as subs
from digest.errors import StoreError
from digest.store import (
    alembic_config,
    current_revision,
    deliveries,
    editions,
    metadata,
    migrate,
    open_store,
    subscribers,
    subscription_events,
)

ALL_TABLES = {
    "subscribers",
    "subscriber_categories",
    "subscription_events",
    "editions",
    "deliveries",
    "batches",
    "received_posts",
    "provider_events",
}


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_open_creates_every_table_at_head(store):
    names = set(inspect(store.engine).get_table_names())
    assert names >= ALL_TABLES
    assert "alembic_version" in names
    assert current_revision(store.engine) == head()


def test_models_match_the_migrations(store):
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_open_twice_is_idempotent_and_keeps_data(db_url, make_config):
    config = make_config()
    first = open_store(config, url=db_url)
    subs.subscribe(first, config, "keep@example.com", ["News"], confirmed=True)
    first.dispose()
    second = open_store(config, url=db_url)
    try:
        assert current_revision(second.engine) == head()
        assert subs.get(second, "keep@example.com").status == "active"
    finally:
        second.dispose()


def test_migrations_downgrade_and_upgrade_again(store):
    with store.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert not ALL_TABLES & set(inspect(store.engine).get_table_names())
    migrate(store.engine, "head")
    assert set(inspect(store.engine).get_table_names()) >= ALL_TABLES


def test_session_commits_on_success_and_rolls_back_on_error(store):
    with store.session() as session:
        session.execute(insert(subscribers).values(email="a@example.com", email_key="a@example.com"))
    with pytest.raises(RuntimeError), store.session() as session:
        session.execute(insert(subscribers).values(email="b@example.com", email_key="b@example.com"))
        raise RuntimeError("boom")
    with store.session() as session:
        emails = session.execute(select(subscribers.c.email)).scalars().all()
    assert emails == ["a@example.com"]


def test_email_key_is_unique(store):
    with store.session() as session:
        session.execute(insert(subscribers).values(email="A@example.com", email_key="a@example.com"))
    with pytest.raises(IntegrityError), store.session() as session:
        session.execute(insert(subscribers).values(email="a@example.com", email_key="a@example.com"))


def test_status_is_checked_by_the_database(store):
    with pytest.raises(IntegrityError), store.session() as session:
        session.execute(
            insert(subscribers).values(email="x@example.com", email_key="x@example.com", status="vip")
        )


def test_timestamps_come_back_aware_utc(store):
    plus_two = timezone(timedelta(hours=2))
    start = datetime(2026, 1, 5, 9, 30, tzinfo=plus_two)
    with store.session() as session:
        session.execute(
            insert(editions).values(
                id="2026-W02", window_start=start, window_end=start + timedelta(days=7), status="building"
            )
        )
    with store.session() as session:
        row = session.execute(select(editions)).one()
    assert row.window_start == start
    assert row.window_start.tzinfo is UTC
    assert row.window_start.hour == 7
    assert row.created_at.tzinfo is UTC
    assert abs(row.created_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_naive_timestamps_are_refused(store):
    with pytest.raises(StatementError, match="no time zone"), store.session() as session:
        session.execute(
            insert(editions).values(
                id="x", window_start=datetime(2026, 1, 1), window_end=datetime(2026, 1, 8), status="building"
            )
        )


def test_foreign_keys_cascade_on_delete(store, make_config):
    config = make_config()
    sub, _ = subs.subscribe(store, config, "gone@example.com", ["News"], confirmed=True)
    now = datetime.now(UTC)
    with store.session() as session:
        session.execute(insert(editions).values(id="e1", window_start=now, window_end=now, status="sending"))
        session.execute(insert(deliveries).values(edition_id="e1", subscriber_id=sub.id, state="pending"))
    with store.session() as session:
        session.execute(subscribers.delete())
    with store.session() as session:
        assert session.execute(select(func.count()).select_from(deliveries)).scalar() == 0
        assert session.execute(select(func.count()).select_from(subscription_events)).scalar() == 0


def test_foreign_keys_are_enforced(store):
    with pytest.raises(IntegrityError), store.session() as session:
        session.execute(insert(deliveries).values(edition_id="nope", subscriber_id=12345, state="pending"))


def test_sqlite_runs_in_wal_with_foreign_keys_and_busy_timeout(make_config, tmp_path):
    store = open_store(make_config(), url=f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        store.dispose()


def test_relative_sqlite_path_is_next_to_the_config(make_config, tmp_path, monkeypatch):
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path.parent)
    config = make_config(database={"url": "sqlite:///data/digest.db"})
    # The folder is never created for you (issue 15: a typo must not start an empty database).
    with pytest.raises(StoreError, match=r"the folder .*data for the database digest\.db does not exist"):
        open_store(config)
    assert not (tmp_path / "data").exists()
    (tmp_path / "data").mkdir()
    store = open_store(config)
    store.dispose()
    assert (tmp_path / "data" / "digest.db").exists()


def test_relative_url_argument_is_next_to_the_config(make_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)
    store = open_store(make_config(), url="sqlite:///other.db")
    store.dispose()
    assert (tmp_path / "other.db").exists()


def test_database_url_from_the_environment_wins(make_config, tmp_path, monkeypatch):
    target = tmp_path / "from-env.db"
    monkeypatch.setenv("DIGEST_DATABASE_URL", f"sqlite:///{target}")
    store = open_store(make_config())
    store.dispose()
    assert target.exists()


def test_in_memory_sqlite_keeps_one_database(make_config):
    store = open_store(make_config(), url="sqlite://")
    try:
        config = make_config()
        subs.subscribe(store, config, "mem@example.com", ["Tech"], confirmed=True)
        assert subs.get(store, "mem@example.com") is not None
    finally:
        store.dispose()


def test_bad_url_is_a_store_error(make_config):
    with pytest.raises(StoreError, match="not a valid SQLAlchemy URL"):
        open_store(make_config(), url="not a url")


def test_unreachable_server_is_a_store_error_without_password(make_config):
    with pytest.raises(StoreError, match="cannot open the database") as info:
        open_store(make_config(), url="postgresql+psycopg://digest:s3cret@127.0.0.1:1/nowhere")
    assert "s3cret" not in str(info.value)


def test_reading_transaction_sees_committed_rows(store):
    with store.session() as session:
        session.execute(insert(subscribers).values(email="r@example.com", email_key="r@example.com"))
    with store.reading() as connection:
        assert connection.execute(text("select count(*) from subscribers")).scalar() == 1


def test_migration_0003_backfills_category_set(db_url, make_config):
    """A database at 0002 with readers gets subscribers.category_set filled from their categories."""
    from digest.store import create_store_engine

    config = make_config()
    engine = create_store_engine(config, db_url)
    try:
        migrate(engine, "0002")
        now = datetime(2026, 1, 1, tzinfo=UTC)
        rows = {1: ["tech", "news", "data science"], 2: ["news"], 3: [], 4: ["zeta", "Alpha", "beta"]}
        with engine.begin() as connection:
            for sid in rows:
                connection.execute(
                    text(
                        "INSERT INTO subscribers (id, email, email_key, name, status, created_at, updated_at) "
                        "VALUES (:id, :e, :e, '', 'active', :now, :now)"
                    ),
                    {"id": sid, "e": f"r{sid}@example.com", "now": now.replace(tzinfo=None)},
                )
                for key in rows[sid]:
                    connection.execute(
                        text(
                            "INSERT INTO subscriber_categories (subscriber_id, category_key) VALUES (:s, :k)"
                        ),
                        {"s": sid, "k": key},
                    )
        migrate(engine, "head")
        assert current_revision(engine) == head()
        with engine.connect() as connection:
            got = dict(connection.execute(select(subscribers.c.id, subscribers.c.category_set)).all())
        # Sorted by code point, as Python sorts (upper case first), whatever the collation.
        assert got == {sid: ", ".join(sorted(keys)) for sid, keys in rows.items()}
        assert got[1] == "data science, news, tech" and got[3] == "" and got[4] == "Alpha, beta, zeta"
        indexes = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("subscribers")}
        assert indexes["ix_subscribers_send_order"] == ["status", "category_set", "id", "email", "name"]
    finally:
        engine.dispose()
