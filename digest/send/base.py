"""What every sending backend shares: the message, the batch, the result and the Sender protocol.

A backend only moves bytes; it knows nothing about editions, subscribers or the database
(that is ``digest.send.delivery``). Two entry points:

- ``send_one(message)`` for a single fully personal message (confirmation emails, ``--test``);
- ``send_batch(batch)`` for one rendered email to many recipients, each with their own
  substitutions (the personal links) and headers. SendGrid turns a batch into one API request
  with one personalization per recipient; SMTP and the outbox fill the placeholders and send
  one message per recipient.

Plain frozen/slotted dataclasses rather than the ``sendgrid.helpers`` objects, because a
million-recipient send builds a million of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from digest.errors import SendError
from digest.send.headers import RAW_HEADERS, set_raw
from digest.textclean import header_text

if TYPE_CHECKING:
    from datetime import datetime

    from digest.config import Config

# Headers a caller may not set: the backend (or the provider) owns them.
RESERVED_HEADERS = frozenset(
    h.casefold()
    for h in (
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
        "Content-Type",
        "Content-Transfer-Encoding",
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
    )
)
BACKENDS = ("outbox", "sendgrid", "smtp")


@dataclass(frozen=True)
class OutgoingMessage:
    """One finished email to one address: nothing left to fill in."""

    to: str
    subject: str
    html: str
    text: str
    to_name: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    custom_args: Mapping[str, str] = field(default_factory=dict)
    reply_to: str = ""  # empty: config.sender.reply_to (if any)
    from_email: str = ""  # empty: config.sender.from_email
    from_name: str = ""  # empty: config.sender.from_name


@dataclass(frozen=True, slots=True)
class Recipient:
    """One address in a batch and what is personal to it.

    ``substitutions`` maps placeholder tokens (digest.model.PLACEHOLDERS) to this reader's
    values; ``headers`` are the per-recipient headers (List-Unsubscribe).
    """

    email: str
    substitutions: Mapping[str, str]
    headers: Mapping[str, str]
    custom_args: Mapping[str, str] = field(default_factory=dict)
    name: str = ""


@dataclass(frozen=True)
class BatchMessage:
    """One rendered email (placeholders still in it) for up to 1,000 recipients."""

    subject: str
    html: str
    text: str
    recipients: Sequence[Recipient]
    headers: Mapping[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    custom_args: Mapping[str, str] = field(default_factory=dict)
    send_at: int | None = None  # unix time; SendGrid scheduled send
    batch_id: str | None = None  # SendGrid batch id, so a scheduled send can be cancelled

    def personalise(self, recipient: Recipient) -> OutgoingMessage:
        """The finished message for one recipient (how SMTP and the outbox send a batch)."""
        subject, html, text = self.subject, self.html, self.text
        for token, value in recipient.substitutions.items():
            subject = subject.replace(token, value)
            html = html.replace(token, value)
            text = text.replace(token, value)
        return OutgoingMessage(
            to=recipient.email,
            to_name=recipient.name,
            subject=subject,
            html=html,
            text=text,
            headers={**self.headers, **recipient.headers},
            categories=self.categories,
            custom_args={**self.custom_args, **recipient.custom_args},
        )


@dataclass
class BatchResult:
    """What the provider said about a batch.

    ``message_ids`` maps each accepted address to the provider's id (the same id for all
    recipients of one SendGrid request). ``failed`` maps refused addresses to the reason.
    """

    message_ids: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Sender(Protocol):
    """A way to get email out. ``name`` is one of BACKENDS."""

    name: str

    def send_one(self, message: OutgoingMessage) -> str:
        """Send one message; return the provider's message id. Raises SendError."""
        ...

    def send_batch(self, batch: BatchMessage) -> BatchResult:
        """Send one email to every recipient of the batch.

        Raises ProviderAuthError (stop everything) or SendError (this batch failed as a whole,
        e.g. a 400 from SendGrid, or retries ran out); a per-recipient refusal is in ``failed``.
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class BulkSender(Sender, Protocol):
    """What a bulk provider (SendGrid) adds to ``Sender``; the delivery engine asks
    ``isinstance(sender, BulkSender)`` once and then uses these, never probing for single methods.

    - prepared bodies: a request built from the email's pre-encoded prefix and one JSON fragment
      per reader (``digest.send.personalize``), posted from another thread;
    - suppressions: the provider's bounce, spam-report and unsubscribe lists, honoured before a send;
    - scheduling and cancel: a send held at the provider until ``send_at``, cancellable by batch id.
    """

    requests: int  # requests made so far (the summary reports them)
    # Called before a request or a rate-limit wait with the seconds it may take (the send's
    # lease must cover them); raises LeaseLostError when it cannot.
    lease_guard: Callable[[float], None] | None

    def prepared_prefix(self, batch: BatchMessage) -> str:
        """The request body up to the personalizations (once per email)."""
        ...

    def prepared_body(
        self, prefix: str, personalizations: str, count: int, custom_args: Mapping[str, str] | None = None
    ) -> str:
        """A whole request body (``custom_args``: message-level, e.g. the ledger's batch id);
        raises SendError if it breaks the provider's limits."""
        ...

    def post_prepared(self, data: str | bytes) -> str:
        """Post a prepared body; the provider's message id. Raises as ``send_batch`` does."""
        ...

    def suppressions(self) -> dict[str, str]:
        """Suppressed addresses (``digest.addresses.key``) -> the list they are on."""
        ...

    def new_batch_id(self) -> str:
        """A provider batch id for a scheduled send (so it can be cancelled)."""
        ...

    def cancel_scheduled(self, batch_id: str) -> None: ...


def retry_base_seconds(config: Config) -> float:
    """The first backoff delay: ``sender.retry_base_seconds`` (tests set it tiny in their config)."""
    return float(config.sender.retry_base_seconds)


def build_mime(
    message: OutgoingMessage,
    *,
    from_email: str,
    from_name: str = "",
    reply_to: str = "",
    date: datetime | None = None,
    message_id: str | None = None,
    list_id: str = "",
) -> EmailMessage:
    """The RFC 5322 message for SMTP and the outbox: text part first, then HTML (clients show the last).

    Categories and custom args travel as X-Digest-* headers, so an .eml file says which edition
    it belongs to just as SendGrid's statistics would.
    """
    from email.utils import localtime

    msg = EmailMessage()
    domain = from_email.rpartition("@")[2] or None
    msg["Message-ID"] = message_id or make_msgid(domain=domain)
    msg["Date"] = format_datetime(date or localtime())
    sender_email = message.from_email or from_email
    sender_name = message.from_name or from_name
    msg["From"] = Address(display_name=sender_name, addr_spec=sender_email) if sender_name else sender_email
    to_name = header_text(message.to_name)  # a reader's name is plain text, never an encoded-word
    msg["To"] = Address(display_name=to_name, addr_spec=message.to) if to_name else message.to
    msg["Subject"] = message.subject
    if message.reply_to or reply_to:
        msg["Reply-To"] = message.reply_to or reply_to
    for name, value in message.headers.items():
        if name.casefold() in RESERVED_HEADERS:
            continue
        if name.casefold() in RAW_HEADERS:  # List-Unsubscribe & co: plain ASCII on the wire
            set_raw(msg, name, value)
        else:
            msg[name] = value
    if list_id and "List-Id" not in msg:
        set_raw(msg, "List-Id", list_id)
    if message.categories:
        msg["X-Digest-Categories"] = ", ".join(message.categories)
    if message.custom_args:
        msg["X-Digest-Args"] = json.dumps(dict(message.custom_args), separators=(",", ":"), sort_keys=True)
    msg.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def needs_smtputf8(*addresses: str) -> bool:
    """Whether an envelope address is not ASCII (``jöhn@example.com``): only SMTPUTF8 carries it.

    Domains are IDNA-encoded to ASCII when stored (``digest.addresses.normalise``), so in
    practice this is a local part typed in another script.
    """
    return not all(a.isascii() for a in addresses)


def mime_bytes(
    message: OutgoingMessage,
    *,
    from_email: str,
    from_name: str = "",
    reply_to: str = "",
    list_id: str = "",
) -> tuple[EmailMessage, bytes]:
    """The message and its bytes on the wire; a message that cannot be built fails alone.

    An address that is not ASCII is written as UTF-8 (RFC 6532, ``policy.SMTPUTF8``), never as
    an encoded-word: ``=?utf-8?q?j=C3=B6hn?=@example.com`` is nobody's address. The SMTP
    backend sends such a message only to a server that offers SMTPUTF8. Any error building it
    becomes a ``SendError`` that names the reader, so it fails that reader and no one else.
    """
    from email import policy

    utf8 = needs_smtputf8(message.to, message.from_email or from_email)
    try:
        msg = build_mime(
            message, from_email=from_email, from_name=from_name, reply_to=reply_to, list_id=list_id
        )
        return msg, msg.as_bytes(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)
    except Exception as exc:  # any defect of this one message (a header, an address)
        raise SendError(f"{message.to}: the message cannot be built ({type(exc).__name__}: {exc})") from None
