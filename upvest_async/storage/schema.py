"""The tables (SQLAlchemy Core), the same Python values on SQLite and PostgreSQL:

- ``upvest_positions``: primary key ``(account_id, instrument_uuid)``; ``isin`` (text or
  NULL); ``quantity``, ``available_for_trading``, ``locked_for_trading``,
  ``pending_settlement`` (``Decimal``); ``as_of`` (aware UTC ``datetime``).
- ``upvest_webhook_events``: ``event_id`` (primary key), ``type``, ``created_at``,
  ``handled_at``: one row per webhook event handled (``SQLEventStore``).
- ``upvest_webhook_signatures``: ``(key_id, nonce)`` (primary key) of each accepted webhook
  signature, kept until ``keep_until`` (replays are refused on every replica).
- ``upvest_schema_version``: one row, ``name`` = ``"upvest_async"``, ``version`` =
  :data:`SCHEMA_VERSION`.

Column types: decimals are exact (PostgreSQL ``numeric``; SQLite ``text`` holding the decimal
string, e.g. ``"12.50"``; both return ``decimal.Decimal`` with the scale written). UUIDs are
``uuid.UUID`` (PostgreSQL ``uuid``; SQLite the canonical lowercase hyphenated text).
Timestamps are aware ``datetime`` in UTC (PostgreSQL ``timestamptz``; SQLite ``text`` in one
fixed-width ISO-8601 form, ``2026-01-02T03:04:05.000006+00:00``, so that comparing the text
in SQL compares the instants). Binding a ``float``, a naive ``datetime``, a NaN or a uuid as
text raises ``TypeError``/``ValueError`` before anything is sent.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from .errors import SchemaError

__all__ = [
    "SCHEMA_VERSION",
    "ExactDecimal",
    "UTCDateTime",
    "UUIDValue",
    "ensure_schema",
    "metadata",
    "positions_table",
    "schema_version_table",
    "signatures_table",
    "webhook_events_table",
]

#: The version of the tables of this release (``upvest_schema_version.version``).
SCHEMA_VERSION = 1
_SCHEMA_NAME = "upvest_async"
# pg_advisory_xact_lock key serialising schema creation between replicas starting at once.
_SCHEMA_LOCK = 0x7570_7665_7374  # "upvest"


class ExactDecimal(sa.TypeDecorator[Decimal]):
    """``decimal.Decimal``, exact: PostgreSQL ``numeric``, SQLite the decimal text."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.Numeric(asdecimal=True))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"a decimal column takes decimal.Decimal, not "
                            f"{type(value).__name__}")
        if not value.is_finite():
            raise ValueError("a decimal column takes finite values only")
        if dialect.name == "postgresql":
            return value
        # Fixed-point text, as PostgreSQL's numeric writes it (1E+3 -> "1000", -0 -> "0").
        return format(abs(value) if value.is_zero() else value, "f")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(value)


class UUIDValue(sa.TypeDecorator[uuid.UUID]):
    """``uuid.UUID``: PostgreSQL ``uuid``, SQLite the canonical lowercase hyphenated text."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID(as_uuid=True))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: uuid.UUID | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, uuid.UUID):
            raise TypeError(f"a uuid column takes uuid.UUID, not {type(value).__name__}")
        return value if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> uuid.UUID | None:
        if value is None:
            return None
        return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware ``datetime``, stored and returned in UTC: PostgreSQL ``timestamptz``, SQLite
    fixed-width ISO-8601 text (ordered as the instants)."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.DateTime(timezone=True))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"a timestamp column takes datetime, not {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("a timestamp column takes timezone-aware datetimes only")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" \
            else value.isoformat(timespec="microseconds")

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return parsed.astimezone(UTC)


metadata = sa.MetaData()

#: Positions of the mirror: one row per (account, instrument).
positions_table = sa.Table(
    "upvest_positions",
    metadata,
    sa.Column("account_id", UUIDValue(), primary_key=True),
    sa.Column("instrument_uuid", UUIDValue(), primary_key=True),
    sa.Column("isin", sa.Text(), nullable=True),
    sa.Column("quantity", ExactDecimal(), nullable=False),
    sa.Column("available_for_trading", ExactDecimal(), nullable=False),
    sa.Column("locked_for_trading", ExactDecimal(), nullable=False),
    sa.Column("pending_settlement", ExactDecimal(), nullable=False),
    sa.Column("as_of", UTCDateTime(), nullable=False),
)

#: Webhook events handled: one row per event id, written in the handler's transaction.
webhook_events_table = sa.Table(
    "upvest_webhook_events",
    metadata,
    sa.Column("event_id", UUIDValue(), primary_key=True),
    sa.Column("type", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("handled_at", UTCDateTime(), nullable=False),
)

#: Accepted webhook signatures (key id, nonce), kept until they can no longer verify.
signatures_table = sa.Table(
    "upvest_webhook_signatures",
    metadata,
    sa.Column("key_id", sa.Text(), primary_key=True),
    sa.Column("nonce", sa.Text(), primary_key=True),
    sa.Column("keep_until", UTCDateTime(), nullable=False),
    sa.Index("upvest_webhook_signatures_keep_until", "keep_until"),
)

#: One row: the version of these tables.
schema_version_table = sa.Table(
    "upvest_schema_version",
    metadata,
    sa.Column("name", sa.Text(), primary_key=True),
    sa.Column("version", sa.Integer(), nullable=False),
)


def _type_name(type_: sa.types.TypeEngine[Any], dialect: Dialect) -> str:
    return " ".join(type_.compile(dialect=dialect).upper().split())


def _check_table(sync: sa.Connection, table: sa.Table) -> None:
    """Raise :class:`SchemaError` when the existing ``table`` differs from ours: its columns
    (names, types, NULL or not) and its primary key."""
    inspector = sa.inspect(sync)
    dialect = sync.dialect
    found = {c["name"]: c for c in inspector.get_columns(table.name)}
    expected = {c.name: c for c in table.columns}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
            ([f"unexpected column(s) {', '.join(extra)}"] if extra else [])
        raise SchemaError(f"table {table.name} has another schema: {'; '.join(parts)}")
    for name, column in expected.items():
        want = _type_name(column.type, dialect)
        have = _type_name(found[name]["type"], dialect)
        if want != have:
            raise SchemaError(f"table {table.name}: column {name} is {have}, expected {want}")
        if not column.primary_key and bool(found[name]["nullable"]) != column.nullable:
            null = "NULL" if column.nullable else "NOT NULL"
            raise SchemaError(f"table {table.name}: column {name} must be {null}")
    key = inspector.get_pk_constraint(table.name).get("constrained_columns") or []
    want_key = [c.name for c in table.primary_key.columns]
    if sorted(key) != sorted(want_key):
        raise SchemaError(f"table {table.name}: the primary key is ({', '.join(key)}), "
                          f"expected ({', '.join(want_key)})")


def _ensure(sync: sa.Connection) -> None:
    existing = set(sa.inspect(sync).get_table_names())
    for table in metadata.sorted_tables:
        if table.name in existing:
            _check_table(sync, table)
        else:
            table.create(sync)


async def ensure_schema(conn: AsyncConnection) -> None:
    """Create the tables that are missing and check those that exist, in the transaction of
    ``conn`` (PostgreSQL: under an advisory lock, so replicas starting together do not race).
    :func:`~upvest_async.storage.open_database` calls it.

    Raises :class:`~upvest_async.storage.SchemaError` when a table has another shape (naming
    the table and what differs) or ``upvest_schema_version`` holds another version; nothing is
    changed then.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
    await conn.run_sync(_ensure)
    version = await conn.scalar(
        sa.select(schema_version_table.c.version)
        .where(schema_version_table.c.name == _SCHEMA_NAME)
    )
    if version is None:
        await conn.execute(schema_version_table.insert().values(name=_SCHEMA_NAME,
                                                                version=SCHEMA_VERSION))
    elif version != SCHEMA_VERSION:
        raise SchemaError(f"table upvest_schema_version says version {version}; this release "
                          f"of upvest-async uses version {SCHEMA_VERSION} (see the migration "
                          "notes in docs/guides/mirror.md)")
