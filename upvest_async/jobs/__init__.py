"""Bulk jobs behind the command line: exporting positions and rebalancing many accounts.

For library use: :func:`trigger_many` (trigger a rebalancing execution per account or group
of accounts, with bounded concurrency and idempotency keys derived from a batch id) and its
:class:`RebalanceResult`.
"""

from .batch import RebalanceResult, trigger_many

__all__ = ["RebalanceResult", "trigger_many"]
