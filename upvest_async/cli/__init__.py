"""The ``upvest-async`` command line: ``export-positions``, ``mirror load`` / ``mirror
serve``, ``rebalance``, ``sandbox`` and ``webhooks listen``.

The target is never inferred. Bulk commands and ``webhooks listen`` use the API the
``UPVEST_API_*`` variables configure, which must be complete (exit 2 otherwise, naming what is
missing); with ``--embedded-sandbox`` (and no ``UPVEST_API_*`` variable set) they use an
embedded sandbox instead (in a child process for the bulk commands, so the figures they print
are the client's). See :func:`.common.resolve_target`. Exit statuses: 0 complete, 1 some
accounts failed (or an unexpected error, after the summary and report are written), 2 usage or
configuration error, 130 interrupted (``webhooks listen`` exits 0 on Ctrl-C). A usage error is
one line on standard error, ``upvest-async <command>: error: <option>: <rule>``, with no usage
block and no traceback (:class:`OneLineErrors`); so is an unexpected exception (exit 1;
``UPVEST_ASYNC_TRACEBACK=1`` shows its traceback). An unknown command is a usage error that
suggests the command meant.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from ..redaction import redact
from .common import EXIT_FAILED, EXIT_INTERRUPTED, one_line
from .preflight import shown

__all__ = ["COMMANDS", "OneLineErrors", "main"]

#: Each command's name and where it is defined (``module:attribute``, relative to this
#: package), imported only when looked up (see :class:`OneLineErrors`).
COMMANDS = {
    "export-positions": ".export:export_positions_command",
    "mirror": ".mirror:mirror_group",
    "rebalance": ".rebalance:rebalance_command",
    "sandbox": ".sandbox:sandbox_command",
    "webhooks": ".webhooks:webhooks_group",
}


class OneLineErrors(click.Group):
    """A group whose usage errors (click's own and :class:`~.preflight.PreflightError`) are
    printed as one line and exit with their status (2), without click's "Usage:/Try" block;
    an unexpected exception is one line too, exit 1.

    Its commands (:data:`COMMANDS`) are imported when they are looked up, so that a command
    imports only what it runs: ``export-positions`` never imports the webhook receiver
    (``aiohttp.web``, JOSE) nor the sandbox, and starts that much sooner."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The command names: :data:`COMMANDS`, sorted."""
        return sorted(COMMANDS)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """As :meth:`click.Group.resolve_command`; an unknown command is a usage error that
        suggests the one meant (a command it begins, or a close spelling), or lists them."""
        name = args[0] if args else ""
        if (args and not ctx.resilient_parsing and not name.startswith("-")
                and self.get_command(ctx, name) is None):
            known = self.list_commands(ctx)
            meant = [command for command in known if command.startswith(name)] if name else []
            meant = meant or difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = (f"Did you mean {meant[0]!r}?" if len(meant) == 1 else
                    f"Commands: {', '.join(meant or known)}.")
            raise click.UsageError(f"No such command {name!r}. {hint}", ctx=ctx)
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, imported from its module on first use; ``None`` for a
        name that is no command (click then reports it)."""
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, _, name = where.partition(":")
        command = getattr(importlib.import_module(module, __name__), name)
        assert isinstance(command, click.Command)
        return command

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line as :meth:`click.Group.main` does, printing errors as one
        line (see the class docstring) and exiting with the command's status."""
        try:
            status = super().main(args, prog_name, complete_var, standalone_mode=False,
                                  **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if isinstance(ctx, click.Context) else "upvest-async"
            click.echo(shown(one_line(f"{where}: error: {exc.format_message()}")), err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("upvest-async: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # a bug: one line, unless asked for the traceback
            if os.environ.get("UPVEST_ASYNC_TRACEBACK"):
                raise
            text = f"unexpected {type(exc).__name__}: {redact(str(exc))}"
            click.echo(shown(one_line(f"upvest-async: {text} "
                                      "(set UPVEST_ASYNC_TRACEBACK=1 for the traceback)")),
                       err=True)
            sys.exit(EXIT_FAILED)
        if not standalone_mode:
            return status
        sys.exit(status if isinstance(status, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="upvest-async")
def main() -> None:
    """Async SDK tools for the Upvest Investment API."""


