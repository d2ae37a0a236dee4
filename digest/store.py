"""The database: tables, one migration history, and a Store that opens, migrates and hands out sessions.

SQLite (a file next to ``config.toml``) by default, PostgreSQL when ``DIGEST_DATABASE_URL`` or
``[database] url`` names one. The tables are SQLAlchemy Core, so the subscriber service, the web
app and the sender share one definition and write plain, fast SQL. Every schema change is an
Alembic migration in ``digest/migrations/versions``, run to head by ``open_store``, so an
existing database upgrades in place.

Timestamps are always timezone-aware UTC in Python (``UTCDateTime``): PostgreSQL stores
``timestamptz``, SQLite stores naive UTC text that comes back with ``tzinfo=UTC``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from digest.config import DATABASE_ENV, Config
from digest.errors import StoreError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000

SUBSCRIBER_STATUSES = ("pending", "active", "paused", "unsubscribed", "bounced", "complained")
EDITION_STATUSES = ("building", "sending", "sent", "cancelled")
DELIVERY_STATES = ("pending", "in_flight", "sent", "failed", "skipped")
BATCH_STATES = ("in_flight", "accepted", "failed")


def utcnow() -> datetime:
    """The one clock the store uses: aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases; a naive value is a bug, refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"timestamp {value!r} has no time zone; pass an aware datetime (UTC).")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Named constraints, so later migrations (and SQLite batch mode) can find them by name.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Normalised: local part as given, domain lowercased and IDNA-encoded.
    Column("email", String(320), nullable=False, unique=True),
    # The whole address lowercased: what uniqueness and look-ups use.
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    Column("status", String(16), nullable=False, default="pending"),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow),
    Column("confirmed_at", UTCDateTime, nullable=True),
    Column("unsubscribed_at", UTCDateTime, nullable=True),
    # The reader's category keys, sorted and joined with ", " (deliveries.category_set's label;
    # "" for none), kept in step with subscriber_categories by digest.subscribers (migration 0003).
    Column("category_set", Text, nullable=False, default="", server_default=""),
    CheckConstraint(
        "status IN ('pending', 'active', 'paused', 'unsubscribed', 'bounced', 'complained')",
        name="status",
    ),
    # Streaming active subscribers in id order (keyset pagination) walks this index.
    Index("ix_subscribers_status_id", "status", "id"),
    # A send streams each category set's readers together: (category_set, id) keyset pages. It
    # covers email and name too, so a page is read in index order, not from pages all over the table.
    Index("ix_subscribers_send_order", "status", "category_set", "id", "email", "name"),
)

subscriber_categories = Table(
    "subscriber_categories",
    metadata,
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("category_key", String(200), nullable=False),
    PrimaryKeyConstraint("subscriber_id", "category_key"),
    Index("ix_subscriber_categories_category_key", "category_key"),
)

# Append-only consent log: who changed what, when, and through which door.
subscription_events = Table(
    "subscription_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("kind", String(32), nullable=False),
    Column("detail", Text, nullable=False, default="{}"),  # JSON object
    Column("source", String(32), nullable=False),
    Column("at", UTCDateTime, nullable=False, default=utcnow),
    Index("ix_subscription_events_subscriber_id_id", "subscriber_id", "id"),
)

editions = Table(
    "editions",
    metadata,
    Column("id", String(64), primary_key=True),  # e.g. '2026-W02'
    Column("window_start", UTCDateTime, nullable=False),
    Column("window_end", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False, default="building"),
    Column("manifest", Text, nullable=True),
    Column("sendgrid_batch_id", String(200), nullable=True),
    Column("send_at", UTCDateTime, nullable=True),
    Column("lock_owner", String(200), nullable=True),
    Column("lock_expires", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("sent_at", UTCDateTime, nullable=True),
    # The send lease's fencing token: +1 on every acquire (migration 0005 says why).
    Column("lock_token", Integer, nullable=False, default=0, server_default="0"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "edition_id",
        String(64),
        ForeignKey("editions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("category_set", Text, nullable=False, default=""),
    Column("state", String(16), nullable=False, default="in_flight"),
    Column("recipients", Integer, nullable=False, default=0),
    Column("provider_message_id", String(200), nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow),
    # The batch's readers (a JSON list of subscriber ids) until they are written into
    # ``deliveries`` in bulk; NULL after (migration 0004 says why).
    Column("pending_ids", Text, nullable=True),
    Index("ix_batches_edition_id", "edition_id"),
    Index(
        "ix_batches_pending",
        "edition_id",
        sqlite_where=text("pending_ids IS NOT NULL"),
        postgresql_where=text("pending_ids IS NOT NULL"),
    ),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column(
        "edition_id",
        String(64),
        ForeignKey("editions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("state", String(16), nullable=False, default="pending"),
    Column("batch_id", Integer, nullable=True),
    Column("category_set", Text, nullable=False, default=""),
    Column("provider_message_id", String(200), nullable=True),
    Column("error", Text, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow),
    PrimaryKeyConstraint("edition_id", "subscriber_id"),
    Index("ix_deliveries_edition_id_state", "edition_id", "state"),
    # Erasing a subscriber cascades here; without this index PostgreSQL scans the table.
    Index("ix_deliveries_subscriber_id", "subscriber_id"),
)

# The ledger before migration 0002 (one row per reader and post): kept for old editions, read, not written.
received_posts = Table(
    "received_posts",
    metadata,
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("post_id", Text, nullable=False),
    Column("edition_id", String(64), nullable=True),
    Column("received_at", UTCDateTime, nullable=False, default=utcnow),
    PrimaryKeyConstraint("subscriber_id", "post_id"),
)

# The ledger since migration 0002: the posts each email (category set, or a variant of it that
# leaves out posts some readers already had) of an edition carried. A reader received the posts
# of the email their sent or in-flight delivery row names: O(sets x posts) rows, not O(readers).
edition_posts = Table(
    "edition_posts",
    metadata,
    Column(
        "edition_id",
        String(64),
        ForeignKey("editions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("category_set", Text, nullable=False),
    Column("post_id", Text, nullable=False),
    PrimaryKeyConstraint("edition_id", "category_set", "post_id"),
    Index("ix_edition_posts_post_id", "post_id"),
)

# Webhook events from the provider, keyed by the provider's own id so a replay is a no-op.
provider_events = Table(
    "provider_events",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("email", String(320), nullable=True),
    Column("at", UTCDateTime, nullable=True),
    Column("payload", Text, nullable=False, default="{}"),
    Column("processed_at", UTCDateTime, nullable=True),
)


class DatabaseBusyError(StoreError):
    """Another process holds the database's write lock: nothing was changed; trying again works."""

    retryable = True


class NoDatabaseError(StoreError):
    """A read-only command found no database where one is configured (and must not create one)."""


def _database_problem(exc: DBAPIError, url: str) -> StoreError:
    """A driver error the user can act on, as one line that says what to do."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc).splitlines()[0]
    low = reason.lower()
    if "locked" in low or "busy" in low:
        return DatabaseBusyError(
            f"the database {url} is locked by another writer (another digest command, or a tool "
            f"holding it open) and stayed locked for {SQLITE_BUSY_TIMEOUT_MS // 1000} s; nothing "
            "was changed. Try again in a minute."
        )
    if "readonly" in low or "read-only" in low or "read only" in low:
        return StoreError(
            f"the database {url} is read-only ({reason}); give this user write access to the file "
            "and its folder (SQLite writes -wal and -shm files beside it), or point [database] url "
            "or $DIGEST_DATABASE_URL at a writable one."
        )
    if "not a database" in low or "malformed" in low or "encrypted" in low:
        return StoreError(
            f"{url} is not a digest database ({reason}); point [database] url or "
            "$DIGEST_DATABASE_URL at the right file, or at a new file name to start an empty one."
        )
    if "unable to open" in low:
        return StoreError(
            f"cannot open the database {url} ({reason}); check that its folder exists and is writable."
        )
    return StoreError(
        f"cannot open the database {url}: {reason}. Check [database] url in config.toml or "
        "$DIGEST_DATABASE_URL, and that the server is running; then try again."
    )


class Store:
    """An open database: the engine, and sessions that commit on success and roll back on error.

    A driver error the user can act on (locked, read-only, not a database, server gone) leaves
    here as a ``StoreError`` that says what to do; integrity errors pass through for callers
    that race on purpose (two subscribes of one new address).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def shown_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: ``with store.session() as s: s.execute(...)``; commit unless it raises."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise _database_problem(exc, self.shown_url) from exc

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A short read-only transaction that does not take SQLite's write lock."""
        try:
            with self.engine.connect() as connection:
                connection.execution_options(digest_read_only=True)
                with connection.begin():
                    yield connection
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise _database_problem(exc, self.shown_url) from exc

    def dispose(self) -> None:
        """Close every pooled connection (tests, and before a process forks)."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"


def sqlite_path(config: Config, url: str | None = None) -> Path | None:
    """The file a SQLite URL names, resolved against the config folder; None for memory or not SQLite."""
    raw = url or config.database_url
    try:
        parsed = make_url(raw)
    except ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    return path if path.is_absolute() else config.path(path)


def _sqlite_url(config: Config, url: str, *, create: bool) -> str:
    """Resolve a relative SQLite file against the config folder; refuse a folder that is not there.

    The folder is never created: a typo in the URL must be an error, not a new empty database
    that makes every command look like it worked on nobody.
    """
    parsed = make_url(url)
    path = sqlite_path(config, url)
    if path is None:
        return url
    shown = str(path)
    if path.is_dir():
        raise StoreError(
            f"the database path {shown} is a folder; name a file in it, e.g. sqlite:///{path / 'digest.db'}."
        )
    if not path.parent.is_dir():
        raise StoreError(
            f"the folder {path.parent} for the database {path.name} does not exist; create it "
            f"(mkdir -p {path.parent}) or fix [database] url / ${DATABASE_ENV}."
        )
    if not create and not path.exists():
        raise NoDatabaseError(
            f"there is no database at {shown} yet, so there is nothing to show; it is created by "
            "`digest subscribers add` or `digest subscribers import` (or point [database] url / "
            f"${DATABASE_ENV} at yours)."
        )
    return parsed.set(database=shown).render_as_string(hide_password=False)


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys and a busy timeout on every connection; real BEGIN so savepoints work.

    pysqlite starts transactions lazily and mishandles SAVEPOINT; the recipe from SQLAlchemy's
    docs turns that off and emits BEGIN IMMEDIATE ourselves, which also takes the write lock up
    front so two writers queue on busy_timeout instead of failing with "database is locked".
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            # 2 MB of page cache per connection (SQLite's own default). A send reads each page
            # about once, in (category set, id) order, and the OS caches the file anyway: 32 MB
            # bought no measurable speed at a million readers, and each connection's cache grew
            # with the list (the send's memory from 124 MB at 10k readers to 190 MB at 1M).
            cursor.execute("PRAGMA cache_size = -2000")
            # A send writes ~2,000 scattered index pages per batch; checkpointing (and its fsync)
            # every 64 MB of WAL rather than every 4 MB cut a million-reader send by a fifth.
            cursor.execute("PRAGMA wal_autocheckpoint = 16000")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get("digest_read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_store_engine(config: Config, url: str | None = None, *, create: bool = True) -> Engine:
    """An engine for the configured database, set up for our use (no migrations run here).

    ``create=False`` (read-only commands) raises ``NoDatabaseError`` instead of starting a new
    SQLite file.
    """
    raw = url or config.database_url
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise StoreError(
            f"database url {raw!r} is not a valid SQLAlchemy URL; use e.g. sqlite:///digest.db "
            "or postgresql+psycopg://user:password@host/dbname."
        ) from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        raw = _sqlite_url(config, raw, create=create)
        if not parsed.database or parsed.database == ":memory:":
            # One shared connection, or every checkout would see a fresh empty database.
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    elif parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            raw = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        kwargs.update(pool_pre_ping=True)
    try:
        engine = create_engine(raw, **kwargs)
    except NoSuchModuleError:
        raise StoreError(
            f"database url {parsed.render_as_string(hide_password=True)!r}: no SQLAlchemy driver "
            "for it is installed; for PostgreSQL run: pip install 'digest[postgres]'."
        ) from None
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"the database driver {exc.name!r} is not installed; for PostgreSQL run: "
            "pip install 'digest[postgres]'."
        ) from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def alembic_config(connection: Any = None) -> Any:
    """Alembic's config built in code: the scripts ship inside the package, no alembic.ini."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` in place (idempotent)."""
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def open_store(config: Config, *, url: str | None = None, create: bool = True) -> Store:
    """Open the database and migrate it to the newest schema.

    ``create=True`` (commands that write: add, import, send, serve) starts a new SQLite file
    when none is there; ``create=False`` (list, show, export, categories, status) raises
    ``NoDatabaseError`` instead, so looking around in an empty folder leaves nothing behind.
    """
    engine = create_store_engine(config, url, create=create)
    try:
        migrate(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise _database_problem(exc, engine.url.render_as_string(hide_password=True)) from None
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)
