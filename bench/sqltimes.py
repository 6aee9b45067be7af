"""Where a worker's writes spend their time: each statement's wall and CPU time, and how long
each transaction lasts (on SQLite: waits for the write lock, then holds it).

``bench.benchapp`` imports this when ``BENCH_SQL_TIMES`` names a directory, in the worker's
main process and in every pool process. Each process adds up, per statement text:

- the executions, their wall time and the CPU time of the executing thread;
- on SQLite, ``BEGIN IMMEDIATE``, whose wall time is the wait for the write lock (the busy
  handler sleeps until the lock frees);
- ``COMMIT``, the driver's ``commit()`` (its wall time includes the database's);
- per thread, the committed transactions and how long each lasted, from its first statement
  to the end of its commit (on SQLite, from the end of ``BEGIN IMMEDIATE``: how long it held
  the lock).

and writes them to ``<dir>/sqltimes-<pid>.json`` every ``SAVE_EVERY`` commits (a pool process
may end without running ``atexit`` handlers). ``python -m bench.sqltimes DIR`` prints the
totals per process and per task.

It only listens (SQLAlchemy's cursor events, and the dialects' ``do_commit`` and ``do_rollback``
wrapped):
what taskjobs sends is unchanged, though the listeners cost a few microseconds a statement.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine.default import DefaultDialect

# A process saves its figures after this many commits.
SAVE_EVERY = 100
# Characters of a statement's text that name it.
KEY_LENGTH = 60

_figures: dict[str, list[float]] = {}  # key: [count, wall seconds, cpu seconds]
_lock = threading.Lock()
_local = threading.local()
_commits = 0
_directory = ""


def _add(key: str, wall: float, cpu: float) -> None:
    with _lock:
        figure = _figures.setdefault(key, [0, 0.0, 0.0])
        figure[0] += 1
        figure[1] += wall
        figure[2] += cpu


def _key(statement: str) -> str:
    return "SQL " + " ".join(statement.split())[:KEY_LENGTH]


def _before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
    _local.started = (time.perf_counter(), time.thread_time())
    if getattr(_local, "holding", None) is None:
        _local.holding = _local.started


def _after(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
    wall, cpu = time.perf_counter(), time.thread_time()
    started_wall, started_cpu = _local.started
    _add(_key(statement), wall - started_wall, cpu - started_cpu)
    if statement == "BEGIN IMMEDIATE":
        _local.holding = (wall, cpu)


def _ended_by_rollback(original: Any) -> Any:
    def do_rollback(self: DefaultDialect, dbapi_connection: Any) -> None:
        _local.holding = None  # a reader's transaction, or a failed one: not counted
        original(self, dbapi_connection)

    return do_rollback


def _timed_commit(original: Any) -> Any:
    def do_commit(self: DefaultDialect, dbapi_connection: Any) -> None:
        global _commits
        started_wall, started_cpu = time.perf_counter(), time.thread_time()
        original(self, dbapi_connection)
        wall, cpu = time.perf_counter(), time.thread_time()
        _add("SQL COMMIT", wall - started_wall, cpu - started_cpu)
        holding = getattr(_local, "holding", None)
        if holding is not None:
            _local.holding = None
            name = threading.current_thread().name
            _add(f"transaction of {name}", wall - holding[0], cpu - holding[1])
        with _lock:
            _commits += 1
            due = _commits % SAVE_EVERY == 0
        if due:
            save()

    return do_commit


def save() -> None:
    with _lock:
        snapshot = json.dumps(_figures)
    path = os.path.join(_directory, f"sqltimes-{os.getpid()}.json")
    with open(path + ".tmp", "w") as stream:
        stream.write(snapshot)
    os.replace(path + ".tmp", path)


def _after_fork_in_child() -> None:
    """A forked pool process counts from zero: its parent's figures are the parent's."""
    global _lock, _commits
    _lock = threading.Lock()
    _figures.clear()
    _commits = 0


def install(directory: str) -> None:
    """Time every statement of every engine of this process (and of its forked children)."""
    global _directory
    _directory = directory
    os.register_at_fork(after_in_child=_after_fork_in_child)
    event.listen(sa.engine.Engine, "before_cursor_execute", _before)
    event.listen(sa.engine.Engine, "after_cursor_execute", _after)
    DefaultDialect.do_commit = _timed_commit(DefaultDialect.do_commit)  # type: ignore[method-assign]
    DefaultDialect.do_rollback = _ended_by_rollback(  # type: ignore[method-assign]
        DefaultDialect.do_rollback
    )


def summary(directory: str, tasks: int | None = None) -> str:
    """The saved figures of every process, each statement's share in ms (and per task)."""
    lines = []
    for name in sorted(os.listdir(directory)):
        if not (name.startswith("sqltimes-") and name.endswith(".json")):
            continue
        with open(os.path.join(directory, name)) as stream:
            figures = json.load(stream)
        lines.append(f"process {name[9:-5]}")
        for key, (count, wall, cpu) in sorted(figures.items(), key=lambda item: -item[1][1]):
            per_task = f"  {1000 * wall / tasks:7.3f} ms a task" if tasks else ""
            lines.append(
                f"  {int(count):7d} x {1000 * wall / count:7.3f} ms wall, "
                f"{1000 * cpu / count:7.3f} ms CPU, total {wall:6.2f} s{per_task}  {key}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None))
