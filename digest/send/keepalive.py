"""Keep-alive connections for the ``sendgrid`` client: one per thread, reused between requests.

python_http_client (what ``sendgrid`` is built on) opens a new connection through urllib for
every request. Against api.sendgrid.com that is a TCP and TLS handshake per batch, and on
loopback it is still most of a request's cost (about 2.1 ms against 0.45 ms reused). We keep
everything else the library does (the URL, headers, body, its ``Response`` and its mapping of
HTTP errors to exceptions) and replace its transport: ``Client._make_request``, the hook the
library separates out for that, and the few lines that call it, which also build a fresh urllib
opener per request (about 1 ms: it scans the environment for proxies) and format the whole
body into a debug message that is then dropped.

A connection idle for longer than ``IDLE_SECONDS`` is not reused: servers close idle
connections, and a POST on a connection the server has just closed is ambiguous (it may or may
not have been read), which is exactly what exactly-once sending must avoid.
"""

from __future__ import annotations

import http.client
import io
import json
import select
import ssl
import threading
import time
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request

from python_http_client import Client
from python_http_client.client import Response
from python_http_client.exceptions import handle_error

IDLE_SECONDS = 10.0


class NoAnswer(Exception):
    """The request was written and no answer came (read timeout, reset): it may have been taken."""


class _Answer:
    """What python_http_client's ``Response`` reads from a urllib response."""

    def __init__(self, status: int, body: bytes, headers: http.client.HTTPMessage) -> None:
        self._status, self._body, self._headers = status, body, headers

    def getcode(self) -> int:
        return self._status

    def read(self) -> bytes:
        return self._body

    def info(self) -> http.client.HTTPMessage:
        return self._headers


class ConnectionPool:
    """One persistent connection per thread and host (the sender posts from a worker thread)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[http.client.HTTPConnection] = []
        self._context: ssl.SSLContext | None = None

    def open(self, request: Request, timeout: float | None) -> _Answer:
        url = urlsplit(request.full_url)
        conn = self._connection(url.scheme, url.netloc, timeout)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        headers = dict(request.header_items())
        try:
            # Connect and write: a failure here means the server never had the whole request
            # (a partial body is never taken), so the caller may retry.
            conn.request(request.get_method(), path, body=request.data, headers=headers)
        except (OSError, http.client.HTTPException) as exc:
            self._drop(conn)
            # urllib wraps socket errors in URLError; callers treat both as "not sent".
            raise URLError(exc) from None
        try:
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            # The request was written and no answer came: the server may have taken it.
            self._drop(conn)
            raise NoAnswer(f"{type(exc).__name__}: {exc}") from None
        if response.will_close:
            self._drop(conn)
        else:
            self._local.used = time.monotonic()
        if response.status >= 400:
            error = HTTPError(
                request.full_url, response.status, response.reason, response.headers, io.BytesIO(body)
            )
            raise handle_error(error)
        return _Answer(response.status, body, response.headers)

    def _connection(self, scheme: str, netloc: str, timeout: float | None) -> http.client.HTTPConnection:
        local = self._local
        conn: http.client.HTTPConnection | None = getattr(local, "conn", None)
        if conn is not None and (
            local.key != (scheme, netloc) or time.monotonic() - local.used > IDLE_SECONDS or _dropped(conn)
        ):
            self._drop(conn)
            conn = None
        if conn is None:
            if scheme == "https":
                if self._context is None:
                    self._context = ssl.create_default_context()
                conn = http.client.HTTPSConnection(netloc, timeout=timeout, context=self._context)
            else:
                conn = http.client.HTTPConnection(netloc, timeout=timeout)
            local.conn, local.key, local.used = conn, (scheme, netloc), time.monotonic()
            with self._lock:
                self._all.append(conn)
        else:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """The server closed (or wrote to) an idle connection: a request on it could be lost
    after it was written, an unknown answer, so it is not reused (urllib3 checks the same)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class KeepAliveClient(Client):  # type: ignore[misc]
    """python_http_client's Client with its transport swapped for a ``ConnectionPool``."""

    def __init__(self, *args: Any, pool: ConnectionPool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool = pool

    @classmethod
    def wrap(cls, client: Client, pool: ConnectionPool) -> KeepAliveClient:
        return cls._like(client, client._url_path, pool)

    def _build_client(self, name: str | None = None) -> KeepAliveClient:
        return self._like(self, [*self._url_path, name] if name else self._url_path, self.pool)

    @classmethod
    def _like(cls, client: Client, url_path: list[str], pool: ConnectionPool) -> KeepAliveClient:
        """A client for ``url_path`` with ``client``'s settings, as the library's own
        ``_build_client`` makes one (it names its class, so a subclass must redo it)."""
        return cls(
            host=client.host,
            version=client._version,
            request_headers=client.request_headers,
            url_path=url_path,
            append_slash=client.append_slash,
            timeout=client.timeout,
            pool=pool,
        )

    def _make_request(self, opener: Any, request: Request, timeout: float | None = None) -> _Answer:
        return self.pool.open(request, timeout or self.timeout)

    def __getattr__(self, name: str) -> Any:
        """``client.mail.send.post(...)``: as the library's, without the per-request opener."""
        if name.startswith("_") or name in ("methods", "pool"):
            raise AttributeError(name)
        if name not in self.methods:
            return super().__getattr__(name)
        method = name.upper()

        def http_request(
            request_body: Any = None,
            query_params: dict[str, Any] | None = None,
            request_headers: dict[str, str] | None = None,
            timeout: float | None = None,
            **_: Any,
        ) -> Response:
            if request_headers:
                self._update_headers(request_headers)
            data = None
            if request_body is not None:
                content_type = self.request_headers.get("Content-Type")
                if isinstance(request_body, bytes):
                    data = request_body  # encoded once by the caller (a send holds one copy)
                elif content_type is not None and content_type != "application/json":
                    data = request_body.encode("utf-8")  # already JSON text (ours always is)
                else:
                    self.request_headers.setdefault("Content-Type", "application/json")
                    data = json.dumps(request_body).encode("utf-8")
            request = Request(
                self._build_url(query_params), headers=self.request_headers, data=data, method=method
            )
            return Response(self._make_request(None, request, timeout=timeout))

        return http_request
