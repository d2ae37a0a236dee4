"""`digest send`, `digest status` and `digest cancel`: deliver an edition, see it, stop a scheduled one.

A thin shell over ``digest.send.delivery``: parse options, show a progress bar and a summary.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bar
from rich.table import Table

from digest.commands.common import (
    as_of_option,
    categories_given,
    categories_option,
    current_config,
    known_categories,
    moment,
    print_findings,
)
from digest.config import Config
from digest.errors import DigestError
from digest.select import parse_as_of
from digest.send.summary import SendSummary
from digest.store import Store


def _config(backend: str | None) -> Config:
    config = current_config()
    if backend and backend != config.sender.backend:
        config = dataclasses.replace(config, sender=dataclasses.replace(config.sender, backend=backend))
    return config


def _edition_id(store: Store, given: str | None) -> str:
    """The edition named, else the latest one the database knows."""
    if given:
        return given
    from digest.editions import latest_edition_id

    found = latest_edition_id(store)
    if found is None:
        raise DigestError("No edition in the database yet; `digest send` or `digest run` creates one.")
    return found


@click.command("send")
@as_of_option()
@click.option(
    "--dry-run", is_flag=True, help="Build every message, count recipients and batches, send nothing."
)
@click.option(
    "--test", "test_address", metavar="ADDRESS", help="Send one copy (subject marked [TEST]) here only."
)
@categories_option("With --test: the category set to send [default: all].")
@click.option(
    "--sender",
    "sender_name",
    type=click.Choice(["sendgrid", "smtp", "outbox"]),
    help="Override sender.backend.",
)
@click.option("--outbox", "outbox", type=click.Path(file_okay=False), help="Folder for the outbox sender.")
@click.option(
    "--send-at", "send_at", metavar="DATE[THH:MM]", help="Schedule at SendGrid (at most 72 h ahead)."
)
@click.option("--resend-in-flight", is_flag=True, help="Resend batches an interrupted run left in flight.")
def send_command(
    as_of: str | None,
    dry_run: bool,
    test_address: str | None,
    categories: str | None,
    category: tuple[str, ...],
    sender_name: str | None,
    outbox: str | None,
    send_at: str | None,
    resend_in_flight: bool,
) -> None:
    """Send the edition to every active subscriber, each with their own categories, exactly once.

    The edition is the week ending at --as-of (default now), named by its ISO week, e.g.
    2026-W02. Running it again sends only to readers who have not had it. Batches an
    interrupted run left "in flight" are reported, not resent (the provider may have taken
    them); --resend-in-flight sends them again once you have checked.

    \b
    Example:
      digest send --dry-run
      digest send --test me@example.com --categories US,Markets
      digest send --test me@example.com --category Europe --category Climate
      digest send --as-of 2026-01-12T07:00 --sender sendgrid --send-at 2026-01-12T09:00
    """
    from digest import weekly
    from digest.send import delivery
    from digest.store import open_store

    config = _config(sender_name)
    console = Console()
    named = categories_given(categories, category)
    if named and not test_address:
        raise click.UsageError(
            "--categories goes with --test; a real send uses each reader's own categories."
        )
    if test_address:
        from digest.subscribers import normalise_email

        address = normalise_email(test_address)  # refuses what is not an address, saying why
        keys = known_categories(config, named)
    when = parse_as_of(send_at, config.tz) if send_at else None
    store = open_store(config, create=not dry_run)  # a dry run never creates a database
    try:
        plan = weekly.plan_for_send(config, store, moment(config, as_of))
        if test_address:
            message_id = delivery.send_test(config, plan, address=address, categories=keys, outbox=outbox)
            console.print(
                f"Sent a test copy ({', '.join(named) or 'all categories'}) of edition {plan.id} to "
                f"{address} through {config.sender.backend} (message id {message_id})."
            )
            return
        problems = [f for f in plan.findings if f.level != "ok"]
        if problems:
            print_findings(console, problems)
        if plan.blocked and not dry_run:
            raise DigestError("Not sent: the deliverability check found errors (see above).")
        with Bar(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn(
                "sent {task.fields[sent]} · skipped {task.fields[skipped]} · failed {task.fields[failed]}"
            ),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        ) as bar:
            task = bar.add_task("Dry run" if dry_run else "Sending", total=None, sent=0, skipped=0, failed=0)

            def progress(p: delivery.Progress) -> None:
                bar.update(
                    task,
                    completed=p.processed,
                    total=p.total,
                    sent=p.sent,
                    skipped=p.skipped,
                    failed=p.failed,
                )

            summary = delivery.deliver(
                config,
                store,
                plan,
                sender_name=config.sender.backend,
                outbox=Path(outbox) if outbox else None,
                dry_run=dry_run,
                send_at=when,
                resend_in_flight=resend_in_flight,
                progress=progress,
            )
    finally:
        store.dispose()
    print_summary(console, summary)
    if summary.failed or summary.in_flight:
        raise click.exceptions.Exit(1)


def print_summary(console: Console, summary: SendSummary) -> None:
    title = f"Edition {summary.edition_id}" + (" (dry run: nothing sent)" if summary.dry_run else "")
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("Outcome")
    table.add_column("Readers", justify="right")
    table.add_row("would be sent" if summary.dry_run else "sent", str(summary.sent))
    if summary.already_sent:
        table.add_row("already sent by an earlier run", str(summary.already_sent))
    for reason, n in summary.skipped.most_common():
        table.add_row(f"skipped: {reason}", str(n))
    for reason, n in summary.failed.most_common():
        table.add_row(f"[red]failed: {reason}[/]", str(n))
    for batch in summary.in_flight:
        table.add_row(
            f"[yellow]in flight (batch {batch.id}, {_set_name(batch.category_set)}), not resent[/]",
            str(batch.recipients),
        )
    console.print(table)
    extra = (
        f"{summary.batches} batch(es), {summary.category_sets} category set(s), {summary.renders} render(s)"
    )
    if summary.requests:
        extra += f", {summary.requests} request(s)"
    console.print(f"{extra}, {summary.seconds:.1f}s via {summary.sender}.")
    if summary.send_at:
        console.print(
            f"Scheduled for {summary.send_at:%Y-%m-%d %H:%M %Z}; `digest cancel {summary.edition_id}` stops it."
        )
    if summary.in_flight:
        console.print(
            "[yellow]Batches were in flight when an earlier run stopped: nobody can tell from here whether "
            "their request reached the provider (a run can stop before, during or after it). Check the "
            "provider's activity feed, then run again with --resend-in-flight if they did not go out.[/]"
        )
    if summary.failed:
        console.print("[red]Some readers were not sent.[/] Run the same command again to retry only them.")
    for note in summary.notes:
        console.print(f"Note: {note}.")


def _set_name(label: str, config: Config | None = None) -> str:
    """A stored category set as people read it: config's names (the empty set is every category)."""
    if not label:
        return "all categories"
    if config is None:
        return label
    from digest.pipeline import display_names
    from digest.subscribers import category_set_keys

    return ", ".join(display_names(config, category_set_keys(label)))


@click.command("status")
@click.argument("edition_id", metavar="[EDITION]", required=False)
def status_command(edition_id: str | None) -> None:
    """Show what was sent for an edition (default: the latest): readers by state, reasons,
    batches, anything in flight.

    \b
    Example:
      digest status
      digest status 2026-W02
    """
    from digest.send.status import READER_STATES, edition_status
    from digest.store import open_store

    config = _config(None)
    console = Console()
    store = open_store(config, create=False)  # looking never creates a database
    try:
        st = edition_status(store, _edition_id(store, edition_id))
    finally:
        store.dispose()
    tz = config.tz
    console.print(
        f"[bold]Edition {st.edition_id}[/]: {st.shown_status}; window {st.window_start.astimezone(tz):%Y-%m-%d %H:%M} "
        f"to {st.window_end.astimezone(tz):%Y-%m-%d %H:%M} {tz}"
    )
    if st.sent_at:
        console.print(f"Finished {st.sent_at.astimezone(tz):%Y-%m-%d %H:%M %Z}.")
    if st.send_at:
        console.print(
            f"Scheduled at SendGrid for {st.send_at.astimezone(tz):%Y-%m-%d %H:%M %Z} (batch {st.sendgrid_batch_id})."
        )
    if st.lock_owner:
        console.print(f"[yellow]A run is sending it now ({st.lock_owner}).[/]")
    table = Table(show_header=True, header_style="bold")
    table.add_column("Readers")
    table.add_column("Count", justify="right")
    for state in READER_STATES:  # every reader in exactly one row; the rows sum to the audience
        table.add_row(state, str(st.readers.get(state, 0)))
    for reason, n in sorted(st.reasons.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {reason}", str(n))
    table.add_row("[bold]audience[/]", str(st.audience))
    console.print(table)
    if st.category_sets:
        sets = Table(show_header=True, header_style="bold")
        sets.add_column("Category set")
        sets.add_column("Sent", justify="right")
        for name, n in sorted(st.category_sets.items(), key=lambda kv: -kv[1]):
            sets.add_row(_set_name(name, config), str(n))
        console.print(sets)
    console.print("Batches: " + (", ".join(f"{k} {v}" for k, v in sorted(st.batches.items())) or "none"))
    for batch in st.in_flight:
        console.print(
            f"[yellow]Batch {batch.id} ({_set_name(batch.category_set, config)}, {batch.recipients} readers) is undecided, "
            f"in flight since {batch.since:%Y-%m-%d %H:%M} UTC[/]: its request may or may not have reached the provider. "
            "Check the provider's activity feed for it; `digest send --resend-in-flight` resends it if it did "
            "not go out."
        )
    pending = st.readers.get("pending", 0)
    if pending and st.status != "cancelled" and not st.lock_owner:
        console.print(
            f"[yellow]{pending} reader(s) have not been sent this edition yet[/]: `digest send` "
            f"(with the edition's --as-of) sends to them and to nobody twice."
        )


@click.command("cancel")
@click.argument("edition_id", metavar="[EDITION]", required=False)
def cancel_command(edition_id: str | None) -> None:
    """Cancel an edition scheduled with --send-at (default: the latest), while SendGrid still
    allows (until about 10 minutes before its time).

    \b
    Example:
      digest cancel
      digest cancel 2026-W02
    """
    from digest.send.status import cancel
    from digest.store import open_store

    config = _config(None)
    store = open_store(config, create=False)  # nothing to cancel in a database that is not there
    try:
        edition_id = _edition_id(store, edition_id)
        st = cancel(config, store, edition_id)
    finally:
        store.dispose()
    Console().print(
        f"Edition {edition_id} cancelled at SendGrid (batch {st.sendgrid_batch_id}); nothing of it will be "
        "delivered. Its posts go in the next edition."
    )
