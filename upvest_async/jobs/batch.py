"""Bulk rebalancing: trigger executions for many accounts with bounded concurrency
(:func:`trigger_many`, also exported as :func:`upvest_async.jobs.trigger_many`).

Re-running a batch never creates a second execution: with a ``batch_id`` each execution's
``idempotency-key`` is a UUIDv5 of the batch id and its accounts, so the same batch re-sends the
same keys and the API answers with the original executions. ``on_send`` runs before each
trigger is sent (the CLI writes its durable intent record there); an exception other than an
:class:`~upvest_async.UpvestError` in any group cancels the others and is re-raised.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ..errors import APIConnectionError, APIStatusError, InvalidInputError, UpvestError
from ..validation import check_uuid

if TYPE_CHECKING:
    from ..client import UpvestClient

__all__ = [
    "BATCH_NAMESPACE",
    "REPLAY_HEADER",
    "RebalanceResult",
    "batch_idempotency_key",
    "check_batch",
    "plan_keys",
    "trigger_many",
]

#: Namespace of the UUIDv5 idempotency keys derived from a batch id.
BATCH_NAMESPACE = uuid.UUID("5b0e6a4e-2f7c-5d1a-9c43-7f2a1d6b9e10")

Status = Literal["triggered", "failed", "planned", "sending", "unknown", "not_sent"]

#: Response header by which a server marks the replay of a stored answer (the sandbox sends it).
REPLAY_HEADER = "upvest-idempotent-replay"


@attrs.frozen
class RebalanceResult:
    """The outcome for one account (JSON-ready with :meth:`as_dict`).

    ``status``: ``triggered`` (the execution exists), ``failed`` (see ``error``), or
    ``planned`` (dry run, nothing sent); the rebalance report (:mod:`.report`) adds
    ``sending``, ``unknown`` and ``not_sent``. ``execution_id``: the execution covering the
    account (shared by the accounts of one group); ``idempotency_key``: the key sent;
    ``attempts``: HTTP attempts of the call; ``error``: one line, no secrets; ``request_id``:
    ``upvest-request-id`` of the answer; ``replayed``: the answer is the replay of an earlier
    answer for the same key (no new execution was created).
    """

    account_id: str
    status: Status
    idempotency_key: str
    execution_id: str | None = None
    attempts: int = 0
    error: str | None = None
    request_id: str | None = None
    replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The result as one JSON object of the report: every field by name, ``None`` kept."""
        return attrs.asdict(self)


def batch_idempotency_key(batch_id: str, account_ids: Sequence[str]) -> str:
    """The idempotency key of one execution of batch ``batch_id``: UUIDv5 over the batch id
    and the group's account ids (sorted), stable across runs and machines."""
    return str(uuid.uuid5(BATCH_NAMESPACE, batch_id + "\n" + ",".join(sorted(account_ids))))


def check_batch(
    account_ids: Iterable[str | uuid.UUID], *, concurrency: int, group_size: int,
    batch_id: str | None,
) -> list[str]:
    """The canonical account ids of a batch, after checking it as :func:`trigger_many` does;
    raises :class:`~upvest_async.InvalidInputError`."""
    if not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidInputError("concurrency", "must be an integer >= 1")
    if not isinstance(group_size, int) or group_size < 1:
        raise InvalidInputError("group_size", "must be an integer >= 1")
    if batch_id is not None and (not isinstance(batch_id, str) or not batch_id.strip()):
        raise InvalidInputError("batch_id", "must be a non-empty string")
    accounts = [check_uuid(f"accounts[{i}]", a) for i, a in enumerate(account_ids)]
    if len(set(accounts)) != len(accounts):
        raise InvalidInputError("accounts", "contains the same account twice")
    return accounts


def plan_keys(accounts: Sequence[str], batch_id: str, group_size: int) -> dict[str, str]:
    """The idempotency key each account's group will be sent with, by account id."""
    keys: dict[str, str] = {}
    for group in _groups(list(accounts), group_size):
        keys.update(dict.fromkeys(group, batch_idempotency_key(batch_id, group)))
    return keys


def _groups(accounts: list[str], size: int) -> list[list[str]]:
    return [accounts[i:i + size] for i in range(0, len(accounts), size)]


async def trigger_many(
    client: UpvestClient,
    account_ids: Iterable[str | uuid.UUID],
    *,
    concurrency: int = 16,
    batch_id: str | None = None,
    group_size: int = 1,
    dry_run: bool = False,
    on_result: Callable[[RebalanceResult], Awaitable[None] | None] | None = None,
    max_retries: int | None = None,
    on_send: Callable[[str, list[str]], Awaitable[None] | None] | None = None,
    known: Mapping[str, RebalanceResult] | None = None,
) -> list[RebalanceResult]:
    """Trigger a rebalancing execution (E14) per account, or per group of ``group_size``
    accounts, through ``client.portfolios.rebalancings.executions.create``; return one
    :class:`RebalanceResult` per account, in input order, and never raise for a failed
    trigger::

        results = await trigger_many(client, account_ids, concurrency=32,
                                     batch_id="2026-11-21-nightly")

    At most ``concurrency`` triggers are in flight. A failure is recorded in its accounts'
    results and never stops the others. ``batch_id``: derive each execution's idempotency key
    from it (see :func:`batch_idempotency_key`; without it, random keys); ``dry_run``: validate
    and plan without sending; ``on_result``: called (or awaited) as each account's result is
    known; ``max_retries``: per call (a trigger answered 429 is re-sent as long as its
    deadline allows: throttling alone never fails an account); ``on_send``: called (or
    awaited) with the idempotency key and the group's accounts just before the group is sent
    (if it raises, nothing is sent);
    ``known``: results of an earlier run by account id: a group whose every account is
    ``triggered`` there with the same key is not sent again, its known results are returned.
    A ``triggered`` result is ``replayed`` when the server marked its answer with
    ``upvest-idempotent-replay: true``. Raises :class:`~upvest_async.InvalidInputError` before
    anything is sent for malformed ids, duplicate ids or bad parameters.
    """
    accounts = check_batch(account_ids, concurrency=concurrency, group_size=group_size,
                           batch_id=batch_id)
    executions = client.portfolios.rebalancings.executions
    results: dict[str, RebalanceResult] = {}
    semaphore = asyncio.Semaphore(concurrency)
    halted = False

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
        earlier = [(known or {}).get(account) for account in group]
        if all(r is not None and r.status == "triggered" and r.idempotency_key == key
               for r in earlier):
            for result in earlier:
                assert result is not None
                await publish(result)
            return
        options: dict[str, Any] = dict(client._bulk_options())
        if max_retries is not None:
            options["max_retries"] = max_retries
        async with semaphore:
            if halted:  # another group failed unexpectedly: send nothing more
                return
            if on_send is not None:
                outcome = on_send(key, group)
                if outcome is not None:
                    await outcome
            try:
                response = await client.with_raw_response(
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
                        replayed=response.headers.get(REPLAY_HEADER, "").lower() == "true",
                    ))
                return
        for result in failed:
            await publish(result)

    async def guarded(group: list[str]) -> None:
        nonlocal halted
        try:
            await run(group)
        except BaseException:
            halted = True
            raise

    await _run_all([guarded(group) for group in _groups(accounts, group_size)])
    return [results[account] for account in accounts]


async def _run_all(jobs: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``jobs`` concurrently; the first exception (or a cancellation) cancels the others,
    waits for them to end, and is re-raised, so nothing is still sending afterwards."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        if tasks:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
