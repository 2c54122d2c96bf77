"""A pytest plugin for your own tests: the embedded sandbox as fixtures.

Registered with the ``pytest11`` entry point ``upvest_async`` (disable it with
``-p no:upvest_async``). It registers fixtures and the ``upvest_sandbox`` marker, nothing else:
no autouse fixture and no hook that changes a test that does not ask for a fixture. Importing it
imports nothing beyond ``upvest_async`` itself: the sandbox and ``aiohttp.web`` are imported when
a fixture first runs.

- ``upvest_sandbox``: a started :class:`~upvest_async.sandbox.Sandbox`, stopped after the test;
  ``@pytest.mark.upvest_sandbox(**kwargs)`` passes constructor keywords (an unknown one is a
  :class:`TypeError` naming the accepted ones). Defaults: :data:`SANDBOX_DEFAULTS`.
- ``upvest_sandbox_factory``: ``await upvest_sandbox_factory(**kwargs)`` starts another sandbox
  (same defaults, no marker); every one is stopped after the test.
- ``upvest_client``: an :class:`~upvest_async.UpvestClient` for ``upvest_sandbox``, closed after
  the test.
- ``upvest_webhooks``: a :class:`WebhookCapture`, a receiver on 127.0.0.1 subscribed to every
  event of ``upvest_sandbox`` that verifies each delivery with the sandbox's keys;
  ``await upvest_webhooks.wait_for(n)`` waits for ``n`` events, ``upvest_webhooks.events`` lists
  them (typed :class:`~upvest_async.WebhookEvent`).

The async fixtures are ``pytest_asyncio`` fixtures (function loop scope) when pytest-asyncio is
installed, so they work in its strict mode (tests marked ``@pytest.mark.asyncio``) and auto mode.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import pytest

from .client import UpvestClient

if TYPE_CHECKING:
    from aiohttp import web

    from . import WebhookEvent
    from .sandbox import Sandbox

__all__ = ["MARKER", "SANDBOX_DEFAULTS", "SandboxFactory", "WebhookCapture"]

#: The marker's name: ``@pytest.mark.upvest_sandbox(accounts=3, faults=Faults(...))``.
MARKER = "upvest_sandbox"

#: The plugin's defaults for :class:`~upvest_async.sandbox.Sandbox` (a small tenant, webhook
#: back-off waits scaled down); the marker and the factory's keywords override them.
SANDBOX_DEFAULTS: dict[str, Any] = {
    "accounts": 2,
    "positions_per_account": 20,
    "seed": 0,
    "webhook_backoff_scale": 0.001,
}

_F = TypeVar("_F", bound=Callable[..., Any])


def _async_fixture(function: _F) -> _F:
    """``pytest_asyncio.fixture(loop_scope="function")`` when pytest-asyncio is installed (so
    strict mode sees the fixture), else a plain ``pytest.fixture``."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - without pytest-asyncio
        return cast(_F, pytest.fixture(function))
    return cast(_F, pytest_asyncio.fixture(loop_scope="function")(function))


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``upvest_sandbox`` marker (nothing else)."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**kwargs): upvest_async.sandbox.Sandbox keywords for the upvest_sandbox "
        "fixture (accounts, positions_per_account, seed, faults, rate_limit, webhook options)",
    )


class SandboxFactory(Protocol):
    """``await factory(**kwargs)``: a started sandbox (:data:`SANDBOX_DEFAULTS` overridden by
    ``kwargs``), stopped after the test."""

    def __call__(self, **kwargs: Any) -> Awaitable[Sandbox]: ...


def _sandbox_keywords(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """The defaults updated with ``kwargs``; an unknown keyword is a :class:`TypeError`."""
    from .sandbox import Sandbox

    accepted = [
        name for name, parameter in inspect.signature(Sandbox).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"{where}: unknown Sandbox keyword(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted)}"
        )
    return {**SANDBOX_DEFAULTS, **kwargs}


def _marker_keywords(node: pytest.Item) -> dict[str, Any]:
    """The keywords of every ``upvest_sandbox`` marker, the closest (the test's) winning."""
    merged: dict[str, Any] = {}
    for mark in reversed(list(node.iter_markers(MARKER))):
        if mark.args:
            raise TypeError(
                f"@pytest.mark.{MARKER} takes Sandbox keywords only, got positional "
                f"arguments {mark.args!r}"
            )
        merged.update(mark.kwargs)
    return merged


class WebhookCapture:
    """Webhooks delivered by a sandbox to a receiver on 127.0.0.1, verified and parsed.

    ``url``: the subscribed URL; ``events``: every event received so far, in order (each
    once, duplicates dropped by the receiver); :meth:`wait_for` waits for a number of them.
    """

    def __init__(self) -> None:
        self.url = ""
        self.events: list[WebhookEvent] = []
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def _on_event(self, event: WebhookEvent, tx: object) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[WebhookEvent]:
        """Wait until at least ``count`` events arrived and return all of them;
        :class:`TimeoutError` (saying how many arrived) after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.events) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{len(self.events)} webhook event(s) of {count} arrived in {timeout} s"
            ) from None
        return list(self.events)

    async def _start(self, sandbox: Sandbox, client: UpvestClient) -> None:
        from aiohttp import web

        from .webhooks import webhook_app

        path = "/upvest/webhooks"
        runner = web.AppRunner(webhook_app(self._on_event, client.webhooks.verifier, path=path),
                               access_log=None)
        await runner.setup()
        self._runner = runner
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}{path}"
        sandbox.webhooks.subscribe(self.url, title="upvest_webhooks fixture")

    async def _stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


@_async_fixture
async def upvest_sandbox_factory() -> AsyncIterator[SandboxFactory]:
    """An async callable starting sandboxes (``await upvest_sandbox_factory(accounts=3)``);
    every one is stopped after the test."""
    from .sandbox import Sandbox

    started: list[Sandbox] = []

    async def factory(**kwargs: Any) -> Sandbox:
        sandbox = Sandbox(**_sandbox_keywords(kwargs, "upvest_sandbox_factory"))
        await sandbox.start()
        started.append(sandbox)
        return sandbox

    try:
        yield factory
    finally:
        for sandbox in reversed(started):
            await sandbox.stop()


@_async_fixture
async def upvest_sandbox(
    request: pytest.FixtureRequest, upvest_sandbox_factory: SandboxFactory
) -> Sandbox:
    """A started sandbox configured by ``@pytest.mark.upvest_sandbox(**kwargs)``, stopped after
    the test. ``upvest_sandbox.account_ids`` are its accounts."""
    kwargs = _marker_keywords(request.node)
    _sandbox_keywords(kwargs, f"@pytest.mark.{MARKER}")
    return await upvest_sandbox_factory(**kwargs)


@_async_fixture
async def upvest_client(upvest_sandbox: Sandbox) -> AsyncIterator[UpvestClient]:
    """An open :class:`~upvest_async.UpvestClient` for ``upvest_sandbox``, closed after the
    test: ``UpvestClient(**upvest_sandbox.client_settings())``."""
    async with UpvestClient(**upvest_sandbox.client_settings()) as client:
        yield client


@_async_fixture
async def upvest_webhooks(
    upvest_sandbox: Sandbox, upvest_client: UpvestClient
) -> AsyncIterator[WebhookCapture]:
    """A :class:`WebhookCapture` subscribed to every event of ``upvest_sandbox``."""
    capture = WebhookCapture()
    try:
        await capture._start(upvest_sandbox, upvest_client)
        yield capture
    finally:
        await capture._stop()
