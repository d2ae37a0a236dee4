"""`digest check`: build the coming edition and print the deliverability checklist."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console

from digest import pipeline
from digest.check import check_edition, check_leads, has_errors
from digest.commands.common import (
    as_of_option,
    categories_given,
    categories_option,
    current_config,
    known_categories,
    moment,
    print_findings,
)
from digest.weekly import sample_headers


@click.command("check")
@as_of_option("End of the edition window [default: now].")
@categories_option("The reader's categories [default: all].")
@click.option(
    "--posts", "posts_dir", type=click.Path(file_okay=False), help="Posts folder [config: posts.folder]."
)
def check_command(
    as_of: str | None, categories: str | None, category: Sequence[str], posts_dir: str | None
) -> None:
    """Check the coming edition for what gets email clipped, junked or refused.

    Builds the edition (as `digest preview` would) and checks its size against Gmail's
    clipping, the plain-text part, the unsubscribe link and one-click headers, the postal
    address, the From domain against sender.sending_domain, image alt text, links, the
    subject, and HTML/CSS that Gmail or Outlook drop (caniemail data). Prints a checklist with
    fixes; exits 1 when there are errors (the same errors stop `digest run` and `digest send`).

    \b
    Example:
      digest check
      digest check --as-of 2026-01-12 --categories US,Europe
      digest check --category Markets --category Climate --posts posts/
    """
    config = current_config()
    console = Console()
    wanted = known_categories(config, categories_given(categories, category))
    folder = Path(posts_dir) if posts_dir else None
    if folder is not None and not folder.is_dir():
        raise click.BadParameter(f"{folder} is not a folder of posts.", param_hint="--posts")
    loaded = pipeline.load(config, folder=folder)
    edition = pipeline.build_edition(
        config, as_of=moment(config, as_of), categories=list(wanted), posts=loaded
    )
    # EmptyEditionError says there is nothing to check; a post the email cannot carry is left out
    edition, rendered = pipeline.render_isolated(config, edition)
    names = ", ".join(edition.categories) or "all categories"
    console.print(
        f"Edition [bold]{edition.id}[/] for {names}: {edition.post_count} post(s), "
        f"sender [bold]{config.sender.backend}[/]"
    )
    findings = [*check_edition(rendered, config, headers=sample_headers(config)), *check_leads(edition)]
    print_findings(console, findings)
    if has_errors(findings):
        raise click.exceptions.Exit(1)
