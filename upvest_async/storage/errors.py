"""Errors of the database layer. Messages never quote a database URL, a password or row data."""

from __future__ import annotations

from ..errors import ConfigurationError, StoreUnavailableError

__all__ = ["DatabaseAccessError", "DatabaseURLError", "DatabaseUnavailableError", "SchemaError"]


class DatabaseURLError(ConfigurationError):
    """A database URL is not ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``, or
    carries a password. The message names the part that is wrong, never the URL itself."""


class DatabaseUnavailableError(StoreUnavailableError):
    """The database could not be reached, the connection was lost, or the transaction was
    aborted for a transient reason (PostgreSQL: a lock wait over ``lock_timeout``, a deadlock,
    a serialization failure, a session ended by ``idle_in_transaction_session_timeout``;
    SQLite: the database stayed locked over the busy timeout). Nothing of the transaction was
    committed; retrying later may succeed. ``reason``: a short code (the PostgreSQL SQLSTATE, the
    SQLite error name, or the exception class), never row data."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"the database {target} is unavailable ({reason}); nothing was "
                         "committed, retry later")


class DatabaseAccessError(ConfigurationError):
    """The database refused what was asked for reasons of configuration, not of the moment:
    PostgreSQL authentication failed (the user, or the password from ``PGPASSWORD`` or the
    password file), the database does not exist, or a permission is missing; a SQLite file
    that is read-only or not a database. Retrying does not help. ``reason``: the PostgreSQL
    SQLSTATE or the SQLite error name and what it means."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"the database {target} refused access ({reason})")


class SchemaError(ConfigurationError):
    """A table of the database does not have the shape this version of upvest-async expects
    (an older or a different schema): the message names the table and what differs. Nothing
    is changed; migrate or rename the table (``docs/guides/mirror.md``)."""
