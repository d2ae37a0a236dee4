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
    from digest.store import NoDatabaseError, open_store, sqlite_path

    config: Config = state.config  # type: ignore[attr-defined]
    if not config.web.archive:
        raise click.ClickException(
            "web.archive is false in the config, so there is no public archive to write; set it "
            "to true (and web.archive_url to where the files are served) to publish one."
        )
    try:
        store = open_store(config, create=False)  # writing pages must not start a database
    except NoDatabaseError:
        where = sqlite_path(config, config.database_url)
        raise click.ClickException(
            f"there is no database at {where}, so no edition has been sent and there is no archive "
            "to write; run it where `digest send` runs (or point [database] url / "
            "$DIGEST_DATABASE_URL at its database)."
        ) from None
    try:
        entries = published_editions(store)
    finally:
        store.dispose()
    written = write_static(config, entries, pipeline.load(config), out)
    click.echo(f"Wrote {len(entries)} edition(s), the list and the feed: {len(written)} files in {out}/")
    if not entries:
        click.echo("No edition has been sent yet; the list says so until the first one goes out.")
