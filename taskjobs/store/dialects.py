"""What differs between SQLite, PostgreSQL and MySQL/MariaDB, each difference written once.

Everything else in the store is portable SQLAlchemy Core; code that needs one of these asks
here by the dialect's name (``engine.dialect.name``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.compiler import compiles

POSTGRESQL = "postgresql"
# The names SQLAlchemy gives MySQL's dialect: "mariadb" for a mariadb:// URL.
MYSQL = ("mysql", "mariadb")

# Each dialect's INSERT with an upsert clause.
_INSERTS: dict[str, Any] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
    "mysql": mysql.insert,
    "mariadb": mysql.insert,
}


def is_mysql(dialect: str) -> bool:
    """Whether ``dialect`` is MySQL or MariaDB."""
    return dialect in MYSQL


def writable_cte(dialect: str) -> bool:
    """Whether a write can feed a second one in the same statement (``WITH up AS (INSERT ...
    RETURNING ...) INSERT ... SELECT FROM up``): PostgreSQL only."""
    return dialect == POSTGRESQL


def json_batches(dialect: str) -> bool:
    """Whether a statement of many rows takes them as one JSON parameter (``unnested``,
    ``batch_of``): on PostgreSQL, where psycopg would run it once a row, at some 17 µs of
    Python each. PyMySQL sends one multi-row INSERT, and SQLite's ``executemany`` runs in C."""
    return dialect == POSTGRESQL


def deletes_returning(dialect: sa.Dialect) -> bool:
    """Whether a DELETE can pick its rows by a LIMITed subquery of its own table and return
    them: PostgreSQL, and SQLite from 3.35; not MySQL, nor MariaDB (no LIMIT in such a
    subquery)."""
    return bool(dialect.delete_returning) and not is_mysql(dialect.name)


def snapshot_isolation(dialect: str) -> bool:
    """Whether a transaction must ask for REPEATABLE READ for all its statements to read one
    snapshot: on PostgreSQL (whose default reads anew at each statement) and MySQL (in case a
    server's default is lower); SQLite's read transactions are snapshots."""
    return dialect == POSTGRESQL or is_mysql(dialect)


def upsert(
    dialect: str,
    table: sa.Table,
    values: Mapping[str, Any] | sa.Select[Any],
    key: str | Sequence[str],
    updates: Callable[[Any], Sequence[tuple[str, Any]]],
) -> Any:
    """An INSERT of ``values`` into ``table`` (a row, or the rows of a SELECT whose columns are
    named as the table's) that, where a row with the same ``key`` (a column, or several)
    exists, sets ``updates(new)`` on it instead, ``new`` being the values the INSERT brought.

    ``updates`` is an ordered list: MySQL applies assignments left to right, and later ones see
    the results of earlier ones.
    """
    insert: Any = _INSERTS[dialect](table)
    if isinstance(values, sa.Select):
        insert = insert.from_select([column.name for column in values.selected_columns], values)
    else:
        insert = insert.values(dict(values))
    if is_mysql(dialect):
        return insert.on_duplicate_key_update(list(updates(insert.inserted)))
    return insert.on_conflict_do_update(
        index_elements=[table.c[column] for column in ([key] if isinstance(key, str) else key)],
        set_=dict(updates(insert.excluded)),
    )


def insert_new(
    dialect: str, table: sa.Table, columns: Sequence[str], rows: Any, key: Sequence[str]
) -> Any:
    """An INSERT into ``table``'s ``columns`` of the ``rows`` of a SELECT that skips each row
    whose ``key``, the columns of a unique index, the table holds already: also one that
    another transaction inserted after this statement began, and committed while this one
    waited for a lock (the statement's own reads do not see it on PostgreSQL)."""
    insert: Any = _INSERTS[dialect](table).from_select(list(columns), rows)
    if is_mysql(dialect):
        # MySQL has no DO NOTHING; INSERT IGNORE would also turn other errors into warnings.
        return insert.on_duplicate_key_update({key[0]: table.c[key[0]]})
    return insert.on_conflict_do_nothing(index_elements=[table.c[column] for column in key])


def unnested(table: sa.Table, names: Sequence[str]) -> Any:
    """Rows of ``table``'s columns ``names`` as one relation (a CTE named ``batch``), bound as
    one parameter, ``batch``, that holds them all as JSON (see ``batch_of``): PostgreSQL's
    ``json_to_recordset``. One execution of one statement then takes any number of rows, and
    the statement's text does not depend on how many (psycopg prepares it once). JSON rather
    than an array per column: psycopg quotes arrays element by element in Python, at several
    times the cost of the standard library's JSON encoder."""
    rows = sa.cast(sa.bindparam("batch", type_=sa.Text), postgresql.JSON)
    columns = [sa.column(name, table.c[name].type) for name in names]
    relation = sa.func.json_to_recordset(rows).table_valued(*columns)
    return sa.select(relation.render_derived(name="unnested", with_types=True)).cte("batch")


def batch_of(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The parameter of an ``unnested`` relation of ``rows`` (each a mapping of column names to
    values; times as ``naive_utc`` makes them, as every bound time is stored)."""
    return {"batch": json.dumps(rows, default=_json_time, separators=(",", ":"))}


def _json_time(value: Any) -> str:
    """A time as JSON: ISO 8601, naive UTC."""
    if not isinstance(value, datetime):
        raise TypeError(f"a job column cannot hold {type(value).__name__} {value!r}")
    return str(naive_utc(value).isoformat())


def naive_utc(value: datetime) -> datetime:
    """A time as every database here stores it: naive, in UTC (a naive time is taken as UTC)."""
    if value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def before(dialect: str, columns: tuple[Any, Any], values: tuple[datetime, str]) -> Any:
    """Rows after ``values`` in the descending order of the two ``columns`` (a keyset page), in
    the form each database's planner turns into an index range: a row-value comparison, or its
    expansion on MySQL."""
    (first, second), (first_value, second_value) = columns, values
    if is_mysql(dialect):
        return sa.or_(first < first_value, sa.and_(first == first_value, second < second_value))
    return sa.tuple_(first, second) < sa.tuple_(first_value, second_value)


@contextmanager
def try_lock(connection: sa.Connection, *, key: int, name: str) -> Iterator[bool]:
    """Whether this connection got the database-wide lock ``key`` (PostgreSQL's advisory lock,
    held to the end of the transaction) or ``name`` (MySQL's, released on leaving), without
    waiting. SQLite's write lock, taken when a write transaction begins, already serializes.

    PostgreSQL's advisory locks are the database's; MySQL's named locks are the server's, so
    there the name is qualified by the database's (hashed: a lock's name is at most 64
    characters), and stores sharing a server do not skip each other's turns."""
    dialect = connection.dialect.name
    if dialect == POSTGRESQL:
        yield bool(connection.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(key))))
    elif is_mysql(dialect):
        scoped = sa.func.concat(name, ":", sa.func.md5(sa.func.database()))
        held = bool(connection.scalar(sa.select(sa.func.get_lock(scoped, 0))))
        try:
            yield held
        finally:
            if held:
                connection.scalar(sa.select(sa.func.release_lock(scoped)))
    else:
        yield True


class count_sum(sa.sql.functions.GenericFunction[int]):  # noqa: N801 (an SQL function's name)
    """``sum()`` of a column of counts that each fit in 32 bits, as a BIGINT. PostgreSQL adds
    up a BIGINT column in NUMERIC, and a 32-bit one in BIGINT: casting each count first made
    the report's statement a third faster there (measured 27.5 -> 17.3 ms on 31,000 rows).
    The other databases add up the column as it is."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(count_sum)
def _sum(element: count_sum, compiler: Any, **kw: Any) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


@compiles(count_sum, POSTGRESQL)
def _sum_in_32_bits(element: count_sum, compiler: Any, **kw: Any) -> str:
    return f"sum(CAST({compiler.process(element.clauses, **kw)} AS INTEGER))"


class buckets_since(sa.sql.functions.FunctionElement[int]):  # noqa: N801 (an SQL function's)
    """``buckets_since(at, since, width)``: which bucket of ``width`` whole seconds from
    ``since`` the time ``at`` (at or after it) falls in, counted by the database."""

    type = sa.Integer()
    inherit_cache = True
    name = "buckets_since"


@compiles(buckets_since)
def _buckets_since(element: buckets_since, compiler: Any, **kw: Any) -> str:
    # SQLite stores times as text, which strftime('%s') reads as seconds since the epoch.
    at, since, width = (compiler.process(clause, **kw) for clause in element.clauses)
    seconds = f"CAST(strftime('%s', {at}) AS INTEGER) - CAST(strftime('%s', {since}) AS INTEGER)"
    return f"(({seconds}) / {width})"


@compiles(buckets_since, POSTGRESQL)
def _buckets_since_postgresql(element: buckets_since, compiler: Any, **kw: Any) -> str:
    at, since, width = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(CAST(EXTRACT(EPOCH FROM ({at} - {since})) AS BIGINT) / {width})"


@compiles(buckets_since, *MYSQL)
def _buckets_since_mysql(element: buckets_since, compiler: Any, **kw: Any) -> str:
    at, since, width = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(TIMESTAMPDIFF(SECOND, {since}, {at}) DIV {width})"
