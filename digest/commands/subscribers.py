"""`digest subscribers ...` and `digest categories`: manage readers from the terminal.

A thin shell over ``digest.subscribers``: it parses options, opens the store, and prints. An
admin adding someone with ``add`` is taken to have their consent already (they become active at
once, recorded with source "cli"); ``--pending`` leaves them waiting for the web confirmation.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from digest import subscribers as subs
from digest.config import Config, category_key
from digest.errors import DigestError, StoreError
from digest.model import Subscriber
from digest.store import NoDatabaseError, Store, open_store

FORMATS = ("table", "csv", "json")
STATUS_CHOICES = click.Choice([*subs.STATUSES, "all"], case_sensitive=False)


def _config() -> Config:
    return click.get_current_context().obj.config  # type: ignore[no-any-return]


@contextmanager
def _store(config: Config, *, create: bool = True) -> Iterator[Store]:
    """The configured store; ``create=False`` for commands that only read (NoDatabaseError if none)."""
    store = open_store(config, create=create)
    try:
        yield store
    finally:
        store.dispose()


def _display(config: Config, keys: tuple[str, ...] | list[str]) -> str:
    """Category keys as the config spells them, in config order, unknown ones last."""
    from digest.pipeline import display_names  # late: it loads the renderer, which listings skip

    return ", ".join(display_names(config, sorted(keys), config_order=True))


def _describe(sub: Subscriber, config: Config) -> str:
    cats = _display(config, sub.categories)
    return f"{sub.email} ({sub.status}){': ' + cats if cats else ''}"


@click.group("subscribers")
def subscribers_command() -> None:
    """Add, remove, list, import and export subscribers.

    The database is [database] url in config.toml (default: digest.db next to it), or
    $DIGEST_DATABASE_URL. Every change is recorded in the consent log.

    Example: digest subscribers add reader@example.com --categories News,Tech
    """


@subscribers_command.command("add")
@click.argument("email")
@click.option(
    "-c", "--categories", required=True, help="Comma-separated categories from config.toml, e.g. News,Tech."
)
@click.option("--name", default="", help="The reader's name (optional).")
@click.option(
    "--confirmed/--pending",
    default=True,
    show_default=True,
    help="--confirmed: active at once (you have their consent); --pending: waits for them to confirm.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="For a reader already subscribed: replace their categories with these (default: add these).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Re-subscribe someone who unsubscribed, bounced, complained or paused (needs --reason).",
)
@click.option(
    "--reason", default="", help="With --force: how the reader asked to come back (kept in the consent log)."
)
def add(
    email: str, categories: str, name: str, confirmed: bool, replace: bool, force: bool, reason: str
) -> None:
    """Add a subscriber, or add categories to one already subscribed (--replace to replace them).

    An address added here is active at once, because an admin adding it is taken to have the
    reader's consent; use --pending to leave it waiting for confirmation instead. Someone who
    unsubscribed (or bounced, complained, paused) is not re-subscribed: they must subscribe
    again themselves, or you pass --force with --reason saying how they asked you.

    Example: digest subscribers add reader@example.com --categories "News,Data Science" --name "Ada"
    """
    config = _config()
    if reason and not force:
        raise StoreError(
            "--reason goes with --force; leave it out, or add --force if that is what you meant."
        )
    with _store(config) as store:
        before = subs.get(store, email)
        sub, outcome = subs.subscribe(
            store,
            config,
            email,
            categories,
            name=name,
            source="cli",
            confirmed=confirmed,
            categories_mode=subs.REPLACE if replace else subs.ADD,
            force_reason=reason if force else None,
        )
    click.echo(_add_message(config, before, sub, outcome))


def _add_message(config: Config, before: Subscriber | None, sub: Subscriber, outcome: str) -> str:
    """What `add` did, in words: added, re-subscribed, or which categories changed (or nothing)."""
    if outcome != subs.ALREADY_ACTIVE or before is None:
        verb = {
            subs.CREATED: "Added",
            subs.PENDING: "Added, waiting for confirmation:",
            subs.RESUBSCRIBED: "Subscribed again:",
            subs.ALREADY_ACTIVE: "Already subscribed:",
        }[outcome]
        return f"{verb} {_describe(sub, config)}"
    old, new = set(before.categories), set(sub.categories)
    parts = []
    if new - old:
        parts.append(f"added {_display(config, sorted(new - old))}")
    if old - new:
        parts.append(f"removed {_display(config, sorted(old - new))}")
    if sub.name != before.name:
        parts.append("name updated")
    done = "; ".join(parts) if parts else "nothing changed"
    return f"Already subscribed: {_describe(sub, config)} ({done})"


@subscribers_command.command("remove")
@click.argument("email")
@click.option(
    "--erase",
    is_flag=True,
    help="Delete the reader and their consent log completely (GDPR erasure) instead of unsubscribing.",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask before --erase.")
def remove(email: str, erase: bool, yes: bool) -> None:
    """Unsubscribe a reader, keeping the consent log; --erase deletes everything about them.

    Example: digest subscribers remove reader@example.com --erase --yes
    """
    config = _config()
    address = subs.normalise_email(email)
    with _store(config, create=False) as store:
        if erase:
            if subs.get(store, address) is None:
                raise StoreError(f"no subscriber with the address {address}; nothing to erase.")
            if not yes:
                click.confirm(
                    f"Erase {address} and its whole history? This cannot be undone", abort=True, err=True
                )
            subs.remove(store, address)
            click.echo(f"Erased {address}: subscriber, categories, consent log and delivery records.")
            return
        sub = subs.unsubscribe(store, address, source="cli")
    click.echo(f"Unsubscribed {sub.email}. (Their consent log is kept; --erase deletes it.)")


@subscribers_command.command("list")
@click.option(
    "-s",
    "--status",
    "statuses",
    multiple=True,
    type=STATUS_CHOICES,
    help="Only this status (repeatable). Default: all.",
)
@click.option(
    "-c", "--category", "categories", multiple=True, help="Only readers of this category (repeatable)."
)
@click.option(
    "-f", "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output."
)
def list_(statuses: tuple[str, ...], categories: tuple[str, ...], fmt: str) -> None:
    """List subscribers, oldest first, filtered by status and category.

    Example: digest subscribers list --status active --category News --format csv
    """
    config = _config()
    wanted: tuple[str, ...] | None = tuple(s.lower() for s in statuses)
    if not wanted or "all" in wanted:
        wanted = None
    # Categories named here are checked, so a typo is an error rather than an empty list.
    cats = list(subs.resolve_categories(config, list(categories))) if categories else None
    try:
        opened = open_store(config, create=False)
    except NoDatabaseError:  # nobody yet; and looking must not create a database
        if fmt == "json":
            click.echo("[]")
        elif fmt == "csv":
            click.echo(",".join(subs.CSV_COLUMNS))
        else:
            click.echo("No subscribers match.")
        return
    with _opened(opened) as store:
        rows = subs.iter_subscribers(store, statuses=wanted, categories=cats)
        if fmt == "csv":
            import csv

            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(subs.CSV_COLUMNS)
            for sub in rows:
                writer.writerow(subs.csv_row(sub))
        elif fmt == "json":
            click.echo(json.dumps([_as_json(sub) for sub in rows], indent=2, ensure_ascii=False))
        else:
            _table(config, list(rows))


def _as_json(sub: Subscriber) -> dict[str, Any]:
    return {
        "id": sub.id,
        "email": sub.email,
        "name": sub.name,
        "status": sub.status,
        "categories": list(sub.categories),
        "created_at": sub.created_at.isoformat() if sub.created_at else None,
        "confirmed_at": sub.confirmed_at.isoformat() if sub.confirmed_at else None,
    }


def _table(config: Config, rows: list[Subscriber]) -> None:
    console = Console(soft_wrap=False)
    if not rows:
        console.print("No subscribers match.")
        return
    table = Table(title=f"{len(rows)} subscriber{'s' if len(rows) != 1 else ''}")
    table.add_column("Email", overflow="fold")
    table.add_column("Name")
    table.add_column("Status")
    table.add_column("Categories")
    table.add_column("Since")
    for sub in rows:
        since = sub.created_at.date().isoformat() if sub.created_at else ""
        table.add_row(sub.email, sub.name, sub.status, _display(config, sub.categories), since)
    console.print(table)


@subscribers_command.command("show")
@click.argument("email")
def show(email: str) -> None:
    """Show one reader and their consent log (every subscribe, confirm, change, with source).

    Example: digest subscribers show reader@example.com
    """
    config = _config()
    with _store(config, create=False) as store:
        sub = subs.get(store, email)
        if sub is None:
            raise StoreError(f"no subscriber with the address {subs.normalise_email(email)}.")
        events = subs.events_for(store, sub.email)
    click.echo(_describe(sub, config) + (f", name {sub.name!r}" if sub.name else ""))
    for event in events:
        detail = json.dumps(event["detail"], ensure_ascii=False, sort_keys=True)
        click.echo(
            f"  {event['at'].isoformat(timespec='seconds')}  {event['kind']:<11} {event['source']:<8} {detail}"
        )


@subscribers_command.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def import_(file: Path) -> None:
    """Add or update subscribers from a CSV file with columns email,name,categories,status.

    Categories are separated by ';', '|' or spaces; a blank status means active. Each bad row is
    reported with its line number and skipped; the rest are imported. An import never
    re-subscribes someone who unsubscribed. Exits with 1 if any row was refused.

    Example: digest subscribers import readers.csv
    """
    config = _config()
    with _store(config) as store:
        report = subs.import_csv(store, config, file, source="import")
    for problem in report.problems:
        click.echo(f"{file}: {problem}", err=True)
    click.echo(report.summary())
    if report.problems:
        sys.exit(1)


@subscribers_command.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-s", "--status", "statuses", multiple=True, type=STATUS_CHOICES, help="Only this status.")
def export(file: str | None, statuses: tuple[str, ...]) -> None:
    """Write subscribers as CSV (email,name,categories,status) to FILE, or to the screen.

    The file reads back with `digest subscribers import`.

    Example: digest subscribers export readers.csv --status active
    """
    config = _config()
    wanted: tuple[str, ...] | None = tuple(s.lower() for s in statuses)
    if not wanted or "all" in wanted:
        wanted = None
    target = None if not file or file == "-" else Path(file)
    if target is not None:
        _check_writable(target)
    with _store(config, create=False) as store:
        if target is None:
            subs.export_csv(store, sys.stdout, statuses=wanted)
            return
        partial = target.with_name(target.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8", newline="") as out:
                count = subs.export_csv(store, out, statuses=wanted)
            partial.replace(target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise StoreError(f"cannot write {target}: {exc.strerror or exc}; choose another file.") from None
    click.echo(f"Wrote {count} subscriber{'s' if count != 1 else ''} to {target}.", err=True)


def _check_writable(target: Path) -> None:
    """Refuse a target we cannot write before touching the database, saying what to do."""
    if target.is_dir():
        raise StoreError(f"{target} is a folder; give a file name, e.g. {target / 'subscribers.csv'}.")
    folder = target.parent
    if not folder.is_dir():
        raise StoreError(
            f"cannot write {target}: the folder {folder} does not exist; create it (mkdir -p {folder}) "
            "or choose another path."
        )
    if not os.access(folder, os.W_OK):
        raise StoreError(f"cannot write {target}: the folder {folder} is not writable; choose another path.")


@contextmanager
def _opened(store: Store) -> Iterator[Store]:
    try:
        yield store
    finally:
        store.dispose()


@click.command("categories")
@click.option(
    "-f", "--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True
)
def categories_command(fmt: str) -> None:
    """List categories: those readers can pick (config.toml) and those found in posts.

    Shows how many posts and how many active subscribers each has. A category used in posts
    but missing from config.toml cannot be chosen by readers; add it as [[categories]].

    Example: digest categories
    """
    config = _config()
    post_counts, names, note = _post_categories(config)
    try:
        with _store(config, create=False) as store:
            sub_counts = subs.count_by_category(store)
    except NoDatabaseError:
        sub_counts = {}  # no database yet: nobody subscribed to anything
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for cat in config.categories:
        seen.add(cat.key)
        rows.append(
            {
                "name": cat.name,
                "description": cat.description,
                "in_config": True,
                "posts": post_counts.get(cat.key, 0),
                "subscribers": sub_counts.get(cat.key, 0),
            }
        )
    for key in sorted(set(post_counts) - seen, key=lambda k: names[k].casefold()):
        rows.append(
            {
                "name": names[key],
                "description": "",
                "in_config": False,
                "posts": post_counts[key],
                "subscribers": sub_counts.get(key, 0),
            }
        )
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    console = Console(soft_wrap=False)
    if note:
        console.print(note, style="yellow", markup=False)
    if not rows:
        console.print(
            "No categories: add [[categories]] to config.toml and categories to your posts.", markup=False
        )
        return
    table = Table(title="Categories")
    table.add_column("Category")
    table.add_column("Description")
    table.add_column("Posts", justify="right")
    table.add_column("Subscribers", justify="right")
    for row in rows:
        name = row["name"] if row["in_config"] else f"{row['name']} (not in config.toml)"
        table.add_row(name, row["description"], str(row["posts"]), str(row["subscribers"]))
    console.print(table)
    if not config.categories:
        console.print(
            'Readers cannot choose yet: add [[categories]] with name = "..." to config.toml.', markup=False
        )


def _post_categories(config: Config) -> tuple[dict[str, int], dict[str, str], str]:
    """Posts per category key, the display name first seen for each key, and a note if unreadable."""
    from digest.posts import load_posts

    try:
        result = load_posts(
            config.posts_path,
            tz=config.tz,
            extensions=config.posts.extensions,
            excerpt_separator=config.posts.excerpt_separator,
        )
    except DigestError as exc:
        return {}, {}, f"Posts not counted: {exc}"
    counts: dict[str, int] = {}
    names: dict[str, str] = {}
    for post in result.posts:
        for name in post.categories:
            key = category_key(name)
            counts[key] = counts.get(key, 0) + 1
            names.setdefault(key, name)
    return counts, names, ""
