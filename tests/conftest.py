"""Shared fixtures: a sandbox on 127.0.0.1 and a client configured for it (the databases are
:mod:`support.postgres`'s). And the rule that the suite tests the INSTALLED package: what
``pip install '.[test]'`` put in site-packages, or an editable install of this checkout; never
the checkout's files picked up from the working directory."""

from __future__ import annotations

import importlib.metadata
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.clients import client_for
from support.postgres import (  # noqa: F401 (fixtures)
    database_url,
    postgres_cluster,
    postgres_url,
    sqlite_url,
)

import upvest_async
from upvest_async import UpvestClient
from upvest_async.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# The processes the tests start (`python -m upvest_async`, `python -c ...`, the examples) run in
# this working directory: PYTHONSAFEPATH (Python 3.11+) keeps it off their sys.path, so they too
# import the installed package; they find the helpers of tests/support/ as the tests do.
os.environ["PYTHONSAFEPATH"] = "1"
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(TESTS), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


def _editable_install_of_this_checkout() -> bool:
    for dist in importlib.metadata.distributions(name="upvest-async"):
        info = json.loads(dist.read_text("direct_url.json") or "{}")
        if info.get("dir_info", {}).get("editable") and (
                info.get("url", "").removeprefix("file://") == str(ROOT)):
            return True
    return False


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to run against a checkout that is not what is installed."""
    imported = Path(upvest_async.__file__).resolve()
    checkout = ROOT / "upvest_async"
    if imported.is_relative_to(checkout) and not _editable_install_of_this_checkout():
        raise pytest.UsageError(
            f"the tests imported upvest_async from the checkout ({imported}), not from an "
            "installation: run `pip install '.[test]'` and then `pytest` (not `python -m "
            "pytest`, which puts the working directory on sys.path)")


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(accounts=4, positions_per_account=1200, seed=7) as running:
        yield running


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[UpvestClient]:
    async with client_for(sandbox) as opened:
        yield opened
