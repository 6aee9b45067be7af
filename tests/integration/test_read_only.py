"""Readers on a database user that may only read (a replica's, or a reporting role): the
report, the metrics and the pages answer from it, with the changes no fold has moved added
up; the fold such a read would start is left to the writers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from taskjobs.model import FINISHED
from taskjobs.report import build_report
from taskjobs.store import Store
from taskjobs.store.tables import (
    JOBS_TABLE,
    STAT_LOG_TABLE,
    STATS_TABLE,
    TRANSITIONS_TABLE,
    VERSION_TABLE,
    WORKERS_TABLE,
    stat_log,
)
from taskjobs.web import create_app
from tests.writes import transition

# SQLite has no users: a reader there is any process that can open the file.
pytestmark = pytest.mark.parametrize("db_kind", ["postgresql", "mariadb"], indirect=True)

MOMENT = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
TABLES = (JOBS_TABLE, TRANSITIONS_TABLE, WORKERS_TABLE, STAT_LOG_TABLE, STATS_TABLE,
          VERSION_TABLE)  # fmt: skip


@pytest.fixture
def reader(store: Store, db_kind: str) -> Iterator[Store]:
    """A store on the same database through a user granted SELECT only."""
    user, password = f"reader_{uuid.uuid4().hex[:8]}", "reader-password"
    database = store.url.database
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
        if db_kind == "postgresql":
            admin.exec_driver_sql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
            admin.exec_driver_sql(f"GRANT SELECT ON {', '.join(TABLES)} TO {user}")
        else:
            admin.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"))
            admin.execute(sa.text(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'"))
            for table in TABLES:
                for host in ("%", "localhost"):
                    admin.execute(
                        sa.text(f"GRANT SELECT ON {database}.{table} TO '{user}'@'{host}'")
                    )
    read_only = Store(store.url.set(username=user, password=password))
    try:
        yield read_only
    finally:
        read_only.dispose()
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
            if db_kind == "postgresql":
                admin.exec_driver_sql(f"REVOKE ALL ON {', '.join(TABLES)} FROM {user}")
                admin.exec_driver_sql(f"DROP ROLE {user}")
            else:
                for host in ("%", "localhost"):
                    admin.execute(sa.text(f"DROP USER '{user}'@'{host}'"))


def unfolded(store: Store) -> int:
    with store.engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).select_from(stat_log)))


def test_a_read_only_user_reads_the_report_and_leaves_the_fold_to_writers(
    store: Store, reader: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskjobs.store.store.FOLD_ON_READ", 1)
    for i in range(5):
        transition(f"j{i}", FINISHED, {"name": "t", "runtime": 2.0}, at=MOMENT, seq=1)
    with pytest.raises(Exception, match="denied"), reader.engine.begin() as connection:
        connection.execute(sa.delete(stat_log))
    report = build_report(since=MOMENT, until=MOMENT + timedelta(minutes=1), store=reader)
    assert report.totals[FINISHED] == 5 and report.tasks[0].runtime_p50 == 2.0
    assert unfolded(store) == 5  # its fold was refused, and nothing else changed
    store.fold_stats()
    again = build_report(since=MOMENT, until=MOMENT + timedelta(minutes=1), store=reader)
    assert (again.totals, again.tasks) == (report.totals, report.tasks)


def test_the_web_app_serves_every_figure_from_a_read_only_user(store: Store, reader: Store) -> None:
    transition("j", FINISHED, {"name": "t", "runtime": 2.0}, at=MOMENT, seq=1)
    client = TestClient(create_app(reader))
    for path in ("/", "/jobs", "/jobs/j", "/workers", "/metrics", "/healthz", "/api/tasks",
                 "/api/v1/report"):  # fmt: skip
        assert client.get(path).status_code == 200, path
    assert 'taskjobs_jobs{name="t",state="finished"} 1.0' in client.get("/metrics").text
