"""Open the listening socket for `digest preview --serve` and `digest serve` before uvicorn starts.

Uvicorn reports a busy port as a logged "[Errno 98] address already in use" and exits; binding
here first turns that (and an unknown host, a privileged port) into one line that says what
to do, and uvicorn then serves on the socket already bound, so nothing can take the port between
the check and the start.
"""

from __future__ import annotations

import errno
import socket

import click

BACKLOG = 2048  # uvicorn's default


def open_listener(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or a click.ClickException of one line with a fix."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise click.ClickException(
            f"cannot listen on {host!r}: {reason}. Give --host an address of this machine, e.g. 127.0.0.1."
        ) from None
    except OverflowError:
        raise click.ClickException(
            f"--port {port} is not a port; use 1024-65535, e.g. --port 8025."
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise click.ClickException(_bind_problem(host, port, exc)) from None
    sock.set_inheritable(True)
    return sock


def bound_port(sock: socket.socket) -> int:
    """The port a listener got (``--port 0`` asks the system for a free one)."""
    return int(sock.getsockname()[1])


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        free = _free_port(host, port)
        hint = f"--port {free}" if free else "another --port"
        return (
            f"port {port} on {host} is already in use (another digest preview or server?). "
            f"Stop that one, or use {hint}."
        )
    if exc.errno == errno.EACCES:
        return f"port {port} needs administrator rights; use a port from 1024 up, e.g. --port 8025."
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; use 127.0.0.1 (or 0.0.0.0 for every address) with --host."
    return f"cannot listen on {host}:{port} ({exc.strerror or exc}). Check --host and --port."


def _free_port(host: str, port: int) -> int | None:
    """The first free port after ``port`` (within 20), to suggest."""
    for candidate in range(port + 1, min(port + 21, 65536)):
        try:
            infos = socket.getaddrinfo(host, candidate, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, kind, proto, _, address = infos[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        except OSError:
            continue
        return candidate
    return None
