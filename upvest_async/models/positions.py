"""Position models. Source: seed 002, ENDPOINTS.md S12 (E16, E17)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import attrs

__all__ = ["Instrument", "Position"]


@attrs.frozen
class Instrument:
    """The instrument of a position: ``uuid`` (Upvest instrument id) and ``isin`` (ISO 6166,
    optional in the seed)."""

    uuid: uuid.UUID
    isin: str | None = None


@attrs.frozen
class Position:
    """A position of one account in one instrument (S12). All quantities are ``Decimal``
    (decimal strings on the wire, in units of the instrument).

    ``quantity`` and ``available_for_trading`` may be negative (seed pattern
    ``^-?[0-9]{0,63}(\\.[0-9]{1,27})?$``); ``locked_for_trading`` and ``pending_settlement`` are
    not negative in the seed's pattern.
    """

    account_id: uuid.UUID
    instrument: Instrument
    quantity: Decimal
    available_for_trading: Decimal
    locked_for_trading: Decimal
    pending_settlement: Decimal
