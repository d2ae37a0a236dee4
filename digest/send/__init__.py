"""Getting email out: the Sender protocol and its backends (outbox, SMTP, SendGrid).

``make_sender(config)`` picks the backend; ``digest.send.delivery`` does the exactly-once
orchestration of an edition on top of it.
"""

from __future__ import annotations

from digest.send.base import (
    BatchMessage,
    BatchResult,
    OutgoingMessage,
    Recipient,
    Sender,
    make_sender,
)

__all__ = ["BatchMessage", "BatchResult", "OutgoingMessage", "Recipient", "Sender", "make_sender"]
