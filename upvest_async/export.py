"""The ``export-positions`` job: positions of many accounts to a JSONL or CSV file.

Output keeps the API's field names and values: decimals stay decimal strings. JSONL writes one
position object per line; CSV flattens ``instrument`` into ``instrument.uuid`` and
``instrument.isin``. The file is written to a temporary name and renamed when complete, so an
interrupted export never leaves a file that looks complete.
"""

from __future__ import annotations

import csv
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

import attrs

from .client import UpvestClient
from .converter import unstructure
from .models import Position

__all__ = ["CSV_COLUMNS", "ExportSummary", "export_positions"]

Format = Literal["jsonl", "csv"]

CSV_COLUMNS = (
    "account_id", "instrument.uuid", "instrument.isin", "quantity", "available_for_trading",
    "locked_for_trading", "pending_settlement",
)


@attrs.define
class ExportSummary:
    """Figures of one export: ``accounts``, ``positions``, ``pages``, ``requests`` (HTTP
    requests, token requests included), ``seconds`` (wall clock)."""

    accounts: int = 0
    positions: int = 0
    pages: int = 0
    requests: int = 0
    seconds: float = 0.0

    @property
    def positions_per_second(self) -> float:
        return self.positions / self.seconds if self.seconds > 0 else 0.0


class _Writer:
    def __init__(self, stream: TextIO, fmt: Format) -> None:
        self._stream = stream
        self._csv = csv.writer(stream) if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(CSV_COLUMNS)

    def write(self, positions: Sequence[Position]) -> None:
        rows: list[dict[str, Any]] = [unstructure(position) for position in positions]
        if self._csv is None:
            self._stream.writelines(json.dumps(row) + "\n" for row in rows)
            return
        for row in rows:
            instrument = row["instrument"]
            self._csv.writerow([
                row["account_id"], instrument["uuid"], instrument.get("isin") or "",
                row["quantity"], row["available_for_trading"], row["locked_for_trading"],
                row["pending_settlement"],
            ])


async def list_account_ids(client: UpvestClient) -> list[str]:
    """The accounts of all portfolio configurations (``GET /portfolios/configurations``)."""
    return [str(config.account_id) async for config in client.portfolios.configurations.list()]


async def export_positions(
    client: UpvestClient,
    account_ids: Sequence[str | uuid.UUID],
    out: Path,
    *,
    fmt: Format = "jsonl",
    concurrency: int = 8,
    on_account: Callable[[str, int], None] | None = None,
) -> ExportSummary:
    """Export the positions of ``account_ids`` (in that order) to ``out``.

    ``concurrency``: accounts fetched at the same time. ``on_account(account_id, positions)``
    is called as each account is written. Raises the client's errors
    (:class:`~upvest_async.UpvestError`); on any error the partial file is removed.
    """
    started = time.perf_counter()
    pages_before, requests_before = client.stats.pages, client.stats.requests
    summary = ExportSummary()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as stream:
            writer = _Writer(stream, fmt)
            async for account, positions in client.positions.export_accounts(
                account_ids, concurrency=concurrency
            ):
                writer.write(positions)
                summary.accounts += 1
                summary.positions += len(positions)
                if on_account is not None:
                    on_account(account, len(positions))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    summary.pages = client.stats.pages - pages_before
    summary.requests = client.stats.requests - requests_before
    summary.seconds = time.perf_counter() - started
    return summary
