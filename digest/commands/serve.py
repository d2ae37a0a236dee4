"""`digest serve`: the subscribe pages, preference centre and one-click unsubscribe, over uvicorn."""

from __future__ import annotations

import logging
import re

import click

from digest.commands.listen import bound_port, open_listener
from digest.config import Config

# Personal links carry a token that acts as a password for one address: keep it out of logs.
_TOKEN_PATH = re.compile(r"(/(?:confirm|preferences|unsubscribe)/)[^/?\s\"]+")


class RedactTokens(logging.Filter):
    """Replaces the token in access-log lines with '…', keeping which page was hit."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN_PATH.sub(r"\1…", a) if isinstance(a, str) else a for a in record.args)
        return True


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port.")
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=False,
    show_default=True,
    help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a reverse proxy).",
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    show_default=True,
    help="Proxies whose X-Forwarded-* headers are trusted (comma-separated, or *).",
)
@click.pass_obj
def serve_command(state: object, host: str, port: int, proxy_headers: bool, forwarded_allow_ips: str) -> None:
    """Run the subscriber web app: subscribe, confirm, preferences, one-click unsubscribe.

    Links in emails start with [web] base_url, so set it to the address readers reach this
    server at (behind a TLS proxy: the https:// address, and pass --proxy-headers so that rate
    limits see the reader's IP, not the proxy's). Sign-up links are signed with $DIGEST_SECRET.

    \b
    Example: DIGEST_SECRET=... digest serve --host 127.0.0.1 --port 8000
    Example: digest serve --host 127.0.0.1 --port 8000 --proxy-headers --forwarded-allow-ips 127.0.0.1
    """
    import uvicorn

    from digest.web import create_app

    config: Config = state.config  # type: ignore[attr-defined]
    listener = open_listener(host, port)  # a busy port is one line with a hint, not uvicorn's log
    port = bound_port(listener)
    try:
        app = create_app(config)
    except BaseException:
        listener.close()
        raise
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    click.echo(f"digest serve: http://{host}:{port}/  (links in emails use {config.web.base_url})")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
            server_header=False,
            log_level="info",
        )
    )
    server.run(sockets=[listener])
