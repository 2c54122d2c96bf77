"""The ``rebalance`` job: one rebalancing execution per account (or group), with a JSONL
report of exactly one line per account."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from ..client import UpvestClient
from .batch import RebalanceResult
from .files import atomic_text

__all__ = ["RebalanceSummary", "run_rebalance"]


@attrs.define
class RebalanceSummary:
    """``accounts``: accounts in the batch; ``triggered`` / ``failed`` / ``planned``: accounts
    per outcome; ``executions``: distinct execution ids; ``requests`` and ``token_requests``:
    HTTP requests sent; ``seconds``: wall clock."""

    accounts: int = 0
    triggered: int = 0
    failed: int = 0
    planned: int = 0
    executions: int = 0
    requests: int = 0
    token_requests: int = 0
    seconds: float = 0.0


async def run_rebalance(
    client: UpvestClient,
    account_ids: Sequence[str],
    out: Path | None,
    *,
    concurrency: int = 16,
    batch_id: str | None = None,
    group_size: int = 1,
    dry_run: bool = False,
    max_retries: int | None = None,
    on_result: Callable[[RebalanceResult], None] | None = None,
) -> tuple[RebalanceSummary, list[RebalanceResult]]:
    """Trigger the batch and write the report to ``out`` (``None``: standard output): one
    JSON object per account with ``account_id``, ``execution_id``, ``status``, ``attempts``,
    ``error``, ``request_id`` and ``idempotency_key``, in input order, nothing else.

    On cancellation (Ctrl-C) the report is still written, the accounts not yet answered marked
    ``failed`` with the error ``interrupted`` (a re-run with the same ``batch_id`` completes
    them without duplicating the others), and the cancellation is re-raised.
    Raises :class:`~upvest_async.ValidationError` before sending for bad ids or parameters.
    """
    started = time.perf_counter()
    requests, tokens = client.stats.requests, client.stats.token_requests
    known: dict[str, RebalanceResult] = {}

    def collect(result: RebalanceResult) -> None:
        known[result.account_id] = result
        if on_result is not None:
            on_result(result)

    try:
        results = await client.portfolios.rebalancings.trigger_many(
            account_ids, concurrency=concurrency, batch_id=batch_id, group_size=group_size,
            dry_run=dry_run, on_result=collect, max_retries=max_retries,
        )
    except asyncio.CancelledError:
        results = [known.get(account) or RebalanceResult(
            account, "failed", "", error="interrupted") for account in account_ids]
        _write_report(out, results)
        raise
    _write_report(out, results)
    summary = RebalanceSummary(
        accounts=len(results),
        triggered=sum(r.status == "triggered" for r in results),
        failed=sum(r.status == "failed" for r in results),
        planned=sum(r.status == "planned" for r in results),
        executions=len({r.execution_id for r in results if r.execution_id}),
        requests=client.stats.requests - requests,
        token_requests=client.stats.token_requests - tokens,
        seconds=time.perf_counter() - started,
    )
    return summary, results


def _write_report(out: Path | None, results: Sequence[RebalanceResult]) -> None:
    with atomic_text(out) as stream:
        for result in results:
            stream.write(json.dumps(result.as_dict()) + "\n")
