"""Engines: one per database URL and process, tuned per dialect, safe across ``fork()``."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

from taskjobs.errors import ConfigurationError
from taskjobs.store.dialects import is_mysql

# Seconds to wait for a connection to a database server before giving up.
CONNECT_TIMEOUT = 5
# Seconds a SQLite writer waits for another writer's lock before "database is locked".
SQLITE_BUSY_TIMEOUT = 30
# Seconds after which a pooled MySQL connection is replaced (below the server's wait_timeout).
POOL_RECYCLE = 3600
# Execution option that marks a transaction as a writer (SQLite takes the write lock at BEGIN).
WRITE_OPTION = "taskjobs_write"

# The drivers taskjobs is tested with, used when a URL names none.
DEFAULT_DRIVERS = {"postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}
# The extra that installs each driver.
DRIVER_EXTRAS = {"psycopg": "postgres", "pymysql": "mysql"}
SUPPORTED = "sqlite:///PATH, postgresql://USER@HOST/DB or mysql://USER@HOST/DB"

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_engines_lock = threading.Lock()


def parse_url(url: str | URL) -> URL:
    """Parse a database URL and pick our tested driver when it names none."""
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"invalid database URL {url!r}: {exc}; expected {SUPPORTED}"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("sqlite", *DEFAULT_DRIVERS):
        raise ConfigurationError(
            f"unsupported database {backend!r} in URL {safe_url(parsed)!r}: "
            "taskjobs stores jobs in SQLite, PostgreSQL or MySQL/MariaDB "
            f"({SUPPORTED})"
        )
    if not driver and backend in DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=f"{backend}+{DEFAULT_DRIVERS[backend]}")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only used to print a URL that may itself be bad
        return "<unparsable URL>"


def create_engine(url: URL) -> Engine:
    """A pooled engine for ``url``, tuned for many short transactions from many threads."""
    options: dict[str, Any] = {}
    connect_args: dict[str, Any] = {}
    backend = url.get_backend_name()
    if backend == "sqlite":
        connect_args.update(timeout=SQLITE_BUSY_TIMEOUT, check_same_thread=False)
        if url.database in (None, "", ":memory:"):
            # One shared in-memory database for every thread of this process.
            options["poolclass"] = StaticPool
    else:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
        # A pooled connection the server dropped (restart, failover, outage) is replaced
        # before use instead of failing the caller's next read or write.
        options["pool_pre_ping"] = True
        if is_mysql(backend):
            connect_args.setdefault("charset", "utf8mb4")
            options["pool_recycle"] = POOL_RECYCLE
            # As PostgreSQL's default: a write's guard is inside its statement, and a history
            # insert's read (INSERT ... SELECT) then takes no shared gap locks, which
            # concurrent history inserts deadlock on under REPEATABLE READ. Reads that need
            # one snapshot ask for it (``snapshot``).
            options["isolation_level"] = "READ COMMITTED"
    try:
        engine = sa.create_engine(url, connect_args=connect_args, **options)
    except ModuleNotFoundError as exc:
        driver = url.get_driver_name()
        extra = DRIVER_EXTRAS.get(driver)
        hint = f"; install it with: pip install 'taskjobs[{extra}]'" if extra else ""
        raise ConfigurationError(
            f"database driver {driver!r} for {safe_url(url)!r} is not installed ({exc}){hint}"
        ) from None
    except (sa.exc.ArgumentError, TypeError) as exc:
        raise ConfigurationError(f"invalid database URL {safe_url(url)!r}: {exc}") from None
    if backend == "sqlite":
        _tune_sqlite(engine)
    with _engines_lock:
        _engines.add(engine)
    return engine


def _tune_sqlite(engine: Engine) -> None:
    """WAL for concurrent readers, and write transactions that queue for the lock at BEGIN."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        # A deferred writer that meets a lock fails at once instead of waiting for it.
        immediate = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_fork_safe() -> None:
    """Drop the pooled connections a forked child inherited, without closing the parent's.

    Runs by itself after every ``os.fork()``; call it in a child made some other way.
    """
    global _engines_lock
    # No lock here: a lock held by another thread at fork time would never be released. The
    # child's copy of the lock, for the same reason, is replaced.
    _engines_lock = threading.Lock()
    for engine in list(_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=make_fork_safe)
