"""Bulk rebalancing: trigger executions for many accounts with bounded concurrency.

Re-running a batch never creates a second execution: with a ``batch_id`` each execution's
``idempotency-key`` is a UUIDv5 of the batch id and its accounts, so the same batch re-sends the
same keys and the API answers with the original executions.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ..errors import APIConnectionError, APIStatusError, UpvestError, ValidationError
from ..validation import check_uuid

if TYPE_CHECKING:
    from ..resources.rebalancings import Executions

__all__ = ["BATCH_NAMESPACE", "RebalanceResult", "batch_idempotency_key", "trigger_many"]

#: Namespace of the UUIDv5 idempotency keys derived from a batch id.
BATCH_NAMESPACE = uuid.UUID("5b0e6a4e-2f7c-5d1a-9c43-7f2a1d6b9e10")

Status = Literal["triggered", "failed", "planned"]


@attrs.frozen
class RebalanceResult:
    """The outcome for one account (JSON-ready with :meth:`as_dict`).

    ``status``: ``triggered`` (the execution exists), ``failed`` (see ``error``), or
    ``planned`` (dry run, nothing sent). ``execution_id``: the execution covering the account
    (shared by the accounts of one group); ``idempotency_key``: the key sent; ``attempts``:
    HTTP attempts of the call; ``error``: one line, no secrets; ``request_id``:
    ``upvest-request-id`` of the answer.
    """

    account_id: str
    status: Status
    idempotency_key: str
    execution_id: str | None = None
    attempts: int = 0
    error: str | None = None
    request_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The result as one JSON object of the report: every field by name, ``None`` kept."""
        return attrs.asdict(self)


def batch_idempotency_key(batch_id: str, account_ids: Sequence[str]) -> str:
    """The idempotency key of one execution of batch ``batch_id``: UUIDv5 over the batch id
    and the group's account ids (sorted), stable across runs and machines."""
    return str(uuid.uuid5(BATCH_NAMESPACE, batch_id + "\n" + ",".join(sorted(account_ids))))


def _groups(accounts: list[str], size: int) -> list[list[str]]:
    return [accounts[i:i + size] for i in range(0, len(accounts), size)]


async def trigger_many(
    executions: Executions,
    account_ids: Iterable[str | uuid.UUID],
    *,
    concurrency: int = 16,
    batch_id: str | None = None,
    group_size: int = 1,
    dry_run: bool = False,
    on_result: Callable[[RebalanceResult], Awaitable[None] | None] | None = None,
    max_retries: int | None = None,
) -> list[RebalanceResult]:
    """Trigger a rebalancing execution (E14) per account, or per group of ``group_size``
    accounts; return one :class:`RebalanceResult` per account, in input order.

    At most ``concurrency`` triggers are in flight. A failure is recorded in its accounts'
    results and never stops the others. ``batch_id``: derive each execution's idempotency key
    from it (see :func:`batch_idempotency_key`; without it, random keys); ``dry_run``: validate
    and plan without sending; ``on_result``: called (or awaited) as each account's result is
    known; ``max_retries``: per call. Raises :class:`~upvest_async.ValidationError` before
    anything is sent for malformed ids, duplicate ids or bad parameters.
    """
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency", "must be an integer >= 1")
    if not isinstance(group_size, int) or group_size < 1:
        raise ValidationError("group_size", "must be an integer >= 1")
    if batch_id is not None and (not isinstance(batch_id, str) or not batch_id.strip()):
        raise ValidationError("batch_id", "must be a non-empty string")
    accounts = [check_uuid(f"accounts[{i}]", a) for i, a in enumerate(account_ids)]
    if len(set(accounts)) != len(accounts):
        raise ValidationError("accounts", "contains the same account twice")
    results: dict[str, RebalanceResult] = {}
    semaphore = asyncio.Semaphore(concurrency)

    async def publish(result: RebalanceResult) -> None:
        results[result.account_id] = result
        if on_result is not None:
            outcome = on_result(result)
            if outcome is not None:
                await outcome

    async def run(group: list[str]) -> None:
        key = (batch_idempotency_key(batch_id, group) if batch_id is not None
               else str(uuid.uuid4()))
        if dry_run:
            for account in group:
                await publish(RebalanceResult(account, "planned", key))
            return
        options: dict[str, Any] = {} if max_retries is None else {"max_retries": max_retries}
        async with semaphore:
            try:
                response = await executions._client.with_raw_response(
                    executions.create, accounts=group, idempotency_key=key, **options
                )
            except (APIStatusError, APIConnectionError) as exc:
                failed = [RebalanceResult(account, "failed", key, attempts=exc.attempts,
                                          error=str(exc),
                                          request_id=getattr(exc, "request_id", None))
                          for account in group]
            except UpvestError as exc:
                failed = [RebalanceResult(account, "failed", key, error=str(exc))
                          for account in group]
            else:
                for account in group:
                    await publish(RebalanceResult(
                        account, "triggered", key, execution_id=str(response.parsed.id),
                        attempts=response.attempts, request_id=response.request_id,
                    ))
                return
        for result in failed:
            await publish(result)

    await asyncio.gather(*(run(group) for group in _groups(accounts, group_size)))
    return [results[account] for account in accounts]
