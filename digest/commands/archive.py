"""`digest archive`: write every edition that went out as static web pages and an Atom feed."""

from __future__ import annotations

from pathlib import Path

import click

from digest import pipeline
from digest.archive import published_editions, write_static
from digest.config import Config


@click.command("archive")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write the archive into (created if missing).",
)
@click.pass_obj
def archive_command(state: object, out: Path) -> None:
    """Write the web archive as static files, for a site that hosts itself.

    Writes OUT/index.html (the list of editions), OUT/<edition>/index.html (each edition as a
    web page, as it looks in the email) and OUT/feed.xml (an Atom feed of editions). Serve OUT
    at the address in web.archive_url, so each email's "view in browser" link reaches its page
    (`digest serve` serves the same pages at web.base_url/archive).

    Example: digest archive --out site/archive
    """
    from digest.store import open_store

    config: Config = state.config  # type: ignore[attr-defined]
    store = open_store(config)
    try:
        entries = published_editions(store)
    finally:
        store.dispose()
    written = write_static(config, entries, pipeline.load(config), out)
    click.echo(f"Wrote {len(entries)} edition(s), the list and the feed: {len(written)} files in {out}/")
    if not entries:
        click.echo("No edition has been sent yet; the list says so until the first one goes out.")
