"""The list headers every digest carries, built in one place.

``List-Unsubscribe`` (RFC 2369) lists the reader's one-click https link and, when
``sender.unsubscribe_mailto`` is set, a mailto; ``List-Unsubscribe-Post`` (RFC 8058) says the
https link takes a one-click POST. SMTP and the outbox put these on each message, SendGrid gets
them per personalization (``digest.send.sendgrid.PersonalizationWriter`` pre-encodes the same
text once per send), and the deliverability check inspects them.
"""

from __future__ import annotations

from digest.config import Config

ONE_CLICK = "List-Unsubscribe=One-Click"


def unsubscribe_mailto(config: Config) -> str:
    """``sender.unsubscribe_mailto`` as a mailto URL asking for "unsubscribe", or ""."""
    mailto = config.sender.unsubscribe_mailto.strip()
    if not mailto:
        return ""
    if not mailto.startswith("mailto:"):
        mailto = f"mailto:{mailto}"
    return f"{mailto}?subject=unsubscribe"


def list_unsubscribe(unsubscribe_url: str, mailto: str = "") -> str:
    """The ``List-Unsubscribe`` value: the https link first (what one-click POSTs to), then the mailto."""
    return f"<{unsubscribe_url}>, <{mailto}>" if mailto else f"<{unsubscribe_url}>"


def unsubscribe_headers(unsubscribe_url: str, mailto: str = "") -> dict[str, str]:
    """Both headers for one reader."""
    return {"List-Unsubscribe": list_unsubscribe(unsubscribe_url, mailto), "List-Unsubscribe-Post": ONE_CLICK}
