"""The SMTP backend, for any provider that is not SendGrid.

One connection is opened lazily and reused for a whole batch (and the next), since a TLS
handshake and login per message would dominate a large send. A dropped connection is reopened
and the message retried; 4xx replies are retried with backoff; 5xx refusals of one recipient
are recorded for that recipient and the batch goes on; a failed login stops the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import smtplib
import ssl
import time
from typing import TYPE_CHECKING

from digest.config import SMTP_PASSWORD_ENV
from digest.errors import ProviderAuthError, SendError
from digest.send.base import (
    BatchMessage,
    BatchResult,
    OutgoingMessage,
    mime_bytes,
    needs_smtputf8,
    retry_base_seconds,
)
from digest.send.headers import list_id

if TYPE_CHECKING:
    from digest.config import Config

log = logging.getLogger(__name__)


class _NoSMTPUTF8(Exception):
    """The server cannot take this reader's address (kept apart from the retried errors)."""


class _Unreachable(SendError):
    """The connection to the server failed after every retry: the server is down, not the reader."""


class SMTPSender:
    name = "smtp"

    def __init__(self, config: Config, *, password: str | None = None) -> None:
        s = config.sender
        self.host, self.port, self.security = s.smtp_host, s.smtp_port, s.smtp_security
        self.username = s.smtp_username
        self.password = password if password is not None else os.environ.get(SMTP_PASSWORD_ENV, "")
        self.timeout = s.timeout_seconds
        self.max_retries = s.max_retries
        self.backoff = retry_base_seconds(config)
        self.from_email, self.from_name, self.reply_to = s.from_email, s.from_name, s.reply_to
        self.list_id = list_id(config)
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        where = f"{self.host}:{self.port}"
        try:
            if self.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise ProviderAuthError(
                f"The SMTP server {where} refused the login for {self.username!r} ({exc.smtp_code}). "
                f"Check sender.smtp_username and ${SMTP_PASSWORD_ENV}."
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise SendError(
                f"The SMTP server {where} does not support what sender.smtp_security "
                f"= {self.security!r} needs ({exc}); try another smtp_security or port."
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"Cannot connect to the SMTP server {where}: {exc}") from exc
        self._smtp = smtp
        return smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._smtp.quit()
            self._smtp = None

    def send_one(self, message: OutgoingMessage) -> str:
        msg, data = mime_bytes(
            message,
            from_email=self.from_email,
            from_name=self.from_name,
            reply_to=self.reply_to,
            list_id=self.list_id,
        )
        envelope_from = message.from_email or self.from_email
        utf8 = needs_smtputf8(message.to, envelope_from)
        attempt = 0
        while True:
            try:
                smtp = self._connect()
                options: list[str] = []
                if utf8:
                    smtp.ehlo_or_helo_if_needed()
                    if not smtp.has_extn("smtputf8"):  # not retried: no retry changes the server
                        raise _NoSMTPUTF8(
                            f"{message.to}: the SMTP server does not offer SMTPUTF8, which an address "
                            "that is not ASCII needs; this reader was not sent"
                        )
                    options = ["SMTPUTF8", "BODY=8BITMIME"]
                smtp.sendmail(envelope_from, [message.to], data, mail_options=options)
                return str(msg["Message-ID"]).strip("<>")
            except _NoSMTPUTF8 as exc:
                raise SendError(str(exc)) from None
            except ProviderAuthError:
                raise
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = exc.recipients.get(message.to, (0, b""))
                problem, temporary = f"refused by the SMTP server ({code} {reply!r})", 400 <= code < 500
            except smtplib.SMTPResponseException as exc:
                problem = f"the SMTP server answered {exc.smtp_code} {exc.smtp_error!r}"
                temporary = 400 <= exc.smtp_code < 500
                if exc.smtp_code == 421:  # the server is closing the connection
                    self._drop()
            except (smtplib.SMTPServerDisconnected, SendError, OSError) as exc:
                self._drop()
                problem, temporary = f"the SMTP connection failed ({exc})", True
                if attempt >= self.max_retries:  # the server, not this reader: see send_batch
                    raise _Unreachable(f"{message.to}: {problem}") from None
            if not temporary or attempt >= self.max_retries:
                raise SendError(f"{message.to}: {problem}")
            attempt += 1
            delay = self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
            log.info("SMTP retry %d for %s in %.2fs: %s", attempt, message.to, delay, problem)
            time.sleep(delay)

    def send_batch(self, batch: BatchMessage) -> BatchResult:
        result = BatchResult()
        unreachable = ""
        for recipient in batch.recipients:
            if unreachable:  # retried already for a reader of this batch: the rest fail at once
                result.failed[recipient.email] = f"{recipient.email}: not tried, {unreachable}"
                continue
            try:
                result.message_ids[recipient.email] = self.send_one(batch.personalise(recipient))
            except ProviderAuthError:
                raise
            except _Unreachable as exc:
                result.failed[recipient.email] = str(exc)
                unreachable = str(exc).split(": ", 1)[-1]
            except SendError as exc:
                result.failed[recipient.email] = str(exc)
        return result

    def close(self) -> None:
        self._drop()
