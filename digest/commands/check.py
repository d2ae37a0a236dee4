"""`digest check`: build the coming edition and print the deliverability checklist."""

from __future__ import annotations

from collections.abc import Sequence

import click
from rich.console import Console
from rich.markup import escape

from digest import pipeline
from digest.check import Finding, check_edition, has_errors
from digest.commands.preview import as_of_option, split_categories
from digest.config import Config

_MARKS = {"ok": "[green]✓[/]", "warning": "[yellow]![/]", "error": "[red]✗[/]"}


def print_findings(
    console: Console, findings: Sequence[Finding], *, title: str = "Deliverability check"
) -> None:
    """The checklist: a mark and the finding per check, and the fix under anything not ok."""
    console.print(f"[bold]{title}[/]")
    for f in findings:
        console.print(f" {_MARKS[f.level]} [bold]{escape(f.code)}[/]: {escape(f.message)}", highlight=False)
        if f.level != "ok" and f.fix:
            console.print(f"     [dim]fix:[/] {escape(f.fix)}", highlight=False)
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    verdict = (
        f"[red]{errors} error(s)[/]: a real send stops here."
        if errors
        else "[green]No errors[/]: the edition can be sent."
    )
    console.print(f"{verdict} {warnings} warning(s).")


@click.command("check")
@click.option("--as-of", "as_of", metavar="DATE[THH:MM]", help="End of the edition window [default: now].")
@click.option("--categories", metavar="A,B", help="The reader's categories [default: all].")
@click.pass_obj
def check_command(state: object, as_of: str | None, categories: str | None) -> None:
    """Check the coming edition for what gets email clipped, junked or refused.

    Builds the edition (as `digest preview` would) and checks its size against Gmail's
    clipping, the plain-text part, the unsubscribe link and one-click headers, the postal
    address, the From domain against sender.sending_domain, image alt text, links, the
    subject, and HTML/CSS that Gmail or Outlook drop (caniemail data). Prints a checklist with
    fixes; exits 1 when there are errors (the same errors stop `digest run` and `digest send`).

    Example: digest check --as-of 2026-01-12 --categories US,Europe
    """
    config: Config = state.config  # type: ignore[attr-defined]
    console = Console()
    moment = as_of_option(config, as_of)
    edition = pipeline.build_edition(config, as_of=moment, categories=split_categories(categories))
    # EmptyEditionError says there is nothing to check; a post the email cannot carry is left out
    edition, rendered = pipeline.render_isolated(config, edition)
    wanted = ", ".join(edition.categories) or "all categories"
    console.print(
        f"Edition [bold]{edition.id}[/] for {wanted}: {edition.post_count} post(s), "
        f"sender [bold]{config.sender.backend}[/]"
    )
    findings = check_edition(rendered, config)
    print_findings(console, findings)
    if has_errors(findings):
        raise click.exceptions.Exit(1)
