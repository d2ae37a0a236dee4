"""What the preview page can do besides showing: look up a subscriber, send a test email.

Both go through the same modules as the real thing (the store, the configured sender), so the
editor previews and tests exactly what readers will get.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    sender_name: str | None = None,
) -> str:
    """Send the rendered edition to one address through the configured sender; return a receipt.

    Uses ``digest.send.delivery``'s test-send when it is there (the same path as
    `digest send --test`), else builds the message here: real signed links for the address,
    the List-Unsubscribe headers, and "[TEST]" before the subject.
    """
    address = address.strip()
    if "@" not in address or " " in address:
        raise LookupError_(f"{address!r} is not an email address; type the address to send the test to.")
    delivered = _via_delivery(config, rendered, address, categories)
    if delivered is not None:
        return delivered
    from digest.links import LinkMaker
    from digest.send import OutgoingMessage, make_sender

    links = LinkMaker.from_config(config)
    preferences, unsubscribe = links.preferences_url(address), links.unsubscribe_url(address)

    def fill(text: str) -> str:
        return text.replace(PREFERENCES_URL, preferences).replace(UNSUBSCRIBE_URL, unsubscribe)

    unsub = f"<{unsubscribe}>"
    if config.sender.unsubscribe_mailto:
        unsub += f", <mailto:{config.sender.unsubscribe_mailto}?subject=unsubscribe>"
    message = OutgoingMessage(
        to=address,
        subject=TEST_PREFIX + fill(rendered.subject),
        html=fill(rendered.html),
        text=fill(rendered.text),
        headers={"List-Unsubscribe": unsub, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        categories=("test",),
        custom_args={"test": "1", "categories": ",".join(categories)},
    )
    sender = make_sender(config, sender_name)
    try:
        message_id = sender.send_one(message)
    finally:
        sender.close()
    where = f" (outbox {config.path(config.sender.outbox)})" if sender.name == "outbox" else ""
    return f"Sent a test to {address} via {sender.name}{where}; message id {message_id}."


def _via_delivery(
    config: Config, rendered: RenderedEdition, address: str, categories: Sequence[str]
) -> str | None:
    """The delivery module's test-send, if it has landed with a signature this page can call."""
    try:
        from digest.send import delivery  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    func = getattr(delivery, "send_test_rendered", None)
    if func is None:
        return None
    result = func(config, rendered, address, categories=tuple(categories))
    return str(result)
