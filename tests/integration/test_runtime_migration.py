"""Migration 0012: a job's run time keeps double precision on every database (MySQL and
MariaDB stored it as a single-precision FLOAT before)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command

from taskjobs.store import Store
from taskjobs.store.schema import alembic_config, head_revision
from taskjobs.store.tables import jobs, stat_log

AT = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
# A day-long run, to the microsecond: about eleven significant digits, where a single-precision
# number keeps about seven (it reads back as 86399.125).
DAY_LONG = 86399.123456


def finished(job_id: str) -> dict[str, object]:
    return {
        "id": job_id, "name": "tasks.long", "status": "finished", "created_at": AT,
        "updated_at": AT + timedelta(days=1), "started_at": AT,
        "finished_at": AT + timedelta(seconds=DAY_LONG), "runtime": DAY_LONG,
    }  # fmt: skip


def runtimes(store: Store) -> dict[str, float]:
    with store.engine.connect() as connection:
        return {
            job_id: runtime
            for job_id, runtime in connection.execute(sa.select(jobs.c.id, jobs.c.runtime))
        }


def test_a_run_time_written_after_the_upgrade_reads_back_exactly(fresh_url: str) -> None:
    store = Store(fresh_url)  # its engine only, until the upgrade below
    with store.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0011")
        connection.execute(sa.insert(jobs), finished("before"))
    before = runtimes(store)["before"]
    assert store.upgrade() == ("0011", head_revision())

    with store.engine.begin() as connection:
        connection.execute(sa.insert(jobs), finished("after"))
    kept = runtimes(store)
    assert kept["after"] == DAY_LONG
    # What was stored before loses nothing (MySQL read its FLOAT rounded to six digits, 86399.1;
    # as a DOUBLE the same value reads 86399.125).
    assert abs(kept["before"] - DAY_LONG) <= abs(before - DAY_LONG)
    with store.engine.connect() as connection:  # the change log the aggregates fold from
        logged = connection.scalars(sa.select(stat_log.c.new_runtime).order_by(stat_log.c.id))
        assert list(logged)[-1] == DAY_LONG
    store.dispose()


def test_a_downgrade_and_an_upgrade_again_keep_the_jobs(fresh_url: str) -> None:
    store = Store(fresh_url)
    store.upgrade()
    with store.engine.begin() as connection:
        connection.execute(sa.insert(jobs), finished("one"))
        command.downgrade(alembic_config(connection), "0011")
    # FLOAT on MySQL again, read rounded to six digits.
    assert runtimes(store)["one"] == pytest.approx(DAY_LONG, abs=0.1)
    assert store.upgrade() == ("0011", head_revision())
    with store.engine.begin() as connection:
        connection.execute(sa.insert(jobs), finished("two"))
    assert runtimes(store)["two"] == DAY_LONG
    store.dispose()
