"""The outbox backend: one ``.eml`` file per message, so everything works without an account.

Files are written to a temporary name and renamed into place, so a reader (a test, a person, a
crash) never sees half a message. Names sort by time of writing and carry the address, e.g.
``20260112T070000-000042-ada_at_example.com.eml``.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
import threading
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import Parser
from pathlib import Path
from typing import TYPE_CHECKING

from digest.errors import SendError
from digest.send.base import BatchMessage, BatchResult, OutgoingMessage, mime_bytes
from digest.send.headers import list_id

if TYPE_CHECKING:
    from digest.config import Config

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


class _FolderError(SendError):
    """The outbox folder cannot be written: every reader of the batch, not one."""


class OutboxSender:
    """Writes each message to ``folder``; the message id is the file's Message-ID (no brackets)."""

    name = "outbox"

    def __init__(self, config: Config, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.from_email = config.sender.from_email
        self.from_name = config.sender.from_name
        self.reply_to = config.sender.reply_to
        self.list_id = list_id(config)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def _path_for(self, to: str) -> Path:
        with self._lock:
            n = next(self._seq)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        safe = _UNSAFE.sub("_", to.replace("@", "_at_"))[:80]
        return self.folder / f"{stamp}-{os.getpid()}-{n:06d}-{safe}.eml"

    def send_one(self, message: OutgoingMessage) -> str:
        msg, data = mime_bytes(  # UTF-8 headers for an address that is not ASCII (RFC 6532)
            message,
            from_email=self.from_email,
            from_name=self.from_name,
            reply_to=self.reply_to,
            list_id=self.list_id,
        )
        path = self._path_for(message.to)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".eml")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise _FolderError(f"Cannot write to the outbox folder {self.folder}: {exc}") from exc
        return str(msg["Message-ID"]).strip("<>")

    def send_batch(self, batch: BatchMessage) -> BatchResult:
        result = BatchResult()
        for recipient in batch.recipients:
            try:
                result.message_ids[recipient.email] = self.send_one(batch.personalise(recipient))
            except _FolderError:
                raise  # the folder, not the reader: the batch fails as a whole
            except SendError as exc:
                result.failed[recipient.email] = str(exc)
        return result

    def close(self) -> None:
        pass


def read_outbox(folder: str | os.PathLike[str]) -> list[EmailMessage]:
    """Every message in an outbox folder, oldest first, parsed with the ``email`` package.

    Read as UTF-8 text (RFC 6532 headers: a ``To: jöhn@example.com`` reads back as written;
    the bodies are quoted-printable ASCII), so a bytes parser's surrogates never appear.
    """
    parser = Parser(policy=policy.default)
    messages: list[EmailMessage] = []
    for path in sorted(Path(folder).glob("*.eml")):
        text = path.read_bytes().decode("utf-8", "surrogateescape")
        messages.append(parser.parsestr(text))  # type: ignore[arg-type,unused-ignore]
    return messages
