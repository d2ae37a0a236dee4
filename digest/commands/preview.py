"""`digest preview`: build the coming edition for one category set and write it to files."""

from __future__ import annotations

import webbrowser
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from digest import pipeline
from digest.config import Config
from digest.errors import EmptyEditionError
from digest.model import Edition
from digest.select import parse_as_of


def split_categories(value: str | None) -> list[str]:
    """`--categories US,Europe` (commas; spaces around names ignored)."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def as_of_option(config: Config, value: str | None) -> datetime:
    """--as-of: a date (the start of that day) or a date-time, in the site's time zone; default now."""
    if value:
        return parse_as_of(value, config.tz)
    return datetime.now(config.tz)


@click.command("preview")
@click.option(
    "--posts", "posts_dir", type=click.Path(file_okay=False), help="Posts folder [config: posts.folder]."
)
@click.option("--as-of", "as_of", metavar="DATE[THH:MM]", help="End of the edition window [default: now].")
@click.option("--categories", metavar="A,B", help="The reader's categories [default: all].")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), help="Output folder [config: edition.output]."
)
@click.option("--open", "open_browser", is_flag=True, help="Open the HTML in a browser afterwards.")
@click.option("--no-cache", is_flag=True, help="Parse every post again instead of using the cache.")
@click.pass_obj
def preview_command(
    state: object,
    posts_dir: str | None,
    as_of: str | None,
    categories: str | None,
    out_dir: str | None,
    open_browser: bool,
    no_cache: bool,
) -> None:
    """Build the edition a reader of CATEGORIES would get, and write it to files.

    Writes digest.html (the email), digest.txt (its plain-text part) and manifest.json (what
    it contains) to the output folder, and prints what was selected and what was skipped.

    Example: digest preview --posts posts/ --as-of 2026-01-09 --categories US,Europe --out build/
    """
    config: Config = state.config  # type: ignore[attr-defined]
    console = Console(stderr=False)
    moment = as_of_option(config, as_of)
    folder = Path(posts_dir) if posts_dir else None
    if folder is not None and not folder.is_dir():
        raise click.BadParameter(f"{folder} is not a folder of posts.", param_hint="--posts")
    loaded = pipeline.load(config, folder=folder, use_cache=not no_cache)
    edition = pipeline.build_edition(
        config, as_of=moment, categories=split_categories(categories), posts=loaded
    )
    _print_report(console, config, edition, total=len(loaded.posts))
    try:
        rendered = pipeline.render(config, edition)
    except EmptyEditionError as exc:
        raise click.ClickException(str(exc)) from None
    out = Path(out_dir) if out_dir else config.path(config.edition.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "digest.html").write_text(rendered.html, encoding="utf-8")
    (out / "digest.txt").write_text(rendered.text, encoding="utf-8")
    hashes = {p.path: p.content_hash for p in loaded.posts}
    pipeline.write_json(
        out / "manifest.json", pipeline.with_hashes(pipeline.manifest(edition, rendered, config), hashes)
    )
    for warning in rendered.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(f"Subject: [bold]{rendered.subject}[/]")
    console.print(
        f"Wrote {out / 'digest.html'} ({rendered.html_bytes / 1024:.1f} KB), {out / 'digest.txt'}, {out / 'manifest.json'}"
    )
    if open_browser:
        webbrowser.open((out / "digest.html").resolve().as_uri())


def _print_report(console: Console, config: Config, edition: Edition, *, total: int) -> None:
    tz = config.tz
    start = edition.window_start.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    end = edition.window_end.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
    wanted = ", ".join(edition.categories) or "all categories"
    console.print(f"Edition [bold]{edition.id}[/]: {start} to {end}, {wanted}; {total} posts read")
    table = Table(title="Selected", show_lines=False)
    table.add_column("Section")
    table.add_column("Date")
    table.add_column("Title")
    table.add_column("Post", overflow="fold")
    for section in edition.sections:
        for item in section.items:
            table.add_row(
                section.name, item.date.astimezone(tz).strftime("%a %d %b %H:%M"), item.title, item.post_path
            )
    if edition.post_count:
        console.print(table)
    if edition.skipped:
        skipped = Table(title=f"Skipped ({len(edition.skipped)})")
        skipped.add_column("Post", overflow="fold")
        skipped.add_column("Why")
        for skip in edition.skipped[:50]:
            skipped.add_row(skip.path, skip.reason)
        console.print(skipped)
        if len(edition.skipped) > 50:
            console.print(f"... and {len(edition.skipped) - 50} more skipped (see manifest.json).")
