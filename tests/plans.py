"""Query plans of the statements a read runs: a test that a read of a big table is served by
the index meant for it (what keeps the report and the metrics cheap at millions of jobs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from taskjobs.store import Store


def plans_of(store: Store, read: Callable[[], object], marker: str) -> list[str]:
    """Run ``read``; explain each statement it ran on ``store`` whose SQL contains ``marker``,
    with the parameters it ran with. On PostgreSQL with sequential scans off: with a test's
    few rows any index beats reading the table, and which index is the question."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if marker in statement:
            seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        read()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    sqlite = store.engine.dialect.name == "sqlite"
    plans = []
    with store.engine.begin() as connection:
        if not sqlite:
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        for statement, parameters in seen:
            explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            rows = connection.exec_driver_sql(explain + statement, parameters)
            plans.append("\n".join(" ".join(map(str, row)) for row in rows))
    return plans


def analyze(store: Store) -> None:
    """Refresh the planner's statistics (and, on PostgreSQL, the visibility map that makes an
    index-only scan cheap), as autovacuum or a nightly ANALYZE would."""
    sql = "ANALYZE" if store.engine.dialect.name == "sqlite" else "VACUUM ANALYZE taskjobs_jobs"
    with store.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(sql)
