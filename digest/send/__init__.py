"""Getting email out: the Sender protocol, its backends (outbox, SMTP, SendGrid) and ``make_sender``.

``make_sender(config)`` picks the backend. It lives here, not in ``base``, because the backends
import ``base``: base knows no backend, and nothing imports in a circle.
``digest.send.delivery`` does the exactly-once orchestration of an edition on top of them.
"""

from __future__ import annotations

import os
from pathlib import Path

from digest.config import Config
from digest.send.base import (
    BACKENDS,
    BatchMessage,
    BatchResult,
    BulkSender,
    OutgoingMessage,
    Recipient,
    Sender,
)


def make_sender(
    config: Config, name: str | None = None, *, outbox: str | os.PathLike[str] | None = None
) -> Sender:
    """The backend named (or config.sender.backend). ``outbox`` overrides the outbox folder."""
    from digest.errors import ConfigError

    backend = name or config.sender.backend
    if backend == "outbox":
        from digest.send.outbox import OutboxSender

        folder = config.path(Path(outbox)) if outbox is not None else config.path(config.sender.outbox)
        return OutboxSender(config, folder)
    if backend == "smtp":
        from digest.send.smtp import SMTPSender

        return SMTPSender(config)
    if backend == "sendgrid":
        from digest.send.sendgrid import SendGridSender

        return SendGridSender.from_config(config)
    raise ConfigError(f"Unknown sender {backend!r}; use one of: {', '.join(BACKENDS)}.")


__all__ = [
    "BatchMessage",
    "BatchResult",
    "BulkSender",
    "OutgoingMessage",
    "Recipient",
    "Sender",
    "make_sender",
]
