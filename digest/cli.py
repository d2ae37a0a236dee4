"""The command line: a thin click shell over the library.

Each command lives in ``digest/commands/<name>.py`` and is registered here. Only this layer
knows about terminals: it catches ``DigestError``, prints its message and exits 1 (the
traceback only with ``--verbose``).
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from digest.config import Config, load_config
from digest.errors import DigestError

# command name -> module in digest.commands that defines a click command or group of that name
COMMANDS = {
    "preview": "preview",
    "categories": "subscribers",
    "subscribers": "subscribers",
    "serve": "serve",
    "send": "send",
    "status": "send",
    "cancel": "send",
    "check": "check",
    "run": "schedule",
    "schedule": "schedule",
    "scheduler": "schedule",
    "archive": "archive",
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs, so `digest --help` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._load(name) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    def _load(self, name: str) -> click.Command | None:
        module_name = COMMANDS.get(name)
        if module_name is None:
            return None
        try:
            module = importlib.import_module(f"digest.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"digest.commands.{module_name}":
                return None
            raise
        command = getattr(module, name.replace("-", "_") + "_command", None)
        return command if isinstance(command, click.Command) else None


class State:
    """What every command shares: the config (loaded on first use) and the verbosity."""

    def __init__(self, config_path: str | None, verbose: bool) -> None:
        self.config_path = config_path
        self.verbose = verbose
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="DIGEST_CONFIG",
    help="config.toml to use (default: ./config.toml, else built-in defaults).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show debug logging and full tracebacks.")
@click.version_option(package_name="digest")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Build and send a weekly digest of your site's posts.

    Example: digest preview --posts posts/ --as-of 2026-01-09 --out build/
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = State(config_path, verbose)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning a DigestError into a message and exit code 1."""
    verbose = "-v" in (argv or sys.argv) or "--verbose" in (argv or sys.argv)
    try:
        code = cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except DigestError as exc:
        if verbose:
            raise
        click.secho(f"Error: {exc}", fg="red", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
