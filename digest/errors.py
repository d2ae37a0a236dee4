"""One exception hierarchy for the whole package.

Every message names the file, key or address involved and says what to do next. The CLI and
the web app catch ``DigestError`` only; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DigestError(Exception):
    """Root of every error that a user can act on."""


class ConfigError(DigestError):
    """config.toml (or an environment variable) is missing, malformed or inconsistent."""


class PostError(DigestError):
    """A post cannot be used. Raised per post; the loader turns it into a skip with a warning."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class RenderError(DigestError):
    """A template is broken or the MJML it produced does not compile."""


class EmptyEditionError(DigestError):
    """There is nothing to send: no post falls in the window and categories asked for."""


class StoreError(DigestError):
    """The subscriber database refused an operation (bad address, unknown category, ...)."""


class LinkError(DigestError):
    """A signed link was tampered with, has expired, or was made with another secret."""


class SendError(DigestError):
    """The email provider refused or failed a request."""


class ProviderAuthError(SendError):
    """The provider rejected our credentials (HTTP 401/403): stop at once, nothing will pass."""


class UndecidedError(SendError):
    """The request went out and no answer came (read timeout, reset after the request was
    written): the provider may have taken it. Never retried blindly; the batch is ``undecided``
    until the Event Webhook settles it or an operator resends it."""


class LeaseLostError(SendError):
    """This run no longer holds the send lease (another run took it over): nothing more goes out."""
