"""Signed links for everything that changes a subscription: confirm, preferences, unsubscribe.

Two token formats; the purpose is part of every MAC, so a preferences token can never be
replayed as a confirmation. Plain ``hmac`` rather than a heavier signer because the sender
signs two links for every recipient of every edition (a million readers means two million
signatures per send).

- **Reader tokens** (the preferences and unsubscribe links of every email sent):
  ``base64url(varint(subscriber id) + issued_at (4 bytes) + mac)``, the MAC being
  ``hmac_sha256(secret, purpose + payload + key(email))[:12 bytes]``. About 26 characters, and
  opaque: the address is not in the link (it used to be, in base64, in every email), only bound
  by the MAC, so a link stops working if the id is ever given to another address. ``digest
  serve`` looks the id up and checks the MAC against that reader's address (``reader_id`` then
  ``verify_reader``). No "." in them: that is how they are told from the older format.
- **Address tokens** (confirmation links, which are sent before a reader has an id to trust, and
  every link sent before reader tokens existed): ``base64url(email|issued_at) .
  base64url(mac)[:16 bytes]``. Still made for confirmations, and still accepted everywhere,
  so links already in inboxes keep working until they expire.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote

from digest.addresses import key as _address_key
from digest.config import SECRET_ENV, Config
from digest.errors import ConfigError, LinkError

CONFIRM = "confirm"
PREFERENCES = "preferences"
UNSUBSCRIBE = "unsubscribe"
PURPOSES = (CONFIRM, PREFERENCES, UNSUBSCRIBE)
_PERSONAL = (PREFERENCES, UNSUBSCRIBE)
_MAC_BYTES = 16
_READER_MAC_BYTES = 12  # 96 bits: forging one needs ~2^95 online guesses at `digest serve`
_TS = 4  # issued_at, seconds, big-endian (until 2106)
SECRET_FILE = ".digest-secret"


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """base64url without padding (binascii directly: this runs twice per link, millions of times)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Makes and checks tokens with one secret. Build once; signing is a single HMAC."""

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else secret
        if len(key) < 16:
            raise ConfigError(
                f"${SECRET_ENV} is too short ({len(key)} bytes); use at least 32 random characters, "
                "for example the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        # One keyed HMAC state per purpose, copied per signature: skips re-keying every time.
        self._keyed = {p: hmac.new(key, p.encode() + b"\0", hashlib.sha256) for p in PURPOSES}
        # The C state under hmac.HMAC where there is one: its copy/update/digest skip three
        # Python-level calls each, a third of the signing cost over a million readers.
        self._fast = {p: getattr(h, "_hmac", None) or h for p, h in self._keyed.items()}

    def _mac(self, purpose: str, payload: bytes) -> bytes:
        mac = self._fast[purpose].copy()
        mac.update(payload)
        return mac.digest()[:_MAC_BYTES]

    def sign(self, purpose: str, email: str, *, issued_at: int | None = None) -> str:
        ts = int(time.time()) if issued_at is None else issued_at
        payload = f"{email}|{ts}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(purpose, payload))}"

    def sign_many(self, purposes: tuple[str, ...], email: str, *, issued_at: int | None = None) -> list[str]:
        """``sign`` for several purposes at once: the payload is encoded once (a send signs two)."""
        ts = int(time.time()) if issued_at is None else issued_at
        payload = f"{email}|{ts}".encode()
        head = _b64(payload) + "."
        keyed = self._fast
        tokens = []
        for purpose in purposes:
            mac = keyed[purpose].copy()
            mac.update(payload)
            tokens.append(head + _b64(mac.digest()[:_MAC_BYTES]))
        return tokens

    # -- reader tokens (subscriber id, no address) -----------------------------------------

    def _reader_mac(self, purpose: str, payload: bytes, email: str) -> bytes:
        mac = self._fast[purpose].copy()
        mac.update(payload + b"\0" + _address_key(email).encode("utf-8"))
        return mac.digest()[:_READER_MAC_BYTES]

    def sign_reader(
        self, purpose: str, subscriber_id: int, email: str, *, issued_at: int | None = None
    ) -> str:
        """An opaque token for one reader's link: their id and the time, bound to their address."""
        ts = int(time.time()) if issued_at is None else issued_at
        payload = _varint(subscriber_id) + ts.to_bytes(_TS, "big")
        return _b64(payload + self._reader_mac(purpose, payload, email))

    @staticmethod
    def reader_id(token: str) -> int | None:
        """The subscriber id in a reader token, not yet verified; None for an address token.

        Raises LinkError if the token is damaged. Verify with ``verify_reader`` and the address
        the database has for this id.
        """
        if "." in token:
            return None
        try:
            raw = _unb64(token)
        except (ValueError, binascii.Error):
            raise LinkError("This link is damaged: it may have been cut short when copied.") from None
        payload = raw[:-_READER_MAC_BYTES]
        found = _unvarint(payload[:-_TS]) if len(payload) > _TS else None
        if found is None:
            raise LinkError("This link is damaged: it may have been cut short when copied.")
        return found

    def verify_reader(
        self,
        purpose: str,
        token: str,
        email: str | None,
        *,
        max_age: float | None = None,
        now: float | None = None,
    ) -> str:
        """Check a reader token against the address of its subscriber id (None: no such reader).

        Returns the address; LinkError if the token is damaged, forged, for another purpose or
        another address, or expired. An unknown id reads as "not valid", like a forgery.
        """
        self.reader_id(token)  # damaged?
        raw = _unb64(token)
        payload, mac = raw[:-_READER_MAC_BYTES], raw[-_READER_MAC_BYTES:]
        if (
            email is None
            or purpose not in self._keyed
            or not hmac.compare_digest(mac, self._reader_mac(purpose, payload, email))
        ):
            raise LinkError("This link is not valid: it was changed, or made for another purpose.")
        issued = int.from_bytes(payload[-_TS:], "big")
        if max_age is not None and (now if now is not None else time.time()) - issued > max_age:
            raise LinkError("This link has expired. Ask for a new one from the subscribe page.")
        return email

    # -- address tokens (confirmations, and links sent before reader tokens) -------------------

    def verify(
        self, purpose: str, token: str, *, max_age: float | None = None, now: float | None = None
    ) -> str:
        """Return the email address a token was made for, or raise LinkError saying why not."""
        try:
            payload_part, mac_part = token.split(".", 1)
            payload, mac = _unb64(payload_part), _unb64(mac_part)
            email, ts_text = payload.decode("utf-8").rsplit("|", 1)
            issued = int(ts_text)
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise LinkError("This link is damaged: it may have been cut short when copied.") from None
        if purpose not in self._keyed or not hmac.compare_digest(mac, self._mac(purpose, payload)):
            raise LinkError("This link is not valid: it was changed, or made for another purpose.")
        if max_age is not None and (now if now is not None else time.time()) - issued > max_age:
            raise LinkError("This link has expired. Ask for a new one from the subscribe page.")
        return email


def _varint(n: int) -> bytes:
    """Unsigned LEB128: 1 byte below 128, 3 bytes below 2,097,152 (ids are small)."""
    if n < 0:
        raise ValueError("a subscriber id is never negative")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _unvarint(data: bytes) -> int | None:
    """The number ``_varint`` wrote, or None if ``data`` is not exactly one."""
    value = 0
    for i, byte in enumerate(data):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value if i == len(data) - 1 and i < 9 else None
    return None


def load_secret(config: Config) -> str:
    """The signing secret: $DIGEST_SECRET, else a random one kept in .digest-secret beside the config.

    The file fallback keeps the embedded defaults working with no set-up; it is never committed
    (.gitignore) and a production deployment should set the environment variable instead.
    """
    value = os.environ.get(SECRET_ENV)
    if value:
        return value
    path: Path = config.path(SECRET_FILE)
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        value = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value + "\n")
        return value


class LinkMaker:
    """Builds the personal URLs of one site: base URL of `digest serve` plus a signed token."""

    def __init__(self, base_url: str, signer: Signer) -> None:
        self.base = base_url.rstrip("/")
        self.signer = signer

    @classmethod
    def from_config(cls, config: Config) -> LinkMaker:
        return cls(config.web.base_url, Signer(load_secret(config)))

    def confirm_url(self, email: str) -> str:
        return f"{self.base}/confirm/{quote(self.signer.sign(CONFIRM, email))}"

    def preferences_url(self, email: str) -> str:
        return f"{self.base}/preferences/{quote(self.signer.sign(PREFERENCES, email))}"

    def unsubscribe_url(self, email: str) -> str:
        return f"{self.base}/unsubscribe/{quote(self.signer.sign(UNSUBSCRIBE, email))}"

    def personal_urls(self, email: str, subscriber_id: int | None = None) -> tuple[str, str]:
        """(preferences URL, unsubscribe URL) for one reader: what every email of a send carries.

        With the reader's id: short opaque reader tokens (what sends use). Without (a preview's
        sample address): address tokens. Tokens are base64url (and "."), all unreserved in URLs,
        so they need no quoting here (``quote`` would return them unchanged, at a cost per link).
        """
        if subscriber_id is not None:
            return self.personal_urls_many([(subscriber_id, email)])[0]
        preferences, unsubscribe = self.signer.sign_many(_PERSONAL, email)
        return f"{self.base}/preferences/{preferences}", f"{self.base}/unsubscribe/{unsubscribe}"

    def personal_urls_many(self, readers: list[tuple[int, str]]) -> list[tuple[str, str]]:
        """Reader-token ``personal_urls`` for a whole batch of (subscriber id, email): one clock
        read and no per-reader method look-ups (the same URLs as ``sign_reader`` in that second).
        """
        ts = int(time.time()).to_bytes(_TS, "big")
        keyed = self.signer._fast
        pref_state, unsub_state = keyed[PREFERENCES], keyed[UNSUBSCRIBE]
        pref_base, unsub_base = f"{self.base}/preferences/", f"{self.base}/unsubscribe/"
        b2a, urlsafe, cut, address_key = binascii.b2a_base64, _URLSAFE, _READER_MAC_BYTES, _address_key
        out = []
        for sid, email in readers:
            payload = (bytes((sid,)) if sid < 128 else _varint(sid)) + ts
            bound = payload + b"\0" + address_key(email).encode("utf-8")
            pref = pref_state.copy()
            pref.update(bound)
            unsub = unsub_state.copy()
            unsub.update(bound)
            p = (
                b2a(payload + pref.digest()[:cut], newline=False)
                .translate(urlsafe)
                .rstrip(b"=")
                .decode("ascii")
            )
            u = (
                b2a(payload + unsub.digest()[:cut], newline=False)
                .translate(urlsafe)
                .rstrip(b"=")
                .decode("ascii")
            )
            out.append((pref_base + p, unsub_base + u))
        return out
