"""The ``upvest-async`` command line: ``export-positions``, ``rebalance``, ``sandbox`` and
``webhooks listen``.

Bulk commands and ``webhooks listen`` use the ``UPVEST_API_*`` credentials when set, otherwise
an embedded sandbox started in-process. Exit statuses: 0 complete, 1 some accounts failed, 2
usage or configuration error, 130 interrupted (``webhooks listen`` exits 0 on Ctrl-C).
"""

from __future__ import annotations

import click

from .export import export_positions_command
from .rebalance import rebalance_command
from .sandbox import sandbox_command
from .webhooks import webhooks_group

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="upvest-async")
def main() -> None:
    """Async SDK tools for the Upvest Investment API."""


main.add_command(export_positions_command)
main.add_command(rebalance_command)
main.add_command(sandbox_command)
main.add_command(webhooks_group)
