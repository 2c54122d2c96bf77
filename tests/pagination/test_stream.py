"""Streaming pagination: prefetch, order, bounds, cancellation, consistency, exports."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from support.clients import client_for

from upvest_async import InvalidInputError, PaginationError, Position, UpvestClient
from upvest_async.converter import unstructure
from upvest_async.pagination import MAX_UNSETTLED, Paginator, chain_pages
from upvest_async.sandbox import Sandbox
from upvest_async.sandbox.tenant import POSITIONS_CACHE_SIZE, Tenant
from upvest_async.stats import ClientStats
from upvest_async.transport import RawResponse

# --- helpers -----------------------------------------------------------------------------------


@attrs.define
class Traffic:
    """Page requests seen on the client side: started, in flight now and at most, cancelled."""

    started: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    cancelled: int = 0
    delivered: int = 0  # pages the test consumed (set by the test)
    max_ahead: int = 0  # the most requests started and not yet delivered


def track(client: UpvestClient) -> Traffic:
    """Count the client's requests (paginators take ``client._request`` when created)."""
    traffic = Traffic()
    original = client._request

    async def request(*args: Any, **kwargs: Any) -> RawResponse:
        traffic.started += 1
        traffic.in_flight += 1
        traffic.max_in_flight = max(traffic.max_in_flight, traffic.in_flight)
        traffic.max_ahead = max(traffic.max_ahead, traffic.started - traffic.delivered)
        try:
            return await original(*args, **kwargs)
        except asyncio.CancelledError:
            traffic.cancelled += 1
            raise
        finally:
            traffic.in_flight -= 1

    client._request = request  # type: ignore[method-assign]
    return traffic


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["instrument"]["uuid"] for item in items]


def read_counter(tenant: Tenant, account: str, action: Callable[[int], None]) -> None:
    """Call ``action(n)`` before the n-th read (1-based) of ``account``'s positions."""
    reads = 0

    def hook(read_account: str) -> None:
        nonlocal reads
        if read_account == account:
            reads += 1
            action(reads)

    tenant.on_positions_read = hook


@contextlib.contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """Collect what the running loop reports (e.g. "Task was destroyed but it is pending")."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: seen.append(context))
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)


async def settle(rounds: int = 50) -> set[asyncio.Task[Any]]:
    """Let the loop run a little; return the tasks other than the current one."""
    current = asyncio.current_task()
    for _ in range(rounds):
        others = {task for task in asyncio.all_tasks() if task is not current}
        if not others:
            return others
        await asyncio.sleep(0)
    return {task for task in asyncio.all_tasks() if task is not current}


class ThreadedSandbox:
    """A sandbox on its own loop in a thread, so the test loop holds only client tasks."""

    def __init__(self, **options: Any) -> None:
        self.sandbox = Sandbox(**options)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.sandbox:
            self._ready.set()
            await self._stop.wait()
            # Let the handlers of requests the client gave up on finish their latency first:
            # aiohttp's server leaves a connection unclosed when it shuts down mid-handler.
            await asyncio.sleep(self.sandbox.state.latency + 0.2)
        await asyncio.sleep(0.05)  # let the closed connections finish closing

    def __enter__(self) -> Sandbox:
        self._thread.start()
        assert self._ready.wait(10)
        return self.sandbox

    def __exit__(self, *_: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def fake_request(
    answer: Callable[[int, int], tuple[list[dict[str, Any]], dict[str, Any]]],
) -> tuple[Callable[..., Any], list[tuple[int, int]]]:
    """A request function for a Paginator: ``answer(offset, limit)`` gives data and meta."""
    calls: list[tuple[int, int]] = []

    async def request(method: str, path: str, *, params: dict[str, int]) -> RawResponse:
        await asyncio.sleep(0)
        offset, limit = int(params["offset"]), int(params["limit"])
        calls.append((offset, limit))
        data, meta = answer(offset, limit)
        body = json.dumps({"meta": meta, "data": data}).encode()
        return RawResponse(method=method, path=path, status=200, headers={}, body=body,
                           attempts=1)

    return request, calls


def numbers(count: int) -> list[dict[str, Any]]:
    """``count`` distinct positions, ordered."""
    account = "c5161455-4d27-4781-bc74-f05532e49a77"
    return [
        {"account_id": account, "instrument": {"uuid": str(uuid.UUID(int=i + 1))},
         "quantity": str(i), "available_for_trading": str(i), "locked_for_trading": "0",
         "pending_settlement": "0"}
        for i in range(count)
    ]


def meta(offset: int, limit: int, count: int, total: int) -> dict[str, Any]:
    return {"offset": offset, "limit": limit, "count": count, "total_count": total}


def paginator(request: Callable[..., Any], **options: Any) -> Paginator[Position]:
    return Paginator(request, ClientStats(), "/accounts/x/positions", Position, **options)


# --- order, prefetch, bounds -------------------------------------------------------------------


@pytest.mark.parametrize(("page_size", "prefetch"), [(100, 1), (100, 4), (250, 8), (1000, 3)])
async def test_items_in_order_with_prefetch(
    sandbox: Sandbox, client: UpvestClient, page_size: int, prefetch: int
) -> None:
    account = sandbox.tenant.account_ids[2]
    listed = client.positions.list(account, page_size=page_size, prefetch=prefetch)
    positions = [unstructure(p) async for p in listed]
    assert positions == sandbox.tenant.positions(account, notify=False)
    assert listed.next_offset == 1200 and not listed.inconsistencies


async def test_prefetch_requests_pages_concurrently_within_the_window() -> None:
    sandbox = Sandbox(accounts=1, positions_per_account=1200, seed=3, latency_ms=30)
    async with sandbox, client_for(sandbox) as client:
        account = sandbox.tenant.account_ids[0]
        await client.positions.retrieve(  # the token first, so only page requests are counted
            account, sandbox.tenant.positions(account)[0]["instrument"]["uuid"]
        )
        traffic = track(client)
        listed = client.positions.list(account, page_size=100, prefetch=4)
        pages = [page async for page in listed.pages()]
    assert traffic.started == 12 == len(pages)
    assert traffic.max_in_flight == 4  # concurrent, and never more than prefetch
    # The server saw requests overlap too: four of them arrived within one latency.
    arrivals = sorted(
        entry.at for entry in sandbox.state.journal if entry.path.endswith("/positions")
    )
    assert len(arrivals) == 12
    assert any(arrivals[i + 3] - arrivals[i] < 0.03 for i in range(len(arrivals) - 3))


async def test_prefetch_one_reads_one_page_at_a_time(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    traffic = track(client)
    listed = client.positions.list(sandbox.tenant.account_ids[0], page_size=300, prefetch=1)
    assert len([p async for p in listed]) == 1200
    assert traffic.max_in_flight == 1 and traffic.started == 4


async def test_slow_consumer_holds_at_most_prefetch_pages(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    traffic = track(client)
    listed = client.positions.list(sandbox.tenant.account_ids[1], page_size=50, prefetch=3)
    async for _ in listed.pages():
        traffic.delivered += 1
        for _ in range(5):  # the network runs ahead while the consumer is busy
            await asyncio.sleep(0.001)
        assert traffic.started - traffic.delivered <= 3
    assert traffic.delivered == 24 and traffic.max_ahead <= 3 + 1
    assert traffic.max_in_flight <= 3


async def test_max_items_offset_resume_and_page_metas(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    account = sandbox.tenant.account_ids[3]
    expected = sandbox.tenant.positions(account, notify=False)
    pages = [page async for page in client.positions.list(account, page_size=500).pages()]
    assert [(p.meta.offset, p.meta.count, p.meta.total_count) for p in pages] == [
        (0, 500, 1200), (500, 500, 1200), (1000, 200, 1200)
    ]
    few = client.positions.list(account, page_size=100, offset=10, max_items=250, prefetch=4)
    pages = [page async for page in few.pages()]
    assert [(p.meta.offset, p.meta.count) for p in pages] == [(10, 100), (110, 100), (210, 50)]
    assert [unstructure(p) for page in pages for p in page.items] == expected[10:260]
    assert few.next_offset == 260
    # Stop part-way, then resume from next_offset: every item exactly once.
    listed = client.positions.list(account, page_size=100)
    first = []
    async with contextlib.aclosing(aiter(listed)) as items:
        async for position in items:
            first.append(position)
            if len(first) == 333:
                break
    assert listed.next_offset == 333
    rest = [p async for p in client.positions.list(account, offset=listed.next_offset)]
    assert [unstructure(p) for p in first + rest] == expected
    assert [p async for p in client.positions.list(account, max_items=0)] == []
    assert [p async for p in client.positions.list(account, offset=5000)] == []


@pytest.mark.parametrize(
    ("option", "value"),
    [("prefetch", 0), ("prefetch", True), ("strict", "yes"), ("page_size", 0), ("offset", -1),
     ("max_items", -1)],
)
async def test_paging_options_are_validated(
    sandbox: Sandbox, client: UpvestClient, option: str, value: Any
) -> None:
    with pytest.raises(InvalidInputError):
        client.positions.list(sandbox.tenant.account_ids[0], **{option: value})


# --- cancellation ------------------------------------------------------------------------------


async def test_break_cancels_requests_in_flight_without_leaks_or_warnings() -> None:
    with ThreadedSandbox(accounts=2, positions_per_account=1200, seed=5, latency_ms=300) as sb:
        with warnings.catch_warnings(), loop_errors() as errors:
            warnings.simplefilter("error")
            async with client_for(sb) as client:
                traffic = track(client)
                async for _ in client.positions.list(sb.tenant.account_ids[0], page_size=100):
                    break  # the generator is dropped: the loop's asyncgen hooks close it
                assert await settle() == set()
                assert traffic.cancelled == traffic.started - 1 == 8
                # The same through .pages(), closed at once by aclosing.
                listed = client.positions.list(sb.tenant.account_ids[1], page_size=100)
                async with contextlib.aclosing(listed.pages()) as pages:
                    async for _ in pages:
                        break
                assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} \
                    == set()
            gc.collect()
        assert errors == []


async def test_cancelling_the_consumer_cancels_its_page_requests() -> None:
    with ThreadedSandbox(accounts=3, positions_per_account=1000, seed=5, latency_ms=300) as sb:
        with warnings.catch_warnings(), loop_errors() as errors:
            warnings.simplefilter("error")
            async with client_for(sb) as client:
                traffic = track(client)
                started = asyncio.Event()

                async def consume() -> None:
                    async for _ in client.positions.export(sb.tenant.account_ids, page_size=100):
                        started.set()

                consumer = asyncio.create_task(consume())
                await started.wait()
                consumer.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await consumer
                assert await settle() == set()
                assert traffic.in_flight == 0 and traffic.cancelled > 0
            gc.collect()
        assert errors == []


async def test_an_error_in_a_later_account_surfaces_in_order_and_cleans_up(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    from upvest_async import NotFoundError

    accounts = [sandbox.tenant.account_ids[0], str(uuid.uuid4()), sandbox.tenant.account_ids[1]]
    seen: list[str] = []
    with pytest.raises(NotFoundError):
        async for account, _ in client.positions.export_records(accounts, concurrency=4):
            seen.append(account)
    assert seen == [accounts[0]]
    # Only the in-process server's keep-alive connection handlers may remain.
    left = await settle()
    assert all(task.get_coro().__qualname__.startswith("RequestHandler") for task in left)


# --- consistency while the data changes --------------------------------------------------------


async def test_shrinking_list_is_resynchronised_without_gap_or_duplicate(
    sandbox: Sandbox, client: UpvestClient, caplog: pytest.LogCaptureFixture
) -> None:
    tenant, account = sandbox.tenant, sandbox.tenant.account_ids[0]
    original = tenant.positions(account, notify=False)
    read_counter(tenant, account,
                 lambda n: tenant.remove_positions(account, 10, at=0) if n == 3 else None)
    listed = client.positions.list(account, page_size=100, prefetch=4)
    with caplog.at_level(logging.WARNING, logger="upvest_async"):
        got = [unstructure(p) async for p in listed]
    # The 10 removed were at the front and delivered before they went: nothing is lost or
    # repeated.
    assert got == original
    assert len(listed.inconsistencies) == 1
    assert "total_count changed from 1200 to 1190" in listed.inconsistencies[0]
    assert "no item skipped or repeated" in listed.inconsistencies[0]
    assert "re-synchronised" in caplog.text


async def test_growing_list_is_resynchronised(sandbox: Sandbox, client: UpvestClient) -> None:
    tenant, account = sandbox.tenant, sandbox.tenant.account_ids[1]
    original = tenant.positions(account, notify=False)
    added: list[dict[str, Any]] = []
    read_counter(tenant, account,
                 lambda n: added.extend(tenant.insert_positions(account, 5, at=0)) if n == 4
                 else None)
    listed = client.positions.list(account, page_size=100, prefetch=6)
    got = [unstructure(p) async for p in listed]
    assert got == original  # inserted before the reading position: not repeated, not shown
    assert len(added) == 5 and len(listed.inconsistencies) == 1


async def test_items_appended_during_iteration_are_delivered(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    tenant, account = sandbox.tenant, sandbox.tenant.account_ids[2]
    original = tenant.positions(account, notify=False)
    added: list[dict[str, Any]] = []
    read_counter(tenant, account, lambda n: added.extend(
        tenant.insert_positions(account, 7, at=len(tenant.positions(account, notify=False)))
    ) if n == 2 else None)
    listed = client.positions.list(account, page_size=400, prefetch=2)
    got = [unstructure(p) async for p in listed]
    assert got == original + added and len(added) == 7


async def test_strict_mode_raises_a_typed_error_at_the_change(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    tenant, account = sandbox.tenant, sandbox.tenant.account_ids[0]
    original = tenant.positions(account, notify=False)
    read_counter(tenant, account,
                 lambda n: tenant.remove_positions(account, 3, at=500) if n == 3 else None)
    got: list[dict[str, Any]] = []
    listed = client.positions.list(account, page_size=100, prefetch=4, strict=True)
    with pytest.raises(PaginationError) as caught:
        async for position in listed:
            got.append(unstructure(position))
    error = caught.value
    assert got == original[:len(got)] and error.offset == len(got) == listed.next_offset
    assert len(got) % 100 == 0 and 100 <= len(got) <= 200
    assert (error.total_count, error.received_total_count) == (1200, 1197)
    assert str(error).startswith(f"paging /accounts/{account}/positions stopped at offset "
                                 f"{len(got)} (total_count 1200 -> 1197)")
    assert "\n" not in str(error)


async def test_list_ending_before_the_reading_position_stops(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    tenant, account = sandbox.tenant, sandbox.tenant.account_ids[3]
    original = tenant.positions(account, notify=False)
    read_counter(tenant, account,
                 lambda n: tenant.remove_positions(account, 900, at=300) if n == 2 else None)
    listed = client.positions.list(account, page_size=500, prefetch=2)
    got = await asyncio.wait_for(_collect(listed), timeout=10)
    assert got == original[:500]  # the first page was read before the cut; nothing repeated
    # The last item delivered is gone; an earlier one (offset 299) is found instead.
    assert "re-synchronised on an item delivered shortly before the last one (which is gone)" \
        in listed.inconsistencies[-1]
    # Strict: the same cut raises instead.
    tenant.set_positions(account, original)
    read_counter(tenant, account,
                 lambda n: tenant.remove_positions(account, 900, at=300) if n == 2 else None)
    with pytest.raises(PaginationError, match="total_count 1200 -> 300"):
        await _collect(client.positions.list(account, page_size=500, prefetch=2, strict=True))


async def test_list_changing_on_every_read_still_ends_without_repeats(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    tenant, account = sandbox.tenant, sandbox.tenant.account_ids[1]
    original = tenant.positions(account, notify=False)
    added: list[dict[str, Any]] = []
    read_counter(tenant, account,
                 lambda n: added.extend(tenant.insert_positions(account, 1, at=0)))
    listed = client.positions.list(account, page_size=100, prefetch=3)
    got = await asyncio.wait_for(_collect(listed), timeout=20)
    # The first insertion came before the first read, so it belongs to the list read; the
    # later ones came before the reading position: never shown, nothing repeated.
    assert got == added[:1] + original
    assert len(added) >= 4 and len(listed.inconsistencies) >= 2


async def test_random_changes_never_repeat_and_never_silently_skip(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    import random

    tenant, account = sandbox.tenant, sandbox.tenant.account_ids[2]
    original = tenant.positions(account, notify=False)
    rng = random.Random(20)
    resyncs = 0
    for _ in range(60):
        tenant.set_positions(account, original)
        ever = {p["instrument"]["uuid"]: p for p in original}
        removed: set[str] = set()
        changes = {rng.randrange(1, 12): rng.choice(["insert", "remove"]) for _ in range(3)}

        def change(read: int, changes: dict[int, str] = changes,
                   ever: dict[str, Any] = ever, removed: set[str] = removed) -> None:
            kind = changes.get(read)
            size = len(tenant.positions(account, notify=False))
            at, count = rng.randrange(0, size), rng.randrange(1, 40)
            if kind == "insert":
                for p in tenant.insert_positions(account, count, at=at):
                    ever[p["instrument"]["uuid"]] = p
            elif kind == "remove":
                removed.update(ids(tenant.remove_positions(account, count, at=at)))

        read_counter(tenant, account, change)
        listed = client.positions.list(account, page_size=rng.choice([50, 120, 300]),
                                       prefetch=rng.randrange(1, 6))
        got = ids(await asyncio.wait_for(_collect(listed), timeout=20))
        # Shifts stay well inside the re-read window, so every re-synchronisation succeeds:
        # no duplicate, nothing beyond what existed, and every item present during the whole
        # iteration delivered, in order.
        assert not any("may be skipped" in line for line in listed.inconsistencies)
        assert len(got) == len(set(got)) and got == sorted(got) and set(got) <= set(ever)
        assert set(ids(original)) - removed <= set(got), listed.inconsistencies
        resyncs += sum("re-synchronised" in line for line in listed.inconsistencies)
    assert resyncs > 30  # the changes did land mid-iteration
    tenant.on_positions_read = None


async def _collect(listed: Paginator[Position]) -> list[dict[str, Any]]:
    return [unstructure(p) async for p in listed]


async def test_short_page_is_re_read_without_a_gap() -> None:
    data = numbers(250)

    def answer(offset: int, limit: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        # The page at 100 comes back 40 items short, total_count unchanged.
        size = 60 if offset == 100 else limit
        chunk = data[offset:offset + size]
        return chunk, meta(offset, limit, len(chunk), 250)

    request, calls = fake_request(answer)
    listed = paginator(request, page_size=100, prefetch=3)
    got = [p async for p in listed]
    assert [p.quantity for p in got] == [int(d["quantity"]) for d in data]
    assert (160, 90) in calls  # the rest was re-read from offset + count
    assert "60 items at offset 100 where 100 were expected: re-reading from offset 160" in (
        listed.inconsistencies[0]
    )
    request, _ = fake_request(answer)
    with pytest.raises(PaginationError, match="60 items at offset 100 where 100"):
        [p async for p in paginator(request, page_size=100, strict=True)]


async def test_empty_page_before_the_end_stops() -> None:
    data = numbers(300)

    def answer(offset: int, limit: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        chunk = [] if offset >= 200 else data[offset:offset + limit]
        return chunk, meta(offset, limit, len(chunk), 300)

    request, calls = fake_request(answer)
    listed = paginator(request, page_size=100, prefetch=2)
    assert len([p async for p in listed]) == 200
    assert "stopping at offset 200" in listed.inconsistencies[0]
    assert len(calls) == 3


async def test_server_page_cap_is_adopted() -> None:
    data = numbers(450)

    def answer(offset: int, limit: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        chunk = data[offset:offset + min(limit, 100)]  # the server serves 100 at most
        return chunk, meta(offset, min(limit, 100), len(chunk), 450)

    request, calls = fake_request(answer)
    got = [p async for p in paginator(request, page_size=1000, prefetch=4, strict=True)]
    assert len(got) == 450
    assert calls == [(0, 1000), (100, 100), (200, 100), (300, 100), (400, 50)]


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (lambda offset, limit, chunk: meta(0, limit, len(chunk), 300), "meta.offset is 0"),
        (lambda offset, limit, chunk: meta(offset, limit, len(chunk) + 1, 300),
         "meta.count is 101 but data has 100"),
        (lambda offset, limit, chunk: meta(offset, limit, len(chunk), 150),
         "exceed total_count 150"),
    ],
)
async def test_malformed_pages_raise_in_every_mode(
    broken: Callable[[int, int, list[Any]], dict[str, Any]], message: str
) -> None:
    data = numbers(300)

    def answer(offset: int, limit: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        chunk = data[offset:offset + limit]
        if offset == 100:
            return chunk, broken(offset, limit, chunk)
        return chunk, meta(offset, limit, len(chunk), 300)

    for strict in (False, True):
        request, _ = fake_request(answer)
        with pytest.raises(PaginationError, match=message) as caught:
            [p async for p in paginator(request, page_size=100, strict=strict)]
        assert caught.value.offset == 100


async def test_a_list_that_never_settles_raises_instead_of_looping() -> None:
    data = numbers(200)
    reads = 0

    def answer(offset: int, limit: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        nonlocal reads
        reads += 1
        if reads == 1:
            chunk = data[:limit]
            return chunk, meta(0, limit, len(chunk), 200)
        return [], meta(offset, limit, 0, 200 + reads)  # a new total every time, no items

    request, calls = fake_request(answer)
    listed = paginator(request, page_size=100, prefetch=2)
    with pytest.raises(PaginationError, match="did not settle"):
        await asyncio.wait_for(_collect(listed), timeout=10)
    assert len(calls) < 4 * MAX_UNSETTLED


# --- exports of many accounts ------------------------------------------------------------------


async def test_export_many_accounts_bounded_concurrency_grouped_in_order() -> None:
    async with Sandbox(accounts=12, positions_per_account=350, seed=11, latency_ms=20) as sb:
        tenant = sb.tenant
        tenant.set_positions(tenant.account_ids[4], [])  # an account without positions
        order = [tenant.account_ids[i] for i in (7, 0, 4, 11, 3, 9, 1, 10, 2, 8, 5, 6)]
        async with client_for(sb) as client:
            traffic = track(client)
            grouped = []
            # The engine of the exports: the lists of many accounts under one limit.
            lists = [(a, client.positions.list(a, page_size=100, prefetch=5)) for a in order]
            async for account, page in chain_pages(lists, concurrency=5):
                # The empty account's one request delivers no page.
                traffic.delivered += page is not None or account == tenant.account_ids[4]
                # Pages requested and not delivered: window (2 x 5) + the head's prefetch (5).
                assert traffic.started - traffic.delivered <= 2 * 5 + 5
                grouped.append((account, page))
            exported = [p async for p in client.positions.export(order, concurrency=3)]
            by_account = [(a, len(rs)) async for a, rs in
                          client.positions.export_records(order, concurrency=2)]
    assert 2 <= traffic.max_in_flight <= 5
    assert traffic.max_in_flight == 5  # 12 accounts x 4 pages keep every slot busy
    expected = [p for account in order for p in tenant.positions(account, notify=False)]
    assert [unstructure(p) for _, page in grouped if page for p in page.items] == expected
    assert [account for account, page in grouped if page is None] == order
    assert [unstructure(p) for p in exported] == expected
    assert by_account == [(a, 0 if a == tenant.account_ids[4] else 350) for a in order]


async def test_gate_gives_turns_in_delivery_order_within_its_bounds() -> None:
    from upvest_async.pagination.gate import _Gate

    gate = _Gate(concurrency=1, window=3)
    granted: list[tuple[int, int]] = []

    async def request(priority: tuple[int, int]) -> None:
        await gate.acquire(priority)
        granted.append(priority)

    await request((0, 0))  # a free slot: granted at once
    waiting = [asyncio.create_task(request(p)) for p in [(3, 0), (1, 1000), (2, 0), (1, 0)]]
    await asyncio.sleep(0)
    assert granted == [(0, 0)] and gate.in_flight == 1
    for _ in range(3):  # each request ends with a page held for delivery
        gate.finished(held=True)
        await asyncio.sleep(0)
    # Turns follow delivery order, not arrival order; the window (3) then stops the rest, as
    # the pages of (0, 0), (1, 0) and (1, 1000) wait for delivery.
    assert granted == [(0, 0), (1, 0), (1, 1000)] and gate.held == 3 and gate.in_flight == 0
    gate.head = 2  # the list of (2, 0) is being delivered: only concurrency applies to it
    gate.wake()
    await asyncio.sleep(0)
    assert granted[-1] == (2, 0) and gate.in_flight == 1
    gate.finished(held=True)
    await asyncio.sleep(0)
    assert len(granted) == 4  # (3, 0) still waits: 4 pages held, window 3
    gate.delivered()
    gate.delivered()
    await asyncio.gather(*waiting)
    assert granted[-1] == (3, 0) and gate.in_flight == 1 and gate.held == 2


async def test_export_checks_every_id_before_sending(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    with pytest.raises(InvalidInputError, match="account_id"):  # at the call, not on iteration
        client.positions.export([sandbox.tenant.account_ids[0], "nope"])
    with pytest.raises(InvalidInputError, match="account_id"):
        client.positions.export_records([sandbox.tenant.account_ids[0], "nope"])
    assert sandbox.counters.requests == 0


@pytest.mark.parametrize("concurrency", [0, -1, True, 1.5, "4", None])
async def test_every_export_refuses_a_bad_concurrency_before_sending(
    sandbox: Sandbox, client: UpvestClient, concurrency: Any
) -> None:
    accounts = sandbox.tenant.account_ids[:2]
    for method in (client.positions.export, client.positions.export_records):
        with pytest.raises(InvalidInputError, match="concurrency"):
            method(accounts, concurrency=concurrency)
    assert sandbox.counters.requests == 0


async def test_lists_and_exports_apply_per_call_options_to_every_page_request() -> None:
    async with Sandbox(accounts=2, positions_per_account=250, seed=3) as sandbox, \
            client_for(sandbox) as client:
        accounts = sandbox.tenant.account_ids
        tag = {"x-correlation-id": "run-7"}

        def tagged_page_requests() -> list[bool]:
            return [entry.headers.get("x-correlation-id") == "run-7"
                    for entry in sandbox.state.journal if entry.method == "GET"]

        listed = [p async for p in client.positions.list(
            accounts[0], page_size=100, timeout=5.0, max_retries=0, extra_headers=tag)]
        assert len(listed) == 250 and tagged_page_requests() == [True] * 3
        exported = [p async for p in client.positions.export(
            accounts, page_size=100, extra_headers=tag)]
        records = [(a, len(rs)) async for a, rs in client.positions.export_records(
            accounts, page_size=100, deadline=30.0, extra_headers=tag)]
        assert len(exported) == 500 and records == [(a, 250) for a in accounts]
        assert tagged_page_requests() == [True] * (3 + 6 + 6)
        configurations = [c async for c in client.portfolios.configurations.list(
            page_size=1, extra_headers=tag)]
        orders = [o async for o in client.portfolios.orders.list(extra_headers=tag)]
        allocations = [a async for a in client.portfolios.allocations.list(extra_headers=tag)]
        assert len(configurations) == 2 and orders == [] and allocations
        assert all(tagged_page_requests())
        # A view's options are the defaults; a call's own override them.
        view = client.with_options(extra_headers={"x-correlation-id": "view"})
        [p async for p in view.positions.list(accounts[0], max_items=1)]
        assert sandbox.state.journal[-1].headers["x-correlation-id"] == "view"
        [p async for p in view.positions.list(accounts[0], max_items=1, extra_headers=tag)]
        assert sandbox.state.journal[-1].headers["x-correlation-id"] == "run-7"
        await view.aclose()


async def test_bad_per_call_options_of_lists_and_exports_are_refused_before_sending(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    account = sandbox.tenant.account_ids[0]
    bad: list[dict[str, Any]] = [
        {"timeout": 0}, {"timeout": "5"}, {"max_retries": -1}, {"deadline": -1.0},
        {"extra_headers": {"authorization": "Bearer x"}},
        {"extra_headers": {"upvest-client-id": "x"}}, {"extra_headers": {"x-a": "1\r\nx-b: 2"}},
    ]
    for options in bad:
        with pytest.raises(InvalidInputError):
            client.positions.list(account, **options)
        with pytest.raises(InvalidInputError):
            client.positions.export([account], **options)
        with pytest.raises(InvalidInputError):
            client.portfolios.orders.list(**options)
    with pytest.raises(TypeError, match="bogus"):
        client.positions.list(account, **{"bogus": 1})  # type: ignore[arg-type]
    assert sandbox.counters.requests == 0


async def test_chain_pages_validates_its_limits() -> None:
    with pytest.raises(InvalidInputError):
        chain_pages([], concurrency=0)
    with pytest.raises(InvalidInputError):
        chain_pages([], concurrency=2, window=0)
    assert [x async for x in chain_pages([], concurrency=2)] == []


# --- the tenant's mutations -------------------------------------------------------------------


def test_tenant_mutations_keep_order_and_the_cache_bounded() -> None:
    tenant = Tenant(accounts=POSITIONS_CACHE_SIZE + 6, positions_per_account=20, seed=2)
    account = tenant.account_ids[0]
    before = tenant.positions(account)
    added = tenant.insert_positions(account, 3, at=10)
    now = tenant.positions(account)
    assert ids(now) == sorted(ids(now)) and len(now) == 23 and now[10:13] == added
    removed = tenant.remove_positions(account, 2, at=0)
    assert removed == before[:2] and tenant.position_count(account) == 21
    tenant.set_positions(account, before)
    assert tenant.positions(account) == before
    for other in tenant.account_ids:
        tenant.positions(other)
    assert len(tenant._generated) == POSITIONS_CACHE_SIZE
    assert tenant.positions(tenant.account_ids[1]) == Tenant(
        accounts=POSITIONS_CACHE_SIZE + 6, positions_per_account=20, seed=2
    ).positions(tenant.account_ids[1])
    with pytest.raises(KeyError):
        tenant.set_positions(str(uuid.uuid4()), [])


# --- bounds against a server that never lets a list end ---------------------------------------


async def test_a_list_that_doubles_while_read_is_delivered_whole() -> None:
    """Legitimate growth inside the bound (2 x total_count + one page): appended items are
    delivered, nothing raises."""
    data = numbers(2000)
    reads = 0

    def answer(offset: int, limit: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        nonlocal reads
        reads += 1
        visible = data[:min(2000, 1000 + 50 * reads)]  # 50 items appended before each read
        chunk = visible[offset:offset + limit]
        return chunk, meta(offset, limit, len(chunk), len(visible))

    request, calls = fake_request(answer)
    listed = paginator(request, page_size=100, prefetch=3)
    got = [p async for p in listed]
    # Everything up to what the last read saw (items appended later are not seen), in order.
    assert [p.quantity for p in got] == [int(d["quantity"]) for d in data[:len(got)]]
    assert len(got) > 1400 and len(listed.inconsistencies) >= 2 and len(calls) < 30


@pytest.mark.parametrize("strict", [False, True])
async def test_a_list_growing_without_end_stops_at_the_bound(strict: bool) -> None:
    reads = 0

    def answer(offset: int, limit: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        nonlocal reads
        reads += 1
        chunk = numbers(offset + limit)[offset:]
        # The same total on a page's first read, so strict mode sees a consistent list.
        return chunk, meta(offset, limit, len(chunk), offset + limit + 250)

    request, calls = fake_request(answer)
    listed = paginator(request, page_size=100, prefetch=2, strict=strict)
    got: list[Position] = []
    with pytest.raises(PaginationError) as caught:
        async for position in listed:
            got.append(position)
    if strict:  # the total changes on the second page: strict raises there
        assert "changed while it was read" in str(caught.value) and len(got) == 100
    else:  # first total_count 350: at most 2 x 350 + 100 items, then an error
        assert "followed past 800 items" in str(caught.value)
        assert len(got) == 800 and caught.value.offset == listed.next_offset == 800
        assert [p.quantity for p in got] == list(range(800))  # in order, no repeat
    assert len(calls) < 30


async def test_repeated_pages_are_refused_with_a_key_and_bounded_without_one() -> None:
    page_items = numbers(100)

    def answer(offset: int, limit: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return page_items[:limit], meta(offset, limit, min(limit, 100), 10_000)

    request, _ = fake_request(answer)
    keyed = paginator(request, page_size=100, key=lambda p: p.instrument.uuid)
    with pytest.raises(PaginationError, match="page at offset 100 repeats") as caught:
        [p async for p in keyed]
    assert caught.value.offset == 100

    # Items without a usable hash (a key that returns a list) cannot be fingerprinted: the
    # list still ends, at its total_count (and could never pass 2 x total_count + one page).
    request, calls = fake_request(answer)
    unhashable = paginator(request, page_size=100, key=lambda p: [str(p.instrument.uuid)])
    assert len(await asyncio.wait_for(_collect(unhashable), timeout=30)) == 10_000
    assert len(calls) == 100


async def test_the_bound_does_not_hinder_resumes_or_max_items() -> None:
    data = numbers(500)

    def answer(offset: int, limit: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        chunk = data[offset:offset + limit]
        return chunk, meta(offset, limit, len(chunk), 500)

    request, _ = fake_request(answer)
    assert len([p async for p in paginator(request, page_size=50, offset=450)]) == 50
    assert len([p async for p in paginator(request, page_size=7, max_items=499)]) == 499
