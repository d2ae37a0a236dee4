"""The one address rule: how an email address is normalised, and the key that says two are the same.

Every door that takes an address (CSV import, the web form, ``subscribers add``, the store's
look-ups and uniqueness) and every place that groups or compares readers on the send side (the
ledger, batches, personalisation) must use these two functions and nothing else. Two rules in
two places once let a pair of addresses stop every send: one side compared ``casefold()``, the
other ``lower()``.

**Normalising** (``normalise``): surrounding space stripped; Unicode NFC (so the same address
typed on two keyboards is one address); the domain IDNA-encoded to ASCII and lowercased; the
local part kept as the reader typed it (NFC), because that is what their server delivers to.
Anything email-validator refuses (no DNS lookups), a line break, or a local part over 64 bytes
is refused with an ``AddressError`` that says why.

**The key** (``key``): the normalised address lowercased with ``str.lower()``, not casefolded.

- Case is ignored: ``Ana@x`` and ``ana@x`` are one reader. RFC 5321 lets a server tell them
  apart, but no mailbox provider does, and readers type their address in whatever case.
- Case *folding* is not applied: ``straße@x`` and ``strasse@x`` are two readers. ``casefold()``
  maps ß to "ss", but an SMTPUTF8 server delivers ``straße`` and ``strasse`` to different
  mailboxes (they are different strings that merely share an upper-case form), so merging them
  would let one person read, change or unsubscribe another's subscription. Both may subscribe;
  each gets their own row, links and ledger entries.
"""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

from digest.errors import StoreError

EMAIL_MAX = 254  # RFC 5321 path limit, minus the angle brackets
LOCAL_PART_MAX = 64  # bytes (RFC 5321), counted in UTF-8


class AddressError(StoreError):
    """An address that cannot be a reader's: says what is wrong with it."""


def show(raw: object, limit: int = 60) -> str:
    """A value as it may appear in a message: repr'd (so CR/LF show) and cut short."""
    text = repr(raw)
    return text if len(text) <= limit else text[: limit - 3] + "...'"


def normalise(raw: str) -> str:
    """The address as stored and sent: NFC, local part as given, domain IDNA and lowercased.

    Raises ``AddressError`` (a ``StoreError``) naming the address and the reason.
    """
    if not isinstance(raw, str):
        raise AddressError(f"email address {show(raw)} is not text.")
    if "\r" in raw or "\n" in raw:
        raise AddressError(f"{show(raw)} is not a valid email address: it contains a line break.")
    text = unicodedata.normalize("NFC", raw.strip())
    if not text:
        raise AddressError("the email address is empty; give an address such as reader@example.com.")
    if len(text) > EMAIL_MAX:
        raise AddressError(
            f"{show(text)} is not a valid email address: it is {len(text)} characters long "
            f"(the limit is {EMAIL_MAX})."
        )
    try:
        valid = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise AddressError(f"{show(text)} is not a valid email address: {exc}") from None
    local = unicodedata.normalize("NFC", valid.local_part)
    if len(local.encode("utf-8")) > LOCAL_PART_MAX:
        raise AddressError(
            f"{show(text)} is not a valid email address: the part before the @ is longer than "
            f"{LOCAL_PART_MAX} bytes."
        )
    address = f"{local}@{valid.ascii_domain.lower()}"
    if len(address) > EMAIL_MAX:
        raise AddressError(
            f"{show(text)} is not a valid email address: with its domain IDNA-encoded it is "
            f"{len(address)} characters long (the limit is {EMAIL_MAX})."
        )
    return address


def key(address: str) -> str:
    """What says two addresses are one reader: the normalised address, ``str.lower()``-ed.

    Give it an address from ``normalise`` (or from the database, which only holds normalised
    ones). Lowercased, never casefolded: see the module docstring for why ß is not "ss".
    """
    return unicodedata.normalize("NFC", address).lower()


def key_of(raw: str) -> str:
    """``key(normalise(raw))``: the key of an address as typed; ``AddressError`` if it is not one."""
    return key(normalise(raw))
