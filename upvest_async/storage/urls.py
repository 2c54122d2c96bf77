"""Database URLs: ``sqlite:///PATH`` and ``postgresql://USER@HOST:PORT/DB``, nothing else.

- ``sqlite:///PATH``: a database file; ``PATH`` is relative to the working directory
  (``sqlite:///mirror.db``) or absolute with a fourth slash (``sqlite:////var/lib/m.db``), as
  SQLAlchemy writes it. ``:memory:`` is refused (a store must survive the process), and so is a
  query (``?mode=...``) or an ``file:`` URI.
- ``postgresql://USER@HOST:PORT/DB``: user, host (a name, an IPv4 address or ``[IPv6]``),
  port and database are all required (no default port: the target is explicit). A password in
  the URL is refused (it would sit in shell histories, process lists and logs): the driver,
  asyncpg, reads it from ``PGPASSWORD`` or from a password file (``~/.pgpass``, or the file named
  by ``PGPASSFILE``). TLS follows libpq's ``PGSSLMODE`` (asyncpg's default: ``prefer``). A query
  (``?sslmode=...``) is refused. ``USER`` and ``DB`` may be percent-encoded.

Errors are :class:`~upvest_async.storage.DatabaseURLError`; their messages name the part that
is wrong and never quote the URL (it may hold a password).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal
from urllib.parse import quote, unquote

import attrs
from sqlalchemy.engine import URL

from .errors import DatabaseURLError

__all__ = ["DatabaseURL", "parse_database_url"]

_FORMS = "sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_NAME = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+")
_MAX_URL = 4096
_SUB_DELIMS = "!$&'()*+,;="


@attrs.frozen
class DatabaseURL:
    """A parsed database URL. ``dialect``: ``"sqlite"`` or ``"postgresql"``; SQLite: ``path``
    (the file, as given); PostgreSQL: ``user``, ``host``, ``port``, ``database``.
    ``str(url)`` is the canonical URL (it never holds a password)."""

    dialect: Literal["sqlite", "postgresql"]
    path: str | None = None
    user: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None

    def __str__(self) -> str:
        if self.dialect == "sqlite":
            return f"sqlite:///{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        user, database = (quote(v or "", safe=_SUB_DELIMS) for v in (self.user, self.database))
        return f"postgresql://{user}@{host}:{self.port}/{database}"

    @property
    def target(self) -> str:
        """What to name in messages: the SQLite file, or ``host:port/database``."""
        if self.dialect == "sqlite":
            return f"sqlite file {self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"postgresql {host}:{self.port}/{self.database}"

    def sqlalchemy_url(self) -> URL:
        """The SQLAlchemy URL of the async driver (``sqlite+aiosqlite``,
        ``postgresql+asyncpg``), without a password."""
        if self.dialect == "sqlite":
            return URL.create("sqlite+aiosqlite", database=self.path)
        return URL.create("postgresql+asyncpg", username=self.user, host=self.host,
                          port=self.port, database=self.database)


def _name(text: str, what: str) -> str:
    if not _NAME.fullmatch(text):
        raise DatabaseURLError(f"the database URL's {what} is missing or has characters that "
                               f"are not allowed (percent-encode them); expected {_FORMS}")
    try:
        value = unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise DatabaseURLError(f"the database URL's {what} is not UTF-8 once "
                               "percent-decoded") from None
    if not value or not value.isprintable():
        raise DatabaseURLError(f"the database URL's {what} is empty or holds control "
                               "characters once percent-decoded")
    return value


def _host(text: str) -> str:
    if text.startswith("[") and text.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(text[1:-1]))
        except ValueError:
            raise DatabaseURLError("the database URL's host is not a valid [IPv6] "
                                   "address") from None
    if not text or len(text) > 253 or not _HOSTNAME.fullmatch(text):
        raise DatabaseURLError(f"the database URL's host is missing or not a host name, "
                               f"an IPv4 address or an [IPv6] address; expected {_FORMS}")
    return text.lower()


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5 \
            or not 1 <= int(text) <= 65535:
        raise DatabaseURLError("the database URL's port is missing or not a number from 1 "
                               f"to 65535 (it is required); expected {_FORMS}")
    return int(text)


def _sqlite(rest: str) -> DatabaseURL:
    if not rest.startswith("///"):
        raise DatabaseURLError(f"a SQLite database URL is sqlite:///PATH (three slashes, no "
                               f"host); expected {_FORMS}")
    path = rest[3:]
    if "?" in path or "#" in path:
        raise DatabaseURLError("a SQLite database URL takes no query or fragment "
                               "(sqlite:///PATH)")
    if not path or path in {":memory:", "/"} or path.endswith("/") \
            or path.startswith(("file:", ":")):
        raise DatabaseURLError("a SQLite database URL must name a database file "
                               "(sqlite:///PATH; an in-memory database is not durable)")
    return DatabaseURL("sqlite", path=path)


def _postgresql(rest: str) -> DatabaseURL:
    if not rest.startswith("//"):
        raise DatabaseURLError(f"a PostgreSQL database URL is postgresql://USER@HOST:PORT/DB; "
                               f"expected {_FORMS}")
    rest = rest[2:]
    if "?" in rest or "#" in rest:
        raise DatabaseURLError("a PostgreSQL database URL takes no query or fragment; TLS "
                               "follows the PGSSLMODE environment variable")
    authority, slash, database = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if ":" in userinfo:
        raise DatabaseURLError("the database URL holds a password: remove it, and give it in "
                               "the PGPASSWORD environment variable or a password file "
                               "(~/.pgpass, or the file named by PGPASSFILE)")
    if not at:
        raise DatabaseURLError(f"the database URL's user is missing (USER@); expected {_FORMS}")
    user = _name(userinfo, "user")
    if hostport.startswith("["):
        host_text, bracket, port_part = hostport.partition("]")
        host_text += bracket
        if not port_part.startswith(":"):
            raise DatabaseURLError("the database URL's port is missing (it is required); "
                                   f"expected {_FORMS}")
        port_text = port_part[1:]
    else:
        host_text, colon, port_text = hostport.rpartition(":")
        if not colon:
            host_text, port_text = hostport, ""
    host = _host(host_text)
    port = _port(port_text)
    if not slash or "/" in database:
        raise DatabaseURLError(f"the database URL's database name is missing (/DB); expected "
                               f"{_FORMS}")
    return DatabaseURL("postgresql", user=user, host=host, port=port,
                       database=_name(database, "database name"))


def parse_database_url(text: str) -> DatabaseURL:
    """Parse ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB`` (see the module docs).

    Raises :class:`~upvest_async.storage.DatabaseURLError` for anything else: another scheme
    (``postgres://``, ``postgresql+asyncpg://``, ``mysql://``), a missing part, a query, a
    password, ``:memory:``. The message never quotes the URL.
    """
    if not isinstance(text, str):
        raise DatabaseURLError(f"a database URL must be text ({_FORMS})")
    if len(text) > _MAX_URL:
        raise DatabaseURLError(f"the database URL is longer than {_MAX_URL} characters")
    if not text.isprintable():
        raise DatabaseURLError("the database URL holds control characters or line breaks")
    scheme, colon, rest = text.partition(":")
    if colon and scheme == "sqlite":
        return _sqlite(rest)
    if colon and scheme == "postgresql":
        return _postgresql(rest)
    raise DatabaseURLError(f"unsupported database URL: expected {_FORMS} (the scheme is "
                           "exactly sqlite or postgresql)")
