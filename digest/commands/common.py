"""What several commands share: the --as-of and category options, and printing check findings.

Options are decorators, declared once here, so every command spells and parses them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from digest.check import Finding
from digest.config import Config
from digest.select import parse_as_of

F = TypeVar("F", bound=Callable[..., Any])

_MARKS = {"ok": "[green]✓[/]", "warning": "[yellow]![/]", "error": "[red]✗[/]"}


def current_config() -> Config:
    """The config the `digest` group loaded (--config, $DIGEST_CONFIG, ./config.toml or defaults)."""
    config: Config = click.get_current_context().find_root().obj.config
    return config


AS_OF_RANGE = (1900, 9000)  # years --as-of may name


def moment(config: Config, value: str | None) -> datetime:
    """--as-of: a date (the start of that day) or a date-time, in the site's time zone; default now."""
    if not value:
        return datetime.now(config.tz)
    when = parse_as_of(value, config.tz)
    if not AS_OF_RANGE[0] <= when.year <= AS_OF_RANGE[1]:
        # A window reaches back weeks before --as-of and a schedule days after it: near year 1 or
        # 9999 that overflows Python's dates with a traceback.
        raise click.BadParameter(
            f"{value!r} is too far from now; give a date between {AS_OF_RANGE[0]} and {AS_OF_RANGE[1]}.",
            param_hint="--as-of",
        )
    return when


def as_of_option(help: str = "End of the edition's window [default: now].") -> Callable[[F], F]:
    """``--as-of DATE[THH:MM]`` as the text given (``moment`` reads it once the config is known)."""
    return click.option("--as-of", "as_of", metavar="DATE[THH:MM]", help=help)


def categories_option(help: str = "Categories [default: all].") -> Callable[[F], F]:
    """``--categories A,B`` and/or ``--category A`` (repeatable): one style for every command."""

    def decorate(f: F) -> F:
        f = click.option(
            "--category", "category", multiple=True, metavar="NAME", help="One category (repeatable)."
        )(f)
        return click.option("--categories", "categories", metavar="A,B", help=help)(f)

    return decorate


def categories_given(categories: str | None, category: Sequence[str]) -> list[str]:
    """What --categories and --category named, in order, as written (commas split)."""
    names = [part.strip() for part in (categories or "").split(",") if part.strip()]
    names += [c.strip() for c in category if c.strip()]
    return names


def known_categories(config: Config, names: Sequence[str]) -> tuple[str, ...]:
    """Category names (any case) to config's keys; an unknown one is refused, naming the known ones.

    With no categories in config (the built-in defaults) names pass through as written.
    """
    if not names or not config.categories:
        return tuple(names)
    from digest.subscribers import resolve_categories

    return resolve_categories(config, names)


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
