"""A generated tenant for the sandbox: accounts, portfolio configurations, positions.

Everything is deterministic from ``seed``. Positions are produced lazily per account (a small
LRU cache), so a tenant of a million positions does not sit in memory.
"""

from __future__ import annotations

import functools
import random
import string
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..validation import isin_check_digit_ok

__all__ = ["Tenant", "make_isin"]

_COUNTRIES = ("US", "DE", "IE", "FR", "GB", "NL", "LU", "CH", "JP", "CA")
_EPOCH = datetime(2021, 7, 21, 14, 10, tzinfo=UTC)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def make_isin(rng: random.Random) -> str:
    """A syntactically valid ISIN (ISO 6166) with a correct check digit."""
    body = rng.choice(_COUNTRIES) + "".join(
        rng.choice(string.digits + string.ascii_uppercase[:6] if i < 2 else string.digits)
        for i in range(9)
    )
    for digit in "0123456789":
        if isin_check_digit_ok(body + digit):
            return body + digit
    raise AssertionError("no check digit")  # pragma: no cover


def _timestamp(rng: random.Random) -> str:
    moment = _EPOCH + timedelta(seconds=rng.randrange(0, 3 * 365 * 86400))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{rng.randrange(1000):03d}Z"


class Tenant:
    """``accounts`` accounts with ``positions_per_account`` positions each, from ``seed``.

    ``account_ids`` are sorted (the configurations list's default sort is ``account_id``).
    Each account has one portfolio configuration; positions are ordered by instrument uuid.
    """

    def __init__(self, *, accounts: int = 20, positions_per_account: int = 500, seed: int = 0):
        if accounts < 0 or positions_per_account < 0:
            raise ValueError("tenant sizes must be >= 0")
        self.seed = seed
        self.positions_per_account = positions_per_account
        rng = random.Random(f"tenant-{seed}")
        self.account_ids: list[str] = sorted(_uuid(rng) for _ in range(accounts))
        self._account_index = {account: i for i, account in enumerate(self.account_ids)}
        pool = max(2 * positions_per_account, 200)
        self.instruments: list[dict[str, Any]] = sorted(
            (
                # About 1 in 50 instruments has no ISIN (the field is optional, S12).
                {"uuid": _uuid(rng), **({"isin": make_isin(rng)} if rng.random() > 0.02 else {})}
                for _ in range(pool)
            ),
            key=lambda instrument: str(instrument["uuid"]),
        )
        allocations = [_uuid(rng) for _ in range(5)]
        strategies = [_uuid(rng) for _ in range(4)]
        self.configurations: dict[str, dict[str, Any]] = {}
        for account in self.account_ids:
            created = _timestamp(rng)
            self.configurations[account] = {
                "account_id": account,
                "allocation_id": rng.choice(allocations),
                "created_at": created,
                "updated_at": created,
                "rebalancing_strategy_ids": rng.sample(strategies, rng.randrange(0, 3)),
            }

    def has_account(self, account_id: str) -> bool:
        return account_id in self._account_index

    def position_count(self, account_id: str) -> int:
        return len(self.positions(account_id))

    @functools.lru_cache(maxsize=64)  # noqa: B019 (the tenant lives as long as the sandbox)
    def positions(self, account_id: str) -> list[dict[str, Any]]:
        """All positions of ``account_id`` as the API serves them (JSON-shaped, ordered)."""
        index = self._account_index.get(account_id)
        if index is None:
            return []
        rng = random.Random(f"positions-{self.seed}-{index}")
        chosen = sorted(rng.sample(range(len(self.instruments)), self.positions_per_account))
        return [self._position(account_id, self.instruments[i], rng) for i in chosen]

    def iter_positions(self) -> Iterator[dict[str, Any]]:
        """Every position of the tenant, accounts in ``account_ids`` order."""
        for account in self.account_ids:
            yield from self.positions(account)

    @staticmethod
    def _position(account: str, instrument: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        if rng.random() < 0.5:
            quantity = Decimal(rng.randrange(1, 500))
        else:
            quantity = Decimal(rng.randrange(1, 10**12)).scaleb(-9)
        locked = Decimal(0)
        if rng.random() < 0.2:
            locked = (quantity * Decimal(rng.randrange(0, 101)) / 100).quantize(Decimal("1e-9"))
        pending = Decimal(rng.randrange(0, 3)) if rng.random() < 0.1 else Decimal(0)
        available = quantity - locked - pending
        return {
            "account_id": account,
            "instrument": dict(instrument),
            "quantity": format(quantity.normalize(), "f"),
            "available_for_trading": format(available.normalize(), "f"),
            "locked_for_trading": format(locked.normalize(), "f"),
            "pending_settlement": format(pending, "f"),
        }
