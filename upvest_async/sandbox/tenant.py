"""A generated tenant for the sandbox: accounts, portfolio configurations, positions.

Everything is deterministic from ``seed``. Positions are produced lazily per account (an LRU
cache of :data:`POSITIONS_CACHE_SIZE` accounts), so a tenant of a million positions does not sit
in memory.

Tests can change the positions of an account at run time (:meth:`Tenant.insert_positions`,
:meth:`Tenant.remove_positions`, :meth:`Tenant.set_positions`) and install
:attr:`Tenant.on_positions_read`, called before every list or retrieve request reads an
account's positions, to change the data *between* page requests of one iteration.
"""

from __future__ import annotations

import collections
import random
import string
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["POSITIONS_CACHE_SIZE", "Tenant", "isin_check_digit", "make_isin"]

_COUNTRIES = ("US", "DE", "IE", "FR", "GB", "NL", "LU", "CH", "JP", "CA")
_EPOCH = datetime(2021, 7, 21, 14, 10, tzinfo=UTC)
_UUID_SPAN = 1 << 128

#: Accounts whose generated positions are kept in memory.
POSITIONS_CACHE_SIZE = 64


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def isin_check_digit(body: str) -> str:
    """The check digit that ends an ISIN (ISO 6166) whose first eleven characters are ``body``
    (country code and national number, digits and upper-case letters).

    Each letter becomes its two-digit number (A = 10 ... Z = 35); over the digit string so
    made, Luhn's "modulus 10, double-add-double" runs from the right: every other digit,
    starting with the last, is doubled and a two-digit product counts as the sum of its
    digits; the check digit brings the total to a multiple of 10. Raises :class:`ValueError`
    for a character that is not a digit or an upper-case letter.
    """
    digits: list[int] = []
    for char in body:
        if not (char.isascii() and (char.isdigit() or char.isupper())):
            raise ValueError(f"not an ISIN character: {char!r}")
        digits += (int(d) for d in str(int(char, 36)))
    total = 0
    for place, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if place % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return str(-total % 10)


def make_isin(rng: random.Random) -> str:
    """A syntactically valid ISIN (ISO 6166) with a correct check digit."""
    body = rng.choice(_COUNTRIES) + "".join(
        rng.choice(string.digits + string.ascii_uppercase[:6] if i < 2 else string.digits)
        for i in range(9)
    )
    return body + isin_check_digit(body)


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
        self._generated: collections.OrderedDict[str, list[dict[str, Any]]] = (
            collections.OrderedDict()
        )
        #: Accounts whose positions were changed at run time (kept in memory, never evicted).
        self._changed: dict[str, list[dict[str, Any]]] = {}
        self._inserted = 0
        #: Called with the account id before a request reads its positions (list or retrieve);
        #: it may change the tenant's data, which that request then serves.
        self.on_positions_read: Callable[[str], None] | None = None

    def has_account(self, account_id: str) -> bool:
        """Whether ``account_id`` is one of the tenant's accounts."""
        return account_id in self._account_index

    def position_count(self, account_id: str) -> int:
        """How many positions ``account_id`` holds now (run-time changes included)."""
        return len(self.positions(account_id, notify=False))

    def positions(self, account_id: str, *, notify: bool = True) -> list[dict[str, Any]]:
        """All positions of ``account_id`` as the API serves them (JSON-shaped, ordered by
        instrument uuid). Calls :attr:`on_positions_read` first unless ``notify`` is false.
        Do not modify the list returned; use the ``*_positions`` methods."""
        if notify and self.on_positions_read is not None:
            self.on_positions_read(account_id)
        changed = self._changed.get(account_id)
        if changed is not None:
            return changed
        cached = self._generated.get(account_id)
        if cached is not None:
            self._generated.move_to_end(account_id)
            return cached
        generated = self._generate(account_id)
        if account_id in self._account_index:
            self._generated[account_id] = generated
            if len(self._generated) > POSITIONS_CACHE_SIZE:
                self._generated.popitem(last=False)
        return generated

    def _generate(self, account_id: str) -> list[dict[str, Any]]:
        index = self._account_index.get(account_id)
        if index is None:
            return []
        rng = random.Random(f"positions-{self.seed}-{index}")
        chosen = sorted(rng.sample(range(len(self.instruments)), self.positions_per_account))
        return [self._position(account_id, self.instruments[i], rng) for i in chosen]

    def iter_positions(self) -> Iterator[dict[str, Any]]:
        """Every position of the tenant, accounts in ``account_ids`` order."""
        for account in self.account_ids:
            yield from self.positions(account, notify=False)

    def set_positions(self, account_id: str, positions: list[dict[str, Any]]) -> None:
        """Replace the positions of ``account_id`` (kept in the given order). Raises
        :class:`KeyError` for an account the tenant does not have."""
        if account_id not in self._account_index:
            raise KeyError(account_id)
        self._changed[account_id] = list(positions)
        self._generated.pop(account_id, None)

    def insert_positions(
        self, account_id: str, count: int = 1, *, at: int = 0
    ) -> list[dict[str, Any]]:
        """Insert ``count`` new positions before index ``at`` (``at`` = the number of positions
        appends). Their new instruments have uuids between the neighbours', so the list stays
        ordered by instrument uuid. Returns the new positions."""
        current = self.positions(account_id, notify=False)
        if not 0 <= at <= len(current) or count < 0:
            raise ValueError("at must be within the list and count >= 0")
        low = int(uuid.UUID(current[at - 1]["instrument"]["uuid"])) if at > 0 else 0
        high = (
            int(uuid.UUID(current[at]["instrument"]["uuid"])) if at < len(current)
            else _UUID_SPAN
        )
        if high - low <= count:
            raise ValueError("no room for new instrument uuids at this index")
        rng = random.Random(f"inserted-{self.seed}-{self._inserted}")
        self._inserted += 1
        added = []
        for k in range(1, count + 1):
            instrument = {
                "uuid": str(uuid.UUID(int=low + (high - low) * k // (count + 1))),
                "isin": make_isin(rng),
            }
            added.append(self._position(account_id, instrument, rng))
        self.set_positions(account_id, current[:at] + added + current[at:])
        return added

    def remove_positions(
        self, account_id: str, count: int = 1, *, at: int = 0
    ) -> list[dict[str, Any]]:
        """Remove the positions at indexes ``at`` to ``at + count - 1``; returns them."""
        current = self.positions(account_id, notify=False)
        if not 0 <= at <= len(current) or count < 0:
            raise ValueError("at must be within the list and count >= 0")
        removed = current[at:at + count]
        self.set_positions(account_id, current[:at] + current[at + count:])
        return removed

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
