"""Position models. Source: Upvest's Positions API reference
(https://docs.upvest.co/api/Positions); S12, E16 and E17 of ``docs/guides/api-readings.md``."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TypedDict

import attrs

__all__ = ["Instrument", "InstrumentRecord", "Position", "PositionRecord"]


@attrs.frozen
class Instrument:
    """The instrument of a position: ``uuid`` (Upvest instrument id) and ``isin`` (ISO 6166,
    optional in the reference)."""

    uuid: uuid.UUID
    isin: str | None = None


@attrs.frozen
class Position:
    """A position of one account in one instrument (S12). All quantities are ``Decimal``
    (decimal strings on the wire, in units of the instrument).

    ``quantity`` and ``available_for_trading`` may be negative (the reference's pattern
    ``^-?[0-9]{0,63}(\\.[0-9]{1,27})?$``); ``locked_for_trading`` and ``pending_settlement`` are
    not negative in the reference's pattern.
    """

    account_id: uuid.UUID
    instrument: Instrument
    quantity: Decimal
    available_for_trading: Decimal
    locked_for_trading: Decimal
    pending_settlement: Decimal


class InstrumentRecord(TypedDict, total=False):
    """The ``instrument`` object of a :class:`PositionRecord`, as the API sent it."""

    uuid: str
    isin: str | None


class PositionRecord(TypedDict):
    """A position as the API's own JSON object (decoded, never rebuilt), once it has been
    validated exactly as :class:`Position` validates it (see
    :func:`upvest_async.records.position_records`). Values are the API's strings, unchanged."""

    account_id: str
    instrument: InstrumentRecord
    quantity: str
    available_for_trading: str
    locked_for_trading: str
    pending_settlement: str
