"""`digest preview`: build the coming edition for one category set and write it to files."""

from __future__ import annotations

import contextlib
import webbrowser
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from digest import pipeline
from digest.commands.common import as_of_option as as_of_decorator
from digest.commands.common import categories_given, moment
from digest.commands.listen import bound_port, open_listener
from digest.config import Config
from digest.errors import EmptyEditionError
from digest.lead.rubric import advice
from digest.manifest_diff import diff_manifests, load_manifest, render_diff
from digest.model import Edition, RenderedEdition
from digest.preview.build import edition_manifest, write_outputs
from digest.sites import with_site_config

DEFAULT_PORT = 8025


def split_categories(value: str | None) -> list[str]:
    """`--categories US,Europe` (commas; spaces around names ignored): commands.common's rule."""
    return categories_given(value, ())


def as_of_option(config: Config, value: str | None) -> datetime:
    """--as-of in the site's time zone, default now: commands.common.moment."""
    return moment(config, value)


@click.command("preview")
@click.option(
    "--posts", "posts_dir", type=click.Path(file_okay=False), help="Posts folder [config: posts.folder]."
)
@as_of_decorator("End of the edition window [default: now].")
@click.option("--categories", metavar="A,B", help="The reader's categories [default: all].")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), help="Output folder [config: edition.output]."
)
@click.option(
    "--open", "open_browser", is_flag=True, help="Open the HTML (or the --serve page) in a browser."
)
@click.option("--no-cache", is_flag=True, help="Parse every post again instead of using the cache.")
@click.option(
    "--against",
    "against",
    type=click.Path(dir_okay=False),
    metavar="MANIFEST",
    help="Compare with a saved manifest.json and print what changed (exits 0).",
)
@click.option("--serve", is_flag=True, help="Start the live preview page instead of writing files once.")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --serve: address to listen on.")
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="With --serve: port.",
)
@click.pass_obj
def preview_command(
    state: object,
    posts_dir: str | None,
    as_of: str | None,
    categories: str | None,
    out_dir: str | None,
    open_browser: bool,
    no_cache: bool,
    against: str | None,
    serve: bool,
    host: str,
    port: int,
) -> None:
    """Build the edition a reader of CATEGORIES would get, and write it to files.

    Writes digest.html (the email), digest.txt (its plain-text part) and manifest.json (what
    it contains) to the output folder, and prints what was selected and what was skipped.
    With --against, also prints what changed since that manifest (posts added, removed or
    edited, subject, counts per category set), so an edition can be reviewed before it is sent.
    With --serve, starts a page on 127.0.0.1 that shows the edition for any category set or
    subscriber, at phone and desktop width, light and dark, and reloads when files change.

    \b
    Example: digest preview --posts posts/ --as-of 2026-01-09 --categories US,Europe --out build/
    Example: digest preview --against build/manifest.json
    Example: digest preview --serve --port 8025 --categories Markets,Technology
    """
    config: Config = state.config  # type: ignore[attr-defined]
    folder = Path(posts_dir) if posts_dir else None
    if folder is not None and not folder.is_dir():
        raise click.BadParameter(f"{folder} is not a folder of posts.", param_hint="--posts")
    if folder is not None:
        config = with_site_config(config, folder)  # the Jekyll/Hugo site's _config.yml / hugo.toml
    if serve:
        _serve(
            config,
            posts_dir=folder,
            as_of=as_of,
            categories=split_categories(categories),
            out_dir=Path(out_dir) if out_dir else None,
            against=Path(against) if against else None,
            host=host,
            port=port,
            open_browser=open_browser,
        )
        return
    console = Console(stderr=False)
    moment = as_of_option(config, as_of)
    saved = load_manifest(against) if against else None  # a bad --against fails before any work
    wanted = split_categories(categories)
    _check_categories(config, wanted)
    loaded = pipeline.load(config, folder=folder, use_cache=not no_cache)
    edition = pipeline.build_edition(config, as_of=moment, categories=wanted, posts=loaded)
    problem: EmptyEditionError | None = None
    rendered: RenderedEdition | None = None
    try:
        # A post the email cannot be built with is left out (and listed as skipped), not the edition.
        edition, rendered = pipeline.render_isolated(config, edition)
    except EmptyEditionError as exc:
        problem = exc
    _print_report(console, config, edition, total=len(loaded.posts))
    if problem is not None:
        if saved is None:
            raise click.ClickException(str(problem)) from None
        console.print(f"[yellow]warning:[/] {problem}")
    out = Path(out_dir) if out_dir else config.path(config.edition.output)
    data = edition_manifest(config, edition, rendered, loaded, as_of=moment)
    try:
        write_outputs(out, rendered, data, config=config)
    except OSError as exc:
        raise click.ClickException(
            f"cannot write the preview to {out} ({exc.strerror or exc}); choose a folder you can write to with --out."
        ) from None
    if rendered is not None:
        for warning in rendered.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
        console.print(f"Subject: [bold]{rendered.subject}[/]")
        console.print(
            f"Wrote {out / 'digest.html'} ({rendered.html_bytes / 1024:.1f} KB), {out / 'digest.txt'}, {out / 'manifest.json'}"
        )
    else:
        console.print(f"Wrote {out / 'manifest.json'} (no email: the edition is empty)")
    if saved is not None:
        diff = diff_manifests(saved, data)
        console.print()
        console.print(render_diff(diff))
        pipeline.write_json(out / "manifest-diff.json", diff.to_dict())
    if open_browser and rendered is not None:
        webbrowser.open((out / "digest.html").resolve().as_uri())


def _check_categories(config: Config, wanted: list[str]) -> None:
    """An unknown --categories name is a typo, not "nothing was published in it"."""
    if not config.categories:
        return  # no categories configured: any name a post uses is fair
    unknown = [name for name in wanted if config.find_category(name) is None]
    if unknown:
        known = ",".join(c.name for c in config.categories)
        raise click.BadParameter(
            f"{', '.join(unknown)} {'is not a category' if len(unknown) == 1 else 'are not categories'} "
            f"in the config; use some of {known}.",
            param_hint="--categories",
        )


def _serve(
    config: Config,
    *,
    posts_dir: Path | None,
    as_of: str | None,
    categories: list[str],
    out_dir: Path | None,
    against: Path | None,
    host: str,
    port: int,
    open_browser: bool,
) -> None:
    """Run the preview page under uvicorn until Ctrl+C."""
    import uvicorn

    from digest.preview.app import PreviewSettings, create_app

    if as_of:
        as_of_option(config, as_of)  # a bad --as-of fails here, not on every page load
    if against:
        load_manifest(against)
    settings = PreviewSettings(
        config=config,
        config_path=config.source,
        posts_dir=posts_dir,
        as_of=as_of,
        out_dir=out_dir,
        categories=tuple(categories),
        against=against,
        host=host,
    )
    listener = open_listener(host, port)  # a busy port is one line with a hint, not uvicorn's log
    port = bound_port(listener)
    try:
        app = create_app(settings)
    except BaseException:
        listener.close()
        raise
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    server = app.state.preview
    watched = ", ".join(str(p) for p in server.watch_roots())
    click.echo(f"Preview of {config.site.name} at {url}")
    click.echo(f"Watching {watched}{', ' + str(config.source) if config.source else ''}. Ctrl+C to stop.")
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.secho(
            f"warning: listening on {host}: anyone who can reach it can read subscribers' categories "
            "and send test emails. Use 127.0.0.1 unless you mean it.",
            fg="yellow",
            err=True,
        )
    if open_browser:
        webbrowser.open(url)
    uv = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2, lifespan="on"
        )
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl+C after a clean shutdown
        uv.run(sockets=[listener])
    click.echo("Preview stopped.")


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
    for line in (line for item in edition.items for line in advice(item)):
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)
    if edition.skipped:
        skipped = Table(title=f"Skipped ({len(edition.skipped)})")
        skipped.add_column("Post", overflow="fold")
        skipped.add_column("Why")
        for skip in edition.skipped[:50]:
            skipped.add_row(skip.path, skip.reason)
        console.print(skipped)
        if len(edition.skipped) > 50:
            console.print(f"... and {len(edition.skipped) - 50} more skipped (see manifest.json).")
