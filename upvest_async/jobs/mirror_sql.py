"""The SQL of the positions mirror (:mod:`upvest_async.jobs.mirror`): the rows a load stages
(the API's own strings), their form in SQLite's decimal column, the load's temporary tables, and
the ordering rule's upsert into ``upvest_positions`` (``INSERT ... ON CONFLICT DO UPDATE ...
WHERE``, the same statement on SQLite and PostgreSQL through SQLAlchemy's dialect inserts). The
rule is the mirror guide's (docs/guides/mirror.md, "The ordering rule, and why")."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..models.positions import PositionRecord
from ..storage import positions_table
from ..storage.schema import ExactDecimal

KEY = ("account_id", "instrument_uuid")
NUMBERS = ("quantity", "available_for_trading", "locked_for_trading", "pending_settlement")
VALUES = ("isin", *NUMBERS)
COLUMNS = (*KEY, *VALUES)

#: A position as the load stages it: the API's own strings, in the order of :data:`COLUMNS`.
Row = tuple[str, str, str | None, str, str, str, str]


def staged_row(record: PositionRecord) -> Row:
    instrument = record["instrument"]
    return (record["account_id"], instrument["uuid"], instrument.get("isin"),
            record["quantity"], record["available_for_trading"],
            record["locked_for_trading"], record["pending_settlement"])


#: A decimal string already in the form SQLite's decimal column holds (fixed point, no
#: leading zero, no negative zero; :class:`~upvest_async.storage.schema.ExactDecimal`): the
#: API's usual form, kept as it is.
PLAIN_DECIMAL = re.compile(r"(?:-(?=[0-9.]*[1-9]))?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
DECIMAL_TEXT = ExactDecimal()
SQLITE = sqlite.dialect()


def sqlite_text(text: str) -> str:
    """A decimal string of the API as SQLite's decimal column holds it (``"007"`` is
    ``"7"``, ``".5"`` is ``"0.5"``, ``"-0"`` is ``"0"``)."""
    if PLAIN_DECIMAL.fullmatch(text):
        return text
    written: str = DECIMAL_TEXT.process_bind_param(Decimal(text), SQLITE)
    return written


def sqlite_row(row: Row) -> Row:
    return (row[0], row[1], row[2], sqlite_text(row[3]), sqlite_text(row[4]),
            sqlite_text(row[5]), sqlite_text(row[6]))


#: A line of text that is not a decimal in the form of :data:`PLAIN_DECIMAL`.
ODD_LINE = re.compile(rf"^(?!{PLAIN_DECIMAL.pattern}$)", re.MULTILINE)


def sqlite_rows(rows: Sequence[Row]) -> Sequence[Row]:
    """``rows`` with their decimals as SQLite's decimal column holds them: the batch's
    decimals are checked in one pass, and only a batch with a decimal in another form is
    rewritten row by row."""
    decimals = "\n".join([text for row in rows for text in row[3:]])
    return rows if ODD_LINE.search(decimals) is None else list(map(sqlite_row, rows))


def dialect_insert(table: sa.Table, dialect: str) -> Any:
    """The dialect's ``INSERT`` (with ``ON CONFLICT``) of ``table``."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def newer(table: sa.Table, excluded: Any) -> sa.ColumnElement[bool]:
    """The ordering rule: the incoming row (``excluded``) is newer than ``table``'s."""
    mine = sa.tuple_(*(table.c[name] for name in NUMBERS))
    theirs = sa.tuple_(*(excluded[name] for name in NUMBERS))
    return sa.or_(excluded.as_of > table.c.as_of,
                  sa.and_(excluded.as_of == table.c.as_of, theirs > mine))


def upsert(statement: Any) -> Any:
    """``statement`` (an insert into ``upvest_positions``) with the ordering rule on
    conflict."""
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[positions_table.c[name] for name in KEY],
        set_={name: excluded[name] for name in (*VALUES, "as_of")},
        where=newer(positions_table, excluded),
    )


def typed_column(rows: sa.Table, name: str) -> sa.ColumnElement[Any]:
    """A staged column as its ``upvest_positions`` type: a uuid in its canonical form
    (lower case), a decimal as the API wrote it (``numeric`` on PostgreSQL)."""
    column: sa.ColumnElement[Any] = rows.c[name]
    if name in KEY:
        column = sa.func.lower(column)
    return sa.cast(column, positions_table.c[name].type) if name != "isin" else column


class Staging:
    """The load's temporary tables (of its own connection): ``rows``, the positions exported
    as the API's strings (text columns, written fast); on PostgreSQL also ``typed``, the same
    rows in ``upvest_positions``'s types, converted by the server batch by batch while the
    export runs (so that the final transaction casts nothing); ``accounts``, the accounts
    covered."""

    def __init__(self, dialect: str) -> None:
        self.metadata = sa.MetaData()
        self.rows = sa.Table("upvest_positions_load", self.metadata,
                             *(sa.Column(name, sa.Text()) for name in COLUMNS),
                             prefixes=["TEMPORARY"])
        self.typed = sa.Table(
            "upvest_positions_load_typed", self.metadata,
            *(sa.Column(name, positions_table.c[name].type) for name in COLUMNS),
            prefixes=["TEMPORARY"]) if dialect == "postgresql" else None
        self.accounts = sa.Table(
            "upvest_positions_load_accounts", self.metadata,
            sa.Column("account_id", positions_table.c.account_id.type, primary_key=True),
            prefixes=["TEMPORARY"],
        )

    def source(self) -> list[sa.ColumnElement[Any]]:
        """The staged columns of :data:`COLUMNS` as ``upvest_positions`` types them."""
        if self.typed is not None:
            return [self.typed.c[name] for name in COLUMNS]
        return [typed_column(self.rows, name) for name in COLUMNS]
