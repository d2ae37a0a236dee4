"""What the preview page can do besides showing: look up a subscriber, send a test email.

Both go through the same modules as the real thing (the store, the configured sender), so the
editor previews and tests exactly what readers will get.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from digest.config import Config
from digest.errors import DigestError
from digest.model import RenderedEdition

if TYPE_CHECKING:
    from digest.send import OutgoingMessage
    from digest.store import Store

TEST_PREFIX = "[TEST] "


class LookupError_(DigestError):
    """The subscriber picker could not find the address (or there is no store to ask)."""


def subscriber_categories(
    config: Config, email: str, store: Store | None = None
) -> tuple[str, tuple[str, ...]]:
    """(normalised address, category display names) of a subscriber, from the store.

    An empty tuple of categories means the reader takes every category. Raises a DigestError
    with a message for the page when the address is unknown.
    """
    address, names, _name = subscriber_lookup(config, email, store)
    return address, names


def subscriber_lookup(
    config: Config, email: str, store: Store | None = None
) -> tuple[str, tuple[str, ...], str]:
    """As ``subscriber_categories``, plus the reader's name (for their per-reader fields)."""
    from digest import subscribers
    from digest.store import open_store

    own = store is None
    store = store if store is not None else open_store(config)
    try:
        found = subscribers.get(store, email)
    finally:
        if own:
            store.dispose()
    if found is None:
        raise LookupError_(
            f"No subscriber {email.strip()!r} in the database ({config.database_url.split('?')[0]}); "
            "check the address, or pick categories instead."
        )
    from digest.pipeline import display_names

    return found.email, tuple(display_names(config, found.categories)), found.name


def send_test(
    config: Config,
    rendered: RenderedEdition,
    address: str,
    *,
    categories: Sequence[str] = (),
    as_of: datetime | None = None,
    same_posts: bool = True,
    sender_name: str | None = None,
) -> str:
    """Send the edition shown to one address through the configured sender; return a receipt.

    Goes through ``digest.weekly.send_test`` (the path of `digest send --test`) when the
    page shows the config's own posts folder; with a --posts override that function would read
    other posts, so the message is built here from the rendered edition the page shows, with the
    same personal links, List-Unsubscribe headers and "[TEST]" subject.
    """
    address = address.strip()
    if "@" not in address or " " in address:
        raise LookupError_(f"{address!r} is not an email address; type the address to send the test to.")
    from digest.send import make_sender

    sender = make_sender(config, sender_name)
    try:
        if same_posts and as_of is not None:
            from digest.weekly import send_test

            message_id = send_test(
                config, address=address, categories=list(categories), as_of=as_of, sender=sender
            )
        else:
            message_id = sender.send_one(_message(config, rendered, address, categories))
    finally:
        sender.close()
    where = f" (outbox {config.path(config.sender.outbox)})" if sender.name == "outbox" else ""
    return f"Sent a test to {address} via {sender.name}{where}; message id {message_id}."


def _message(
    config: Config, rendered: RenderedEdition, address: str, categories: Sequence[str]
) -> OutgoingMessage:
    """The test message built from an already rendered edition (see send_test): the reader's
    links and headers from digest.send.personalize, as every other message gets them."""
    from digest.model import Subscriber
    from digest.send import BatchMessage
    from digest.send.personalize import PersonalLinks

    recipient = PersonalLinks(config).recipient(
        Subscriber(id=0, email=address, status="active", categories=())
    )
    batch = BatchMessage(
        subject=TEST_PREFIX + rendered.subject,
        html=rendered.html,
        text=rendered.text,
        recipients=[recipient],
        categories=("digest-test",),
        custom_args={"test": "1", "categories": ",".join(categories)},
    )
    return batch.personalise(recipient)
