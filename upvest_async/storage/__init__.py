"""The database layer: durable webhook event stores and the tables of the positions mirror, on
SQLite (one host) and PostgreSQL (several replicas), with one SQL code path.

Needs the ``mirror`` extra (``pip install 'upvest-async[mirror]'``: SQLAlchemy 2 Core over the
asyncpg and aiosqlite drivers); without it, importing this package raises ``ImportError``
saying so. The core SDK never imports it.

- :func:`parse_database_url`: ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``.
- :func:`open_database`: an async context manager yielding a :class:`Database` whose
  :meth:`Database.transaction` is one database transaction; the schema is created or checked
  when it opens (:func:`ensure_schema`).
- :class:`SQLEventStore`: the :class:`~upvest_async.webhooks.EventStore` of a
  :func:`~upvest_async.webhooks.webhook_app` on a database: event ids and signature nonces are
  claimed in the same transaction as your handler's writes.
- Errors: :class:`DatabaseURLError`, :class:`DatabaseUnavailableError` (transient: the receiver
  answers 503), :class:`DatabaseAccessError` (authentication, no such database, permission)
  and :class:`SchemaError`.

Guide: ``docs/guides/mirror.md``.
"""

from __future__ import annotations

try:
    import sqlalchemy
    import sqlalchemy.ext.asyncio  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
    raise ImportError(
        "upvest_async.storage needs the mirror extra: pip install 'upvest-async[mirror]' "
        f"({exc})"
    ) from exc

from .database import Database, open_database
from .errors import DatabaseAccessError, DatabaseUnavailableError, DatabaseURLError, SchemaError
from .event_store import SQLEventStore
from .schema import (
    SCHEMA_VERSION,
    ensure_schema,
    metadata,
    positions_table,
    schema_version_table,
    signatures_table,
    webhook_events_table,
)
from .urls import DatabaseURL, parse_database_url

__all__ = [
    "SCHEMA_VERSION",
    "Database",
    "DatabaseAccessError",
    "DatabaseURL",
    "DatabaseURLError",
    "DatabaseUnavailableError",
    "SQLEventStore",
    "SchemaError",
    "ensure_schema",
    "metadata",
    "open_database",
    "parse_database_url",
    "positions_table",
    "schema_version_table",
    "signatures_table",
    "webhook_events_table",
]
