"""The list headers every message carries, built in one place and written raw on the wire.

``List-Unsubscribe`` (RFC 2369) must read ``<https://...>`` to every parser: Gmail's and
Yahoo's one-click unsubscribe (RFC 8058, with ``List-Unsubscribe-Post``) look for the URL in
the raw header. Python's email package, given a value longer than a line with no space to fold
at, RFC 2047-encodes it (``=?utf-8?q?=3Chttps...?=``), which no list client decodes. So these
headers are plain ASCII, folded only between URLs (after a comma), and set on a message as
:class:`RawHeader` objects that the email policy writes as they are.

``List-Id`` (RFC 2919) names the list for filters and mailbox providers: ``sender.list_id`` in
the config, else ``Site name <digest.example.com>`` from ``site.name`` and the host of
``site.base_url``.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.policy import Policy
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from digest.config import Config

ONE_CLICK = "List-Unsubscribe=One-Click"
RAW_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post", "list-id"})
_MAX_LINE = 78
# What may stand in a URL between angle brackets: printable ASCII but space, <, >, comma, quote.
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '<>,"\\ ')
_PHRASE_UNSAFE = re.compile(r"[^A-Za-z0-9 !#$%&\'*+\-/=?^_`{|}~.]")


def unsubscribe_mailto(configured: str) -> str:
    """``sender.unsubscribe_mailto`` as a ``mailto:`` URL asking to unsubscribe, or ""."""
    address = configured.strip().removeprefix("mailto:")
    return f"mailto:{address}?subject=unsubscribe" if address else ""


def list_unsubscribe(*urls: str) -> str:
    """``<url1>, <url2>``: each URL made plain ASCII (percent-encoded where it is not)."""
    return ", ".join(f"<{quote(url, safe=_URL_SAFE)}>" for url in urls if url)


def unsubscribe_headers(unsubscribe_url: str, mailto: str = "") -> dict[str, str]:
    """``List-Unsubscribe`` (the https link first, then the mailto) and ``List-Unsubscribe-Post``."""
    return {
        "List-Unsubscribe": list_unsubscribe(unsubscribe_url, mailto),
        "List-Unsubscribe-Post": ONE_CLICK,
    }


def list_id(config: Config) -> str:
    """``List-Id``: ``sender.list_id`` if set, else ``"Site name" <digest.host>`` (RFC 2919)."""
    configured = str(getattr(config.sender, "list_id", "") or "").strip()
    if configured:
        return configured if "<" in configured else f"<{configured}>"
    host = (urlsplit(config.site.base_url).hostname or "localhost").encode("idna").decode("ascii")
    name = config.site.name.encode("ascii", "ignore").decode("ascii").strip()
    label = f"digest.{host.removeprefix('www.')}"
    if not name:
        return f"<{label}>"
    phrase = name if not _PHRASE_UNSAFE.search(name) else '"' + name.replace("\\", "").replace('"', "") + '"'
    return f"{phrase} <{label}>"


class RawHeader(str):
    """A header value the email policy writes as it is: folded by us, between list items only.

    ``email.policy.EmailPolicy`` keeps a value that has a ``name`` and a ``fold`` method
    instead of parsing it into a header object, and calls ``fold`` to write it.
    """

    name: str

    def __new__(cls, name: str, value: str) -> RawHeader:
        if not value.isascii() or "\r" in value or "\n" in value:
            raise ValueError(f"{name}: a list header must be one line of ASCII: {value!r}")
        made = super().__new__(cls, value)
        made.name = name
        return made

    def fold(self, *, policy: Policy) -> str:
        linesep = policy.linesep
        parts = str(self).split(", ")
        lines = [f"{self.name}: {parts[0]}"]
        for part in parts[1:]:
            if len(lines[-1]) + 2 + len(part) > _MAX_LINE:
                lines[-1] += ","
                lines.append(f" {part}")
            else:
                lines[-1] += f", {part}"
        return linesep.join(lines) + linesep


def set_raw(msg: EmailMessage, name: str, value: str) -> None:
    """Set a list header on ``msg`` so that it goes on the wire exactly as built here."""
    del msg[name]
    msg[name] = RawHeader(name, value)
