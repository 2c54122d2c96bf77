"""The ``rebalance`` job: one rebalancing execution per account (or group), never sent without
a durable record in its report (the format and its lifecycle: :mod:`.report`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from ..client import UpvestClient
from .batch import RebalanceResult, batch_idempotency_key, check_batch, plan_keys, trigger_many
from .report import PreviousReport, ReportError, ReportJournal

__all__ = ["RebalanceSummary", "check_plan", "run_rebalance"]


@attrs.define
class RebalanceSummary:
    """``accounts``: accounts in the batch; ``triggered`` / ``failed`` / ``planned`` /
    ``unknown`` (sent, answer not known) / ``not_sent``: accounts per final status;
    ``replayed``: triggered accounts whose answer was a replay; ``executions``: distinct
    execution ids; ``requests`` and ``token_requests``: HTTP requests sent; ``throttled``:
    requests answered 429 (rate limited, and re-sent); ``learned_rate``: the rate limiter's
    pacing rate at the end (requests per second, ``None``: not paced); ``seconds``: wall
    clock."""

    accounts: int = 0
    triggered: int = 0
    failed: int = 0
    planned: int = 0
    unknown: int = 0
    not_sent: int = 0
    replayed: int = 0
    executions: int = 0
    requests: int = 0
    token_requests: int = 0
    throttled: int = 0
    learned_rate: float | None = None
    seconds: float = 0.0
    #: The final result of each account, in input order (what the report holds).
    results: list[RebalanceResult] = attrs.field(factory=list, repr=False)

    def as_dict(self) -> dict[str, int | float | None]:
        """The counts, JSON-ready (``seconds`` rounded to milliseconds)."""
        data = attrs.asdict(self, filter=lambda a, _: a.name != "results")
        rate = None if self.learned_rate is None else round(self.learned_rate, 2)
        return {**data, "seconds": round(self.seconds, 3), "learned_rate": rate}

    def count(self, results: Sequence[RebalanceResult]) -> None:
        """Set the per-status counts from the final ``results``."""
        self.results = list(results)
        self.accounts = len(results)
        for status in ("triggered", "failed", "planned", "unknown", "not_sent"):
            setattr(self, status, sum(r.status == status for r in results))
        self.replayed = sum(r.status == "triggered" and r.replayed for r in results)
        self.executions = len({r.execution_id for r in results if r.execution_id})


def check_plan(account_ids: Sequence[str], batch_id: str | None, group_size: int,
               previous: PreviousReport | None, *, dry_run: bool) -> None:
    """Refuse (:class:`~.report.ReportError`) a run whose plan contradicts the report of an
    earlier run of the batch: an account it recorded is missing or would get another
    idempotency key (other accounts or ``group_size``), or a dry run would replace records of
    sent triggers. Sends nothing."""
    if previous is None or not previous.results:
        return
    if dry_run:
        if previous.any_sent:
            raise ReportError("--dry-run would replace a report of sent triggers (use another "
                              "--out)")
        return
    planned: dict[str, str | None] = dict.fromkeys(account_ids)
    if batch_id is not None:
        planned.update(plan_keys(account_ids, batch_id, group_size))
    for account, result in previous.results.items():
        if result.status not in {"planned", "not_sent"} and account not in planned:
            raise ReportError(f"the report records account {account}, which this run does not "
                              "include (re-run with the same accounts, or use another --out)")
        if result.status in {"sending", "triggered", "failed", "unknown"} and \
                planned.get(account) != result.idempotency_key:
            raise ReportError(f"account {account} was sent with idempotency key "
                              f"{result.idempotency_key}, this run would use another (re-run "
                              "with the same accounts, order and --group-size)")


async def run_rebalance(
    client: UpvestClient | None,
    account_ids: Sequence[str],
    out: Path,
    *,
    concurrency: int = 16,
    batch_id: str | None = None,
    group_size: int = 1,
    dry_run: bool = False,
    max_retries: int | None = None,
    on_result: Callable[[RebalanceResult], None] | None = None,
    previous: PreviousReport | None = None,
    summary: RebalanceSummary | None = None,
) -> tuple[RebalanceSummary, list[RebalanceResult]]:
    """Trigger the batch with its report at ``out`` (:mod:`.report`): created before the first
    trigger, an intent record before each send, each result as soon as known, then replaced
    by one line per account in input order. ``previous``: the report of an earlier run of the
    same batch (:func:`~.report.load_report`): its triggered groups are not sent again, and a
    key it had sent is reported ``replayed``.

    ``client`` may be ``None`` for a ``dry_run``, which sends nothing and reads nothing.

    However the run ends (complete, an exception, Ctrl-C) the report is finished and
    ``summary`` (returned) is filled before the exception propagates: the accounts sent but
    not answered are ``unknown``, those never sent ``not_sent``. Raises
    :class:`~.report.ReportError` before sending when the plan contradicts ``previous``, and
    :class:`~upvest_async.InvalidInputError` for bad ids or parameters, and
    :class:`ValueError` for ``client=None`` without ``dry_run``.
    """
    if client is None and not dry_run:
        raise ValueError("run_rebalance needs a client unless dry_run")
    started = time.perf_counter()
    summary = summary if summary is not None else RebalanceSummary()
    requests, tokens = _counts(client)
    account_ids = check_batch(account_ids, concurrency=concurrency, group_size=group_size,
                              batch_id=batch_id)
    check_plan(account_ids, batch_id, group_size, previous, dry_run=dry_run)
    keys = plan_keys(account_ids, batch_id, group_size) if batch_id is not None else {}
    sent_before = previous.sent_keys if previous is not None else frozenset()
    carried = previous.results if previous is not None and not dry_run else {}
    known: dict[str, RebalanceResult] = {}
    journal = ReportJournal.create(out, batch_id, previous if carried else None)

    async def send(key: str, group: list[str]) -> None:
        intents = [RebalanceResult(account, "sending", key) for account in group]
        journal.record(intents, durable=False)
        known.update((r.account_id, r) for r in intents)
        await journal.sync()  # durable before the trigger is sent

    def collect(result: RebalanceResult) -> None:
        if result.status == "triggered" and result.idempotency_key in sent_before \
                and not result.replayed and result is not carried.get(result.account_id):
            result = attrs.evolve(result, replayed=True)
        known[result.account_id] = result
        journal.record([result], durable=False)
        if on_result is not None:
            on_result(result)

    results: list[RebalanceResult] = []
    try:
        if client is None or dry_run:
            _plan(account_ids, batch_id, group_size, collect)
        else:
            await trigger_many(
                client, account_ids,
                concurrency=concurrency, batch_id=batch_id, group_size=group_size,
                on_result=collect, max_retries=max_retries, on_send=send, known=carried,
            )
    finally:
        results = [_final(account, known.get(account), keys.get(account, ""))
                   for account in account_ids]
        summary.count(results)
        after = _counts(client)
        summary.requests = after[0] - requests
        summary.token_requests = after[1] - tokens
        summary.seconds = time.perf_counter() - started
        journal.finish(results)
    return summary, results


def _counts(client: UpvestClient | None) -> tuple[int, int]:
    """The client's requests and token requests so far (none without a client)."""
    return (0, 0) if client is None else (client.stats.requests, client.stats.token_requests)


def _plan(account_ids: Sequence[str], batch_id: str | None, group_size: int,
          collect: Callable[[RebalanceResult], None]) -> None:
    """A dry run: each account ``planned`` with its group's idempotency key (as
    :func:`~.batch.trigger_many` would send it; a random one per group without a batch id)."""
    for start in range(0, len(account_ids), group_size):
        group = list(account_ids[start:start + group_size])
        key = (batch_idempotency_key(batch_id, group) if batch_id is not None
               else str(uuid.uuid4()))
        for account in group:
            collect(RebalanceResult(account, "planned", key))


def _final(account: str, result: RebalanceResult | None, key: str) -> RebalanceResult:
    if result is None:
        return RebalanceResult(account, "not_sent", key,
                               error="the run ended before it was sent")
    if result.status == "sending":
        return attrs.evolve(result, status="unknown",
                            error="the run ended before the answer; re-run the batch")
    return result
