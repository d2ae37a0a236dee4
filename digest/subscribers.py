"""The subscriber service: the one API the CLI, the web app and the sender use to read and change readers.

Every change writes the subscriber row, its categories and a ``subscription_events`` row in one
transaction, so consent can always be shown and nothing is ever half-written. Input is treated
as hostile: addresses go through email-validator (no DNS), names lose control characters, and
categories must be ones config.toml defines. Every refusal is a ``StoreError`` that names the
address, category or line and says what to do.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, exists, func, insert, literal, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.config import Config, category_key
from digest.errors import StoreError
from digest.model import Subscriber
from digest.store import (
    SUBSCRIBER_STATUSES,
    Store,
    provider_events,
    subscriber_categories,
    subscribers,
    subscription_events,
    utcnow,
)

EMAIL_MAX = 254  # RFC 5321 path limit, minus the angle brackets
LOCAL_PART_MAX = 64
NAME_MAX = 100
SOURCE_MAX = 32
STATUSES = SUBSCRIBER_STATUSES
# Outcomes of subscribe(): what happened, so the caller can decide which email to send.
CREATED, ALREADY_ACTIVE, RESUBSCRIBED, PENDING = "created", "already_active", "resubscribed", "pending"
_SEP = "\x1f"  # joins category keys inside one SQL row; cannot occur in a key from TOML by accident
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
# set_status() accepts the status or the verb; each maps to (status, event kind).
_STATUS_CHANGES = {
    "paused": ("paused", "pause"),
    "pause": ("paused", "pause"),
    "active": ("active", "resume"),
    "resume": ("active", "resume"),
    "bounced": ("bounced", "bounce"),
    "bounce": ("bounced", "bounce"),
    "complained": ("complained", "complaint"),
    "complaint": ("complained", "complaint"),
    "unsubscribed": ("unsubscribed", "unsubscribe"),
    "unsubscribe": ("unsubscribed", "unsubscribe"),
}
_ENDED = ("unsubscribed", "bounced", "complained")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# ---------------------------------------------------------------------------------------------
# Input checks


def _show(raw: object, limit: int = 60) -> str:
    """A value as it may appear in a message: repr'd (so CR/LF show) and cut short."""
    text = repr(raw)
    return text if len(text) <= limit else text[: limit - 3] + "...'"


def normalise_email(raw: str) -> str:
    """The address as stored: local part as given, domain lowercased and IDNA; or StoreError why not."""
    if not isinstance(raw, str):
        raise StoreError(f"email address {_show(raw)} is not text.")
    if "\r" in raw or "\n" in raw:
        raise StoreError(f"{_show(raw)} is not a valid email address: it contains a line break.")
    text = raw.strip()
    if not text:
        raise StoreError("the email address is empty; give an address such as reader@example.com.")
    if len(text) > EMAIL_MAX:
        raise StoreError(
            f"{_show(text)} is not a valid email address: it is {len(text)} characters long "
            f"(the limit is {EMAIL_MAX})."
        )
    try:
        valid = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise StoreError(f"{_show(text)} is not a valid email address: {exc}") from None
    local = valid.local_part
    if len(local.encode("utf-8")) > LOCAL_PART_MAX:
        raise StoreError(
            f"{_show(text)} is not a valid email address: the part before the @ is longer than "
            f"{LOCAL_PART_MAX} bytes."
        )
    address = f"{local}@{valid.ascii_domain}"
    if len(address) > EMAIL_MAX:
        raise StoreError(
            f"{_show(text)} is not a valid email address: with its domain IDNA-encoded it is "
            f"{len(address)} characters long (the limit is {EMAIL_MAX})."
        )
    return address


def email_key(address: str) -> str:
    """What uniqueness and look-ups use: the normalised address, lowercased."""
    return address.lower()


def clean_name(raw: str | None) -> str:
    """A display name safe for headers and pages: no control, line-break or bidi characters."""
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise StoreError(f"name {_show(raw)} is not text.")
    out: list[str] = []
    for ch in raw:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif cat in ("Cs", "Co", "Cn") or ch in _BIDI_CONTROLS:
            continue
        else:
            out.append(ch)
    name = " ".join("".join(out).split())
    if len(name) > NAME_MAX:
        raise StoreError(
            f"name {_show(name)} is {len(name)} characters long; the limit is {NAME_MAX}. Shorten it."
        )
    return name


def _check_source(source: str) -> str:
    if not isinstance(source, str) or not source or len(source) > SOURCE_MAX:
        raise StoreError(f"source {_show(source)} must be a short word such as 'cli' or 'web'.")
    return source


def _category_list(config: Config) -> str:
    return ", ".join(c.name for c in config.categories)


def _require_categories(config: Config) -> None:
    if not config.categories:
        where = config.source or "config.toml"
        raise StoreError(
            f"{where} defines no categories, so readers have nothing to choose; add some first, "
            'e.g.\n\n[[categories]]\nname = "News"\ndescription = "What happened this week"\n'
        )


def split_categories(config: Config, text: str) -> list[str]:
    """Split 'A,B', 'A;B', 'A|B' or 'A B' into names; a name with spaces that config knows stays whole."""
    names: list[str] = []
    for token in re.split(r"[,;|]", text or ""):
        token = token.strip()
        if not token:
            continue
        if config.find_category(token) is None and len(token.split()) > 1:
            parts = token.split()
            if all(config.find_category(p) is not None for p in parts):
                names.extend(parts)
                continue
        names.append(token)
    return names


def resolve_categories(config: Config, categories: Iterable[str] | str) -> tuple[str, ...]:
    """Category names (any case/spacing) to sorted keys; unknown or none at all is refused."""
    _require_categories(config)
    if isinstance(categories, str):
        categories = split_categories(config, categories)
    keys: set[str] = set()
    for name in categories:
        if not isinstance(name, str):
            raise StoreError(f"category {_show(name)} is not text.")
        if not name.strip():
            continue
        found = config.find_category(name)
        if found is None:
            raise StoreError(
                f"unknown category {_show(name.strip())}; the categories in config.toml are: "
                f"{_category_list(config)}."
            )
        keys.add(found.key)
    if not keys:
        raise StoreError(f"choose at least one category: {_category_list(config)}.")
    return tuple(sorted(keys))


# ---------------------------------------------------------------------------------------------
# Row helpers (inside one session)


def _row(session: Session, address: str, *, lock: bool = False) -> Row[Any] | None:
    query = select(subscribers).where(subscribers.c.email_key == email_key(address))
    if lock:
        query = query.with_for_update()
    return session.execute(query).one_or_none()


def _require(session: Session, address: str) -> Row[Any]:
    row = _row(session, address, lock=True)
    if row is None:
        raise StoreError(f"no subscriber with the address {address}; check the spelling or add them.")
    return row


def _categories_of(session: Session, subscriber_id: int) -> tuple[str, ...]:
    query = (
        select(subscriber_categories.c.category_key)
        .where(subscriber_categories.c.subscriber_id == subscriber_id)
        .order_by(subscriber_categories.c.category_key)
    )
    return tuple(session.execute(query).scalars())


def category_set_label(keys: Iterable[str]) -> str:
    """The canonical form of a set of category keys: sorted, joined with ", " ("" for none).

    What ``subscribers.category_set`` holds and ``deliveries.category_set`` names for a plain
    email of that set, so a send can group readers by the column without re-reading their keys.
    """
    return ", ".join(sorted(set(keys)))


def category_set_keys(label: str) -> tuple[str, ...]:
    """``category_set_label`` undone: the sorted keys of a stored category set."""
    return tuple(label.split(", ")) if label else ()


def _set_categories(session: Session, subscriber_id: int, keys: Sequence[str]) -> None:
    """Replace a reader's categories and their denormalised ``category_set``, in the caller's transaction.

    The only writer of ``subscriber_categories``: every path that changes a reader's categories
    comes through here, so the column the sender streams by cannot drift from the rows.
    """
    session.execute(
        delete(subscriber_categories).where(subscriber_categories.c.subscriber_id == subscriber_id)
    )
    if keys:
        session.execute(
            insert(subscriber_categories),
            [{"subscriber_id": subscriber_id, "category_key": k} for k in keys],
        )
    session.execute(
        update(subscribers)
        .where(subscribers.c.id == subscriber_id)
        .values(category_set=category_set_label(keys))
    )


def _log(
    session: Session,
    subscriber_id: int,
    kind: str,
    source: str,
    detail: dict[str, Any] | None = None,
    at: Any = None,
) -> None:
    session.execute(
        insert(subscription_events).values(
            subscriber_id=subscriber_id,
            kind=kind,
            detail=json.dumps(detail or {}, sort_keys=True, ensure_ascii=False, default=str),
            source=source,
            at=at or utcnow(),
        )
    )


def _update(session: Session, subscriber_id: int, **values: Any) -> None:
    values.setdefault("updated_at", utcnow())
    session.execute(update(subscribers).where(subscribers.c.id == subscriber_id).values(**values))


def _load(session: Session, subscriber_id: int) -> Subscriber:
    row = session.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).one()
    return _model(row, _categories_of(session, subscriber_id))


def _model(row: Any, categories: tuple[str, ...]) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        status=row.status,
        categories=categories,
        name=row.name,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
    )


# ---------------------------------------------------------------------------------------------
# Changes


def subscribe(
    store: Store,
    config: Config,
    email: str,
    categories: Iterable[str] | str,
    *,
    name: str = "",
    source: str = "cli",
    confirmed: bool = False,
) -> tuple[Subscriber, str]:
    """Add or re-subscribe a reader; returns the subscriber and what happened.

    ``confirmed=False`` (the web form) never changes an active subscriber, so a stranger cannot
    alter someone's categories: new, pending and ended addresses become ``pending`` with the
    categories asked for, and the outcome is ``"pending"`` (send a confirmation email) or
    ``"already_active"``. ``confirmed=True`` (an admin, the CLI) makes them active at once:
    ``"created"`` for a new (or never-confirmed) address, ``"resubscribed"`` for one that was
    active before,
    ``"already_active"`` (categories and name updated) for an active one.
    """
    address = normalise_email(email)
    keys = resolve_categories(config, categories)
    clean = clean_name(name)
    _check_source(source)
    for attempt in (1, 2):
        try:
            with store.session() as session:
                return _subscribe(session, address, keys, clean, source, confirmed)
        except IntegrityError:
            # Two requests for one new address raced; the second now finds the first's row.
            if attempt == 2:
                raise StoreError(f"could not subscribe {address}: it is being changed; try again.") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _insert(
    session: Session, address: str, name: str, status: str, keys: tuple[str, ...], now: datetime
) -> int:
    """A new reader row and its categories; the timestamps follow from the status."""
    sid: int = session.execute(
        insert(subscribers).values(
            email=address,
            email_key=email_key(address),
            name=name,
            status=status,
            created_at=now,
            updated_at=now,
            confirmed_at=now if status in ("active", "paused") else None,
            unsubscribed_at=now if status == "unsubscribed" else None,
        )
    ).inserted_primary_key[0]  # type: ignore[attr-defined]
    _set_categories(session, sid, keys)
    return sid


def _subscribe(
    session: Session, address: str, keys: tuple[str, ...], name: str, source: str, confirmed: bool
) -> tuple[Subscriber, str]:
    now = utcnow()
    row = _row(session, address, lock=True)
    if row is None:
        status = "active" if confirmed else "pending"
        sid = _insert(session, address, name, status, keys, now)
        _log(
            session,
            sid,
            "subscribe",
            source,
            {"categories": list(keys), "status": status, "confirmed": confirmed},
            now,
        )
        return _load(session, sid), CREATED if confirmed else PENDING

    sid = row.id
    old_keys = _categories_of(session, sid)
    if row.status == "active":
        if not confirmed:
            return _model(row, old_keys), ALREADY_ACTIVE
        changes: dict[str, Any] = {}
        if keys != old_keys:
            _set_categories(session, sid, keys)
            changes["categories"] = {"from": list(old_keys), "to": list(keys)}
        if name and name != row.name:
            _update(session, sid, name=name, updated_at=now)
            changes["name"] = True
        if changes:
            _log(session, sid, "categories" if "categories" in changes else "subscribe", source, changes, now)
        return _load(session, sid), ALREADY_ACTIVE

    values: dict[str, Any] = {"updated_at": now}
    if name:
        values["name"] = name
    if confirmed:
        values.update(status="active", confirmed_at=now, unsubscribed_at=None)
        # Someone who was active before comes back; a never-confirmed pending row is new.
        outcome = RESUBSCRIBED if row.confirmed_at is not None or row.status != "pending" else CREATED
    else:
        values.update(status="pending")
        outcome = PENDING
    _update(session, sid, **values)
    _set_categories(session, sid, keys)
    _log(
        session,
        sid,
        "subscribe",
        source,
        {
            "categories": list(keys),
            "from": row.status,
            "status": values["status"],
            "confirmed": confirmed,
        },
        now,
    )
    return _load(session, sid), outcome


def confirm(store: Store, email: str, *, source: str) -> Subscriber:
    """Double opt-in: a pending reader clicked the link. Clicking twice is harmless."""
    address = normalise_email(email)
    _check_source(source)
    with store.session() as session:
        row = _require(session, address)
        if row.status == "active":
            return _load(session, row.id)
        if row.status != "pending":
            raise StoreError(
                f"{address} is {row.status}, not waiting for confirmation; subscribe again to "
                "get a new confirmation link."
            )
        now = utcnow()
        _update(session, row.id, status="active", confirmed_at=now, unsubscribed_at=None, updated_at=now)
        _log(session, row.id, "confirm", source, {"categories": list(_categories_of(session, row.id))}, now)
        return _load(session, row.id)


def set_categories(
    store: Store, config: Config, email: str, categories: Iterable[str] | str, *, source: str
) -> Subscriber:
    """Replace a reader's categories (the preference centre). To stop all mail, unsubscribe."""
    address = normalise_email(email)
    keys = resolve_categories(config, categories)
    _check_source(source)
    with store.session() as session:
        row = _require(session, address)
        old = _categories_of(session, row.id)
        if old != keys:
            _set_categories(session, row.id, keys)
            _update(session, row.id)
            _log(session, row.id, "categories", source, {"from": list(old), "to": list(keys)})
        return _load(session, row.id)


def set_status(
    store: Store, email: str, status: str, *, source: str, detail: dict[str, Any] | None = None
) -> Subscriber:
    """Pause, resume, or mark bounced/complained (webhooks); ``detail`` goes into the log as is.

    Resuming only works from paused: a pending reader must confirm, and an unsubscribed,
    bounced or complained one must subscribe again (consent is not restored by a flag).
    """
    address = normalise_email(email)
    _check_source(source)
    change = _STATUS_CHANGES.get(str(status).strip().lower())
    if change is None:
        raise StoreError(
            f"cannot set {address} to {_show(status)}; use one of: paused, active (resume), "
            "bounced, complained, unsubscribed."
        )
    new, kind = change
    if new == "unsubscribed":
        return unsubscribe(store, address, source=source, detail=detail)
    with store.session() as session:
        row = _require(session, address)
        old = row.status
        if new in ("paused", "active"):
            if old == new:
                return _load(session, row.id)
            allowed_from = "active" if new == "paused" else "paused"
            if old != allowed_from:
                hint = "confirm first" if old == "pending" else "subscribe again"
                raise StoreError(f"cannot {kind} {address}: it is {old}, not {allowed_from}; {hint}.")
        # Bounces and complaints are recorded every time they arrive, even when already set.
        now = utcnow()
        if old != new:
            _update(session, row.id, status=new, updated_at=now)
        _log(session, row.id, kind, source, {"from": old, **(detail or {})}, now)
        return _load(session, row.id)


def unsubscribe(store: Store, email: str, *, source: str, detail: dict[str, Any] | None = None) -> Subscriber:
    """Stop all mail, keeping the row and its consent log. Unsubscribing twice is harmless."""
    address = normalise_email(email)
    _check_source(source)
    with store.session() as session:
        row = _require(session, address)
        if row.status == "unsubscribed":
            return _load(session, row.id)
        now = utcnow()
        _update(session, row.id, status="unsubscribed", unsubscribed_at=now, updated_at=now)
        _log(session, row.id, "unsubscribe", source, {"from": row.status, **(detail or {})}, now)
        return _load(session, row.id)


def remove(store: Store, email: str) -> None:
    """Erase a reader completely (GDPR): row, categories, consent log, deliveries, ledger, webhooks."""
    address = normalise_email(email)
    key = email_key(address)
    with store.session() as session:
        row = _require(session, address)
        # Cascades take categories, events, deliveries and received_posts with it.
        session.execute(delete(subscribers).where(subscribers.c.id == row.id))
        session.execute(delete(provider_events).where(func.lower(provider_events.c.email) == key))


# ---------------------------------------------------------------------------------------------
# Reads


def get(store: Store, email: str) -> Subscriber | None:
    """The reader with this address (any case), or None."""
    address = normalise_email(email)
    with store.session() as session:
        row = _row(session, address)
        return None if row is None else _model(row, _categories_of(session, row.id))


def _check_statuses(statuses: Iterable[str] | None) -> tuple[str, ...] | None:
    if statuses is None:
        return None
    if isinstance(statuses, str):
        statuses = (statuses,)
    wanted = tuple(statuses)
    for status in wanted:
        if status not in STATUSES:
            raise StoreError(f"unknown status {_show(status)}; use one of: {', '.join(STATUSES)}.")
    return wanted


def _aggregate(store: Store, column: Any) -> Any:
    if store.dialect == "postgresql":
        return func.string_agg(column, literal(_SEP))
    return func.group_concat(column, literal(_SEP))


def iter_subscribers(
    store: Store,
    *,
    statuses: Iterable[str] | None = ("active",),
    categories: Iterable[str] | None = None,
    batch_size: int = 1000,
) -> Iterator[Subscriber]:
    """Stream readers in id order, one query (and one short transaction) per page.

    Keyset pagination (``id > last``) keeps every page as cheap as the first over a million
    rows, and no transaction stays open while the caller works. ``statuses=None`` means all;
    ``categories`` keeps readers with any of them, but each Subscriber carries all its keys.
    """
    wanted = _check_statuses(statuses)
    keys = None if categories is None else sorted({category_key(c) for c in categories})
    if batch_size < 1:
        raise StoreError(f"batch_size must be at least 1 (it is {batch_size}).")
    sc = subscriber_categories
    cats = (
        select(_aggregate(store, sc.c.category_key))
        .where(sc.c.subscriber_id == subscribers.c.id)
        .scalar_subquery()
    )
    base = select(
        subscribers.c.id,
        subscribers.c.email,
        subscribers.c.status,
        subscribers.c.name,
        subscribers.c.created_at,
        subscribers.c.confirmed_at,
        cats.label("cats"),
    )
    if wanted is not None:
        base = base.where(subscribers.c.status.in_(wanted))
    base = base.order_by(subscribers.c.id).limit(batch_size)
    last = 0
    while True:
        query = base.where(subscribers.c.id > last)
        if keys is not None:
            # The repeated bound on subscriber_id lets PostgreSQL start the category index scan
            # at this page instead of at the first reader (which made every page slower).
            query = query.where(
                exists().where(
                    sc.c.subscriber_id == subscribers.c.id,
                    sc.c.subscriber_id > last,
                    sc.c.category_key.in_(keys),
                )
            )
        with store.reading() as connection:
            rows = connection.execute(query).all()
        # Plain tuple unpacking: attribute access on a million Rows costs seconds.
        for sid, email, status, name, created_at, confirmed_at, joined in rows:
            yield Subscriber(
                sid,
                email,
                status,
                tuple(sorted(joined.split(_SEP))) if joined else (),
                name,
                created_at,
                confirmed_at,
            )
        if len(rows) < batch_size:
            return
        last = rows[-1][0]


def iter_send_rows(
    store: Store,
    *,
    statuses: Iterable[str] = ("active",),
    page: int = 10_000,
) -> Iterator[tuple[int, str, str, str]]:
    """Stream (id, email, name, category_set) ordered by (category_set, id): what a send reads.

    Each category set's readers arrive together, so the sender renders a set once, fills whole
    batches and holds no buffer. Keyset pages on (category_set, id) walk the index on
    (status, category_set, id, email, name): one covering-index query per page, plain tuples (a
    million readers must not mean a million objects or a million Rows).
    """
    wanted = _check_statuses(statuses) or STATUSES
    if page < 1:
        raise StoreError(f"page must be at least 1 (it is {page}).")
    pg = store.dialect == "postgresql"
    q = "%s" if pg else "?"
    where = f"status IN ({', '.join([q] * len(wanted))})"
    head = f"SELECT id, email, name, category_set FROM subscribers WHERE {where}"
    tail = f" ORDER BY category_set, id LIMIT {int(page)}"
    first_sql = head + tail
    next_sql = head + f" AND (category_set, id) > ({q}, {q})" + tail
    params: tuple[Any, ...] = tuple(wanted)
    sql = first_sql
    while True:
        with store.reading() as connection:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
            finally:
                cursor.close()
        yield from rows
        if len(rows) < page:
            return
        last = rows[-1]
        sql = next_sql
        params = (*wanted, last[3], last[0])


def count_by_category(store: Store, *, statuses: Iterable[str] = ("active",)) -> dict[str, int]:
    """How many readers (active by default) each category key has."""
    wanted = _check_statuses(statuses) or STATUSES
    sc = subscriber_categories
    query = (
        select(sc.c.category_key, func.count())
        .join(subscribers, subscribers.c.id == sc.c.subscriber_id)
        .where(subscribers.c.status.in_(wanted))
        .group_by(sc.c.category_key)
        .order_by(sc.c.category_key)
    )
    with store.reading() as connection:
        return {key: count for key, count in connection.execute(query)}


def count_by_status(store: Store) -> dict[str, int]:
    """How many readers have each status (every status present, zero if none)."""
    query = select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
    with store.reading() as connection:
        found = {status: count for status, count in connection.execute(query)}
    return {status: found.get(status, 0) for status in STATUSES}


def events_for(store: Store, email: str) -> list[dict[str, Any]]:
    """The consent log for one address, oldest first: kind, source, at (aware UTC), detail."""
    address = normalise_email(email)
    e = subscription_events
    query = (
        select(e.c.id, e.c.kind, e.c.source, e.c.at, e.c.detail)
        .join(subscribers, subscribers.c.id == e.c.subscriber_id)
        .where(subscribers.c.email_key == email_key(address))
        .order_by(e.c.id)
    )
    with store.reading() as connection:
        return [
            {"id": r.id, "kind": r.kind, "source": r.source, "at": r.at, "detail": json.loads(r.detail)}
            for r in connection.execute(query)
        ]


# ---------------------------------------------------------------------------------------------
# CSV


CSV_COLUMNS = ("email", "name", "categories", "status")


@dataclass(frozen=True)
class ImportProblem:
    line: int
    email: str
    message: str

    def __str__(self) -> str:
        if self.email and self.email not in self.message:
            return f"line {self.line}: {self.email}: {self.message}"
        return f"line {self.line}: {self.message}"


@dataclass
class ImportReport:
    """What an import did: counts, and each refused row with its line number."""

    path: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[ImportProblem] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.created + self.updated + self.unchanged + len(self.problems)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return (
            f"{self.path}: {self.rows} rows: {self.created} added, {self.updated} updated, "
            f"{self.unchanged} unchanged, {len(self.problems)} refused."
        )


def import_csv(store: Store, config: Config, path: str | Path, *, source: str = "import") -> ImportReport:
    """Add or update readers from a CSV (email,name,categories,status), one transaction per row.

    A bad row is reported with its line number and skipped; the rest go in. An existing reader
    gets the name, categories and status given (blank cells leave them alone), except that an
    import never re-subscribes someone who unsubscribed, bounced or complained.
    """
    _require_categories(config)
    _check_source(source)
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise StoreError(f"{path}: file not found.") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read it ({exc.strerror}).") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise StoreError(f"{path}: line {line} is not UTF-8 text; save the file as UTF-8 CSV.") from None
    report = ImportReport(path=str(path))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise StoreError(
            f"{path}: the file is empty; the first line should be: email,name,categories,status"
        ) from None
    except csv.Error as exc:
        raise StoreError(f"{path}: line 1 is not valid CSV ({exc}).") from None
    if "email" not in header:
        raise StoreError(
            f"{path}: line 1 has no 'email' column (found: {', '.join(header) or 'nothing'}); "
            "the first line should be: email,name,categories,status"
        )
    index = {name: header.index(name) for name in CSV_COLUMNS if name in header}
    line = reader.line_num
    while True:
        start = line + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line = reader.line_num
            report.problems.append(ImportProblem(start, "", f"not valid CSV ({exc})"))
            continue
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue

        def cell(name: str, cells: list[str] = cells) -> str:
            i = index.get(name)
            return cells[i] if i is not None and i < len(cells) else ""

        raw_email = cell("email")
        try:
            outcome = _import_row(
                store, config, raw_email, cell("name"), cell("categories"), cell("status"), source
            )
        except StoreError as exc:
            report.problems.append(ImportProblem(start, raw_email.strip()[:EMAIL_MAX], str(exc)))
            continue
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def _import_row(
    store: Store, config: Config, raw_email: str, raw_name: str, raw_cats: str, raw_status: str, source: str
) -> str:
    address = normalise_email(raw_email)
    if raw_name.startswith("'") and raw_name[1:2] in _FORMULA_START:
        raw_name = raw_name[1:]  # undo export's spreadsheet-formula guard
    name = clean_name(raw_name)
    status = raw_status.strip().lower()
    if status and status not in STATUSES:
        raise StoreError(f"{address}: unknown status {_show(status)}; use one of: {', '.join(STATUSES)}.")
    keys = resolve_categories(config, raw_cats) if raw_cats.strip() else None
    now = utcnow()
    with store.session() as session:
        row = _row(session, address, lock=True)
        if row is None:
            if keys is None:
                raise StoreError(f"{address}: no categories given; use some of: {_category_list(config)}.")
            status = status or "active"
            sid = _insert(session, address, name, status, keys, now)
            _log(session, sid, "import", source, {"status": status, "categories": list(keys)}, now)
            return "created"
        changes: dict[str, Any] = {}
        values: dict[str, Any] = {}
        if status and status != row.status:
            if row.status in _ENDED and status in ("active", "pending", "paused"):
                raise StoreError(
                    f"{address} is {row.status}; an import does not subscribe them again "
                    "(they have to opt in themselves)."
                )
            values["status"] = status
            if status == "unsubscribed":
                values["unsubscribed_at"] = now
            if status == "active" and row.confirmed_at is None:
                values["confirmed_at"] = now
            changes["status"] = {"from": row.status, "to": status}
        if name and name != row.name:
            values["name"] = name
            changes["name"] = True
        old = _categories_of(session, row.id)
        if keys is not None and keys != old:
            _set_categories(session, row.id, keys)
            changes["categories"] = {"from": list(old), "to": list(keys)}
        if not changes:
            return "unchanged"
        _update(session, row.id, updated_at=now, **values)
        _log(session, row.id, "import", source, changes, now)
        return "updated"


def _csv_safe(text: str) -> str:
    """Keep a spreadsheet from running a hostile name as a formula (import undoes this)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_row(sub: Subscriber) -> list[str]:
    """One reader as a CSV row in CSV_COLUMNS order (categories as keys joined with ';')."""
    return [sub.email, _csv_safe(sub.name), ";".join(sub.categories), sub.status]


def export_csv(
    store: Store,
    out: IO[str],
    *,
    statuses: Iterable[str] | None = None,
    categories: Iterable[str] | None = None,
) -> int:
    """Write every reader (or those with ``statuses``/``categories``) as CSV that import_csv reads back.

    Returns the number of rows written (not counting the header).
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for sub in iter_subscribers(store, statuses=statuses, categories=categories):
        writer.writerow(csv_row(sub))
        count += 1
    return count
