"""Shared fixtures: a sandbox on 127.0.0.1 and a client configured for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.clients import client_for
from tests.support.postgres import (  # noqa: F401 (fixtures)
    database_url,
    postgres_cluster,
    postgres_url,
    sqlite_url,
)
from upvest_async import UpvestClient
from upvest_async.sandbox import Sandbox


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(accounts=4, positions_per_account=1200, seed=7) as running:
        yield running


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[UpvestClient]:
    async with client_for(sandbox) as opened:
        yield opened
