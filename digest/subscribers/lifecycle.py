"""A reader's life: subscribe, confirm, change categories, pause, unsubscribe, erase; and look-ups.

Every change writes the subscriber row, its categories and a ``subscription_events`` row in one
transaction, so consent can always be shown and nothing is ever half-written. A reader's own
choice to leave (unsubscribe, a bounce, a spam report) is never undone behind their back: only
their own confirmation, or an admin's ``force_reason`` kept in the consent log, brings them back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.config import Config
from digest.errors import StoreError
from digest.model import Subscriber
from digest.store import (
    Store,
    provider_events,
    subscriber_categories,
    subscribers,
    subscription_events,
    utcnow,
)
from digest.subscribers.rules import (
    ENDED,
    _show,
    category_set_label,
    check_reason,
    check_source,
    clean_name,
    email_key,
    normalise_email,
    resolve_categories,
)

# Outcomes of subscribe(): what happened, so the caller can decide which email to send.
CREATED, ALREADY_ACTIVE, RESUBSCRIBED, PENDING = "created", "already_active", "resubscribed", "pending"
# How subscribe() treats the categories of a reader who is already there.
REPLACE, ADD = "replace", "add"
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


class ConsentError(StoreError):
    """An admin tried to subscribe someone who left by their own choice, without their new consent."""


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
    categories_mode: str = REPLACE,
    force_reason: str | None = None,
) -> tuple[Subscriber, str]:
    """Add or re-subscribe a reader; returns the subscriber and what happened.

    ``confirmed=False`` (the web form) never changes an active subscriber, so a stranger cannot
    alter someone's categories: new, pending and ended addresses become ``pending`` with the
    categories asked for, and the outcome is ``"pending"`` (send a confirmation email) or
    ``"already_active"``. ``confirmed=True`` (an admin, the CLI) makes them active at once:
    ``"created"`` for a new (or never-confirmed) address, ``"resubscribed"`` for one that was
    active before,
    ``"already_active"`` (categories and name updated) for an active one.

    For a reader already there, ``categories_mode`` says what the categories given do:
    ``"replace"`` their categories, or ``"add"`` to them (nothing is dropped).

    ``confirmed=True`` never overrides a reader's own choice: someone who unsubscribed, bounced,
    complained or paused raises ``ConsentError`` unless ``force_reason`` says how they asked to
    come back (it is kept in the consent log). The web form (``confirmed=False``) may always
    restart double opt-in: the reader's click on the emailed link is their consent.
    """
    if categories_mode not in (REPLACE, ADD):
        raise StoreError(f"categories_mode {_show(categories_mode)} must be 'replace' or 'add'.")
    address = normalise_email(email)
    keys = resolve_categories(config, categories)
    clean = clean_name(name)
    check_source(source)
    reason = check_reason(force_reason) if force_reason is not None else None
    for attempt in (1, 2):
        try:
            with store.session() as session:
                return _subscribe(session, address, keys, clean, source, confirmed, categories_mode, reason)
        except IntegrityError:
            # Two requests for one new address raced; the second now finds the first's row.
            if attempt == 2:
                raise StoreError(f"could not subscribe {address}: it is being changed; try again.") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _insert(
    session: Session, address: str, name: str, status: str, keys: tuple[str, ...], now: datetime
) -> int:
    """A new reader row and its categories; the timestamps follow from the status."""
    sid: int = session.execute(  # type: ignore[attr-defined]
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
    ).inserted_primary_key[0]
    _set_categories(session, sid, keys)
    return sid


def _subscribe(
    session: Session,
    address: str,
    keys: tuple[str, ...],
    name: str,
    source: str,
    confirmed: bool,
    categories_mode: str = REPLACE,
    force_reason: str | None = None,
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
    if categories_mode == ADD:
        keys = tuple(sorted(set(old_keys) | set(keys)))
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

    if confirmed and row.status in (*ENDED, "paused") and force_reason is None:
        raise _consent_refusal(session, row)
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
            **({"forced": True, "reason": force_reason} if force_reason is not None else {}),
        },
        now,
    )
    return _load(session, sid), outcome


_LEFT = {
    "unsubscribed": "unsubscribed",
    "bounced": "was stopped because our emails to it bounced",
    "complained": "marked our email as spam",
    "paused": "paused their emails",
}


def _consent_refusal(session: Session, row: Row[Any]) -> ConsentError:
    """Why an admin may not simply re-add this reader, with when and how they left."""
    last = session.execute(
        select(subscription_events.c.at, subscription_events.c.source)
        .where(subscription_events.c.subscriber_id == row.id)
        .order_by(subscription_events.c.id.desc())
        .limit(1)
    ).first()
    when = f" on {last.at.date().isoformat()} (via {last.source})" if last is not None else ""
    if row.status == "paused":
        how = "they can resume from the preference centre link in any digest"
    else:
        how = "they must subscribe again themselves (the subscribe page emails them a confirmation link)"
    return ConsentError(
        f"{row.email} {_LEFT.get(row.status, row.status)}{when}, so adding them again needs their "
        f'consent: {how}. If they asked you directly, repeat with --force --reason "how they asked"; '
        "the reason is kept in their consent log. Nothing was changed."
    )


def confirm(store: Store, email: str, *, source: str) -> Subscriber:
    """Double opt-in: a pending reader clicked the link. Clicking twice is harmless."""
    address = normalise_email(email)
    check_source(source)
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
    check_source(source)
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
    check_source(source)
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
    check_source(source)
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
        # SQL lower() is ASCII-only on SQLite: also match the address exactly as we sent it.
        pe = provider_events.c.email
        session.execute(delete(provider_events).where(or_(pe.in_((row.email, key)), func.lower(pe) == key)))


# ---------------------------------------------------------------------------------------------
# Reads


def get(store: Store, email: str) -> Subscriber | None:
    """The reader with this address (any case), or None."""
    address = normalise_email(email)
    with store.session() as session:
        row = _row(session, address)
        return None if row is None else _model(row, _categories_of(session, row.id))


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
