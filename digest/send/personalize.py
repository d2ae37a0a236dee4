"""Everything per reader: their links, their headers, and their part of a SendGrid request.

``PersonalLinks`` is the one home for what differs between two readers of the same email: the
signed preference and one-click unsubscribe links (substituted for the placeholders in
``digest.model``), the List-Unsubscribe headers (``digest.send.headers``) and the reader's id.
SMTP, the outbox and a test send take it as a ``Recipient``; SendGrid takes it as a JSON
fragment per reader (``Personalizer``, same values), built a batch at a time, on a second core
if it pays.

A reader's personalization is two signed links (two HMACs), their List-Unsubscribe header and
their id, written as a JSON fragment: a few microseconds each, and nothing else in a send grows
with the number of readers as fast. At a million readers that is most of the main thread's
work, so large sends build the fragments in one worker process (``PersonalizationPool``) while
the main thread streams readers, renders and records batches, and the poster thread posts.
The worker gets the signing secret once, through its start-up arguments (a pipe, never the
command line or the log).
"""

from __future__ import annotations

import collections
import contextlib
import json
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import IO, Any

from digest.addresses import key as address_key
from digest.config import Config
from digest.errors import ConfigError, SendError
from digest.links import LinkMaker, Signer, load_secret
from digest.model import PREFERENCES_URL, UNSUBSCRIBE_URL, Subscriber, reader_token
from digest.send.base import Recipient
from digest.send.headers import unsubscribe_headers, unsubscribe_mailto

# (subscriber id, email, name)
Member = tuple[int, str, str]

# Per-reader fields a template can show as {{ reader.<field> }}: each one's value from the
# reader's (name, email). ``edition.reader_fields`` switches them on; every send path (SMTP and
# the outbox through Recipient substitutions, SendGrid through its fragments) fills them here.
READER_FIELDS: dict[str, Callable[[str, str], str]] = {
    "greeting": lambda name, _email: f"Hello {safe_text(name)}," if safe_text(name) else "Hello,",
}


def reader_fields(config: Config) -> tuple[str, ...]:
    """The fields ``edition.reader_fields`` switches on; an unknown one is a config error."""
    for field in config.edition.reader_fields:
        if field not in READER_FIELDS:
            known = ", ".join(sorted(READER_FIELDS)) or "none yet"
            raise ConfigError(
                f"edition.reader_fields names {field!r}, which is not a per-reader field "
                f"(known: {known}); see digest/send/personalize.py."
            )
    return tuple(config.edition.reader_fields)


def field_values(fields: Sequence[str], name: str, email: str) -> dict[str, str]:
    """One reader's value of each field, keyed by its placeholder."""
    return {reader_token(f): READER_FIELDS[f](name, email) for f in fields}


def safe_text(text: str) -> str:
    """A reader-given text (their name) reduced to what is safe as it is in HTML, text and JSON:
    letters, digits, spaces and ' - . (a placeholder's value is not escaped per part)."""
    kept = "".join(ch for ch in text if ch.isalnum() or ch in " '-.")
    return " ".join(kept.split())[:60]


@dataclass(frozen=True)
class PersonalizationSpec:
    """Everything a process needs to build personalizations (picklable)."""

    base_url: str
    secret: str
    mailto: str  # "mailto:...?subject=unsubscribe" or "" (digest.send.headers.unsubscribe_mailto)
    shared_args: tuple[tuple[str, str], ...]
    fields: tuple[str, ...] = ()  # reader fields switched on (READER_FIELDS)

    def __repr__(self) -> str:  # never show the secret
        return f"PersonalizationSpec(base_url={self.base_url!r})"


class PersonalLinks:
    """Per-recipient links and headers: two short reader tokens (``digest.links``) per reader."""

    def __init__(self, config: Config, *, secret: str | None = None) -> None:
        self.base_url = config.web.base_url
        self.secret = secret if secret is not None else load_secret(config)
        self.personal_urls = LinkMaker(self.base_url, Signer(self.secret)).personal_urls
        self.mailto = unsubscribe_mailto(config.sender.unsubscribe_mailto)
        self.fields = reader_fields(config)

    def recipient(self, sub: Subscriber) -> Recipient:
        return self.member(sub.id, sub.email, sub.name)

    def member(self, sid: int, email: str, name: str) -> Recipient:
        # id 0: a test copy (no reader row to look up), so its links carry the address instead
        preferences, unsubscribe = self.personal_urls(email, sid if sid > 0 else None)
        substitutions = {PREFERENCES_URL: preferences, UNSUBSCRIBE_URL: unsubscribe}
        if self.fields:
            substitutions.update(field_values(self.fields, name, email))
        return Recipient(
            email=email,
            substitutions=substitutions,
            headers=unsubscribe_headers(unsubscribe, self.mailto),
            custom_args={"subscriber_id": str(sid)},
            name=name,
        )

    def spec(self, shared_args: dict[str, str]) -> PersonalizationSpec:
        """What builds SendGrid personalizations (in this process or the worker)."""
        return PersonalizationSpec(
            self.base_url, self.secret, self.mailto, tuple(shared_args.items()), self.fields
        )


class Personalizer:
    """Builds the comma-joined personalizations of one batch."""

    def __init__(self, spec: PersonalizationSpec) -> None:
        from digest.send.fragments import PersonalizationWriter

        self.links = LinkMaker(spec.base_url, Signer(spec.secret))
        self.writer = PersonalizationWriter(
            preferences_token=PREFERENCES_URL,
            unsubscribe_token=UNSUBSCRIBE_URL,
            mailto=spec.mailto,
            shared_args=dict(spec.shared_args),
        )
        self.fields = spec.fields

    def build(self, members: Sequence[Member]) -> str:
        """The batch's personalizations, comma-joined; raises SendError on an address twice."""
        emails = [m[1] for m in members]
        twice = first_repeat(emails)
        if twice is not None:
            raise SendError(f"{twice} appears twice in one batch; SendGrid refuses duplicates.")
        fragment = self.writer.fragment
        urls = self.links.personal_urls_many([(m[0], m[1]) for m in members])
        if self.fields:
            fields = self.fields
            return ",".join(
                [
                    fragment(email, name, pref, unsub, sid, _encoded(field_values(fields, name, email)))
                    for (sid, email, name), (pref, unsub) in zip(members, urls, strict=True)
                ]
            )
        return ",".join(
            [
                fragment(email, name, pref, unsub, sid)
                for (sid, email, name), (pref, unsub) in zip(members, urls, strict=True)
            ]
        )


def first_repeat(emails: Sequence[str]) -> str | None:
    """The first address whose key (``digest.addresses.key``, the one rule) came before, or None."""
    seen: set[str] = set()
    for email in emails:
        k = address_key(email)
        if k in seen:
            return email
        seen.add(k)
    return None


def _encoded(values: dict[str, str]) -> str:
    """Substitutions as JSON members, each with a leading comma (PersonalizationWriter's ``extra``)."""
    return "".join(f",{json.dumps(k)}:{json.dumps(v)}" for k, v in values.items())


class PersonalizationPool:
    """A worker process (``python -m digest.send.personalize``) building batches in order.

    ``submit`` returns a Future resolved by a reader thread as answers come back. A plain
    subprocess with pickled frames over its stdin and stdout, rather than multiprocessing: a
    spawned multiprocessing worker re-imports the caller's main module, which breaks any script
    that calls ``deliver`` without a ``__main__`` guard, and forking a process that has threads
    and open database connections is unsafe.
    """

    def __init__(self, spec: PersonalizationSpec) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "digest.send.personalize"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._to, self._from = self._proc.stdin, self._proc.stdout
        self._pending: collections.deque[Future[str]] = collections.deque()
        self._lock = threading.Lock()
        self._stopped = False  # the reader saw the worker's output end
        _write(self._to, spec)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def submit(self, members: Sequence[Member]) -> Future[str]:
        """Called from one thread only (the frames must go out in the order of the futures)."""
        future: Future[str] = Future()
        with self._lock:  # not held while writing: the reader needs it to hand out answers
            if self._stopped:
                _fail(future, "the personalization worker stopped")
                return future
            self._pending.append(future)
        try:
            _write(self._to, list(members))
        except OSError as exc:  # the worker is gone (the reader fails the rest when it sees it)
            with self._lock:
                _fail(future, f"the personalization worker stopped ({exc})")
        return future

    def _read(self) -> None:
        while True:
            try:
                answer = _read(self._from)
            except (OSError, EOFError, pickle.UnpicklingError):
                answer = None
            with self._lock:
                if answer is None:
                    self._stopped = True
                    while self._pending:
                        _fail(self._pending.popleft(), "the personalization worker stopped")
                    return
                future = self._pending.popleft()
            ok, value = answer
            if future.done():  # failed by the writer already
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(SendError(value))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._to.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=30)
        self._from.close()


def _fail(future: Future[str], why: str) -> None:
    """Fail a future once (the writer and the reader can both find the worker gone)."""
    if not future.done():
        future.set_exception(SendError(why))


_LENGTH = struct.Struct("!Q")


def _write(stream: IO[bytes], value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    """The next frame, or None at the end of the stream."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)  # frames come only from our own parent or child process


def _serve() -> None:
    """The worker: a spec, then batches of members, each answered with (ok, text) in order."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    spec = _read(stdin)
    personalizer = Personalizer(spec)
    while (members := _read(stdin)) is not None:
        try:
            answer = (True, personalizer.build(members))
        except SendError as exc:
            answer = (False, str(exc))
        _write(stdout, answer)


if __name__ == "__main__":
    _serve()
