"""What the preview page can do besides showing: look up a subscriber, send a test email.

Both go through the same modules as the real thing (the store, the configured sender), so the
editor previews and tests exactly what readers will get.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from digest.config import Config
from digest.errors import DigestError
from digest.model import PREFERENCES_URL, UNSUBSCRIBE_URL, RenderedEdition

TEST_PREFIX = "[TEST] "


class LookupError_(DigestError):
    """The subscriber picker could not find the address (or there is no store to ask)."""


def subscriber_categories(config: Config, email: str, store: Any = None) -> tuple[str, tuple[str, ...]]:
    """(normalised address, category display names) of a subscriber, from the store.

    An empty tuple of categories means the reader takes every category. Raises a DigestError
    with a message for the page when the address is unknown.
    """
    try:
        from digest import subscribers
        from digest.store import open_store
    except ImportError as exc:  # pragma: no cover - the store ships with digest
        raise LookupError_(f"Subscriber lookup is not available ({exc}); pick categories instead.") from None
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
    names = []
    for key in found.categories:
        known = config.find_category(key)
        names.append(known.name if known else key)
    return found.email, tuple(names)


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

    Goes through ``digest.send.delivery.send_test`` (the path of `digest send --test`) when the
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
        delivery = _delivery_send_test() if same_posts and as_of is not None else None
        if delivery is not None:
            message_id = delivery(
                config, address=address, categories=list(categories), as_of=as_of, sender=sender
            )
        else:
            message_id = sender.send_one(_message(config, rendered, address, categories))
    finally:
        sender.close()
    where = f" (outbox {config.path(config.sender.outbox)})" if sender.name == "outbox" else ""
    return f"Sent a test to {address} via {sender.name}{where}; message id {message_id}."


def _delivery_send_test() -> Callable[..., str] | None:
    try:
        from digest.send.delivery import send_test as delivered
    except ImportError:  # pragma: no cover - delivery ships with digest
        return None
    return delivered


def _message(config: Config, rendered: RenderedEdition, address: str, categories: Sequence[str]) -> Any:
    """The test message built from an already rendered edition (see send_test)."""
    from digest.links import LinkMaker
    from digest.send import OutgoingMessage
    from digest.send.headers import unsubscribe_headers, unsubscribe_mailto

    links = LinkMaker.from_config(config)
    preferences, unsubscribe = links.preferences_url(address), links.unsubscribe_url(address)

    def fill(text: str) -> str:
        return text.replace(PREFERENCES_URL, preferences).replace(UNSUBSCRIBE_URL, unsubscribe)

    return OutgoingMessage(
        to=address,
        subject=TEST_PREFIX + fill(rendered.subject),
        html=fill(rendered.html),
        text=fill(rendered.text),
        headers=unsubscribe_headers(unsubscribe, unsubscribe_mailto(config.sender.unsubscribe_mailto)),
        categories=("digest-test",),
        custom_args={"test": "1", "categories": ",".join(categories)},
    )
