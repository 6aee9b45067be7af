"""Migration 0011 moves the aggregates' change log to a table of its own and adds the four-hour
buckets while workers of the release before it still write jobs and fold: no change is lost or
counted twice, and the old release's fold finds nothing left to fold."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from alembic import command

from taskjobs.model import CELERY_LOST, ERROR, FINISHED, PENDING, RUNNING
from taskjobs.store import Store, stats
from taskjobs.store.schema import alembic_config, head_revision
from taskjobs.store.tables import jobs, stat_changes, stat_log
from tests.integration.test_stats import expected, kept

# Jobs are created over four hours from 10:00: across the four-hour buckets of 8:00 and 12:00.
MOMENT = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)


def job_values(rng: random.Random, status: str) -> dict[str, Any]:
    created = MOMENT + timedelta(minutes=rng.randrange(0, 240), seconds=rng.random() * 60)
    values: dict[str, Any] = {
        "name": rng.choice(["a", "b", None]),
        "status": status,
        "worker": rng.choice(["celery@w1", None]),
        "retries": rng.randrange(0, 3),
        "created_at": created,
        "updated_at": created,
        "eta": created + timedelta(seconds=5) if rng.random() < 0.2 else None,
    }
    if status != PENDING:
        values["started_at"] = created + timedelta(seconds=rng.random() * 30)
    if status in (FINISHED, ERROR):
        values["finished_at"] = values["started_at"] + timedelta(seconds=rng.random() * 5)
        # In eighths of a second: kept exactly by the run time's type on MySQL before 0012
        # (single precision, read back rounded to six digits), which this store passes through
        # on its way up.
        values["runtime"] = rng.randrange(0, 40) / 8
    if status == ERROR:
        values["exc_type"] = rng.choice(["ValueError", None])
        values["celery_state"] = rng.choice(["FAILURE", CELERY_LOST])
    return values


def write(connection: sa.Connection, rng: random.Random, step: int, ids: list[str]) -> None:
    """One write as a worker of either release makes it, straight to the jobs' table: an
    insert, a change of state, or a delete."""
    choice = rng.random()
    if choice < 0.5 or not ids:
        ids.append(f"job-{step}")
        connection.execute(sa.insert(jobs), {"id": ids[-1], **job_values(rng, PENDING)})
    elif choice < 0.9:
        status = rng.choice([RUNNING, FINISHED, ERROR])
        values = job_values(rng, status)
        connection.execute(sa.update(jobs).where(jobs.c.id == rng.choice(ids)), values)
    else:
        connection.execute(sa.delete(jobs).where(jobs.c.id == ids.pop(rng.randrange(len(ids)))))


def fold_as_the_release_before(connection: sa.Connection) -> int:
    """What a fold of the release before 0011 did: the old log's rows (each one side of a
    change) added into buckets of an hour, ten minutes and a minute, then deleted."""
    changes = list(connection.execute(sa.select(stat_changes)).mappings())
    sums: dict[stats.Key, list[Any]] = defaultdict(lambda: [0, 0.0])
    for row in connection.execute(sa.select(stats.stats)):
        sums[(row.width, row.bucket_start, row.kind, row.name, row.label)] = [row.jobs, row.total]
    for change in changes:
        for key, count, total in stats.expand(change):
            if key[0] != 14400:
                sums[key][0] += count
                sums[key][1] += total
    rows = [
        {"width": w, "bucket_start": b, "kind": k, "name": n, "label": label, "jobs": count,
         "total": total}
        for (w, b, k, n, label), (count, total) in sums.items()
        if count
    ]  # fmt: skip
    connection.execute(sa.delete(stats.stats))
    if rows:
        connection.execute(sa.insert(stats.stats), rows)
    connection.execute(sa.delete(stat_changes))
    return len(changes)


def folded(store: Store) -> dict[stats.Key, tuple[int, float]]:
    """The aggregates' rows as they are, with nothing of a log added."""
    with store.engine.connect() as connection:
        return {
            (row.width, row.bucket_start, row.kind, row.name, row.label): (
                row.jobs, round(row.total, 6)
            )
            for row in connection.execute(sa.select(stats.stats))
        }  # fmt: skip


def test_the_move_to_the_new_log_loses_and_repeats_no_change_written_around_it(
    fresh_url: str,
) -> None:
    store = Store(fresh_url)  # its engine only, until the upgrade below
    with store.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0010")
    rng = random.Random(11)
    ids: list[str] = []
    with store.engine.begin() as connection:
        for step in range(60):
            write(connection, rng, step, ids)
    with store.engine.begin() as connection:
        assert fold_as_the_release_before(connection) > 60
    with store.engine.begin() as connection:  # logged, not folded yet
        for step in range(60, 100):
            write(connection, rng, step, ids)

    # A worker of the release before goes on writing while the store is upgraded.
    upgraded = threading.Event()
    written = {"during": 0, "after": 0}

    def keep_writing() -> None:
        writer_rng, step, after = random.Random(12), 1000, 0
        while after < 10:
            with store.engine.begin() as connection:
                write(connection, writer_rng, step, ids)
            step += 1
            if upgraded.is_set():
                after += 1
            else:
                written["during"] += 1
        written["after"] = after

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        assert store.upgrade() == ("0010", head_revision())
    finally:
        upgraded.set()
        writer.join(timeout=60)
    assert written["after"] == 10

    with store.engine.begin() as connection:
        assert fold_as_the_release_before(connection) == 0  # the old log is left empty
    assert kept(store) == expected(store)  # the folded sums and the new log, every width
    store.fold_stats()
    assert kept(store) == expected(store)
    with store.engine.connect() as connection:
        widths = set(connection.scalars(sa.select(stats.stats.c.width).distinct()))
    assert widths == {0, 60, 600, 3600, 14400}
    store.dispose()


def test_a_change_of_a_job_is_one_row_of_the_new_log(store: Store) -> None:
    rng = random.Random(5)
    with store.engine.begin() as connection:
        connection.execute(sa.insert(jobs), {"id": "one", **job_values(rng, PENDING)})
        connection.execute(
            sa.update(jobs).where(jobs.c.id == "one"), job_values(rng, FINISHED)
        )  # fmt: skip
        connection.execute(sa.update(jobs).where(jobs.c.id == "one"), {"user": "not a figure"})
        connection.execute(sa.delete(jobs).where(jobs.c.id == "one"))
    with store.engine.connect() as connection:
        logged = list(connection.execute(sa.select(stat_log).order_by(stat_log.c.id)).mappings())
    assert [(row["old_status"], row["new_status"]) for row in logged] == [
        (None, PENDING), (PENDING, FINISHED), (FINISHED, None)
    ]  # fmt: skip
    assert kept(store) == expected(store) == {}


def test_a_downgrade_hands_the_changes_not_folded_back_to_the_old_log(fresh_url: str) -> None:
    store = Store(fresh_url)
    store.upgrade()
    rng = random.Random(21)
    ids: list[str] = []
    with store.engine.begin() as connection:
        for step in range(40):
            write(connection, rng, step, ids)
    store.fold_stats(limit=15)
    with store.engine.begin() as connection:
        for step in range(40, 60):
            write(connection, rng, step, ids)
    with store.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0010")
        for step in range(60, 80):  # logged by the triggers of 0007 again
            write(connection, rng, step, ids)
    with store.engine.begin() as connection:
        assert fold_as_the_release_before(connection) > 20
        assert not sa.inspect(connection).has_table(stat_log.name)
    assert folded(store) == {key: sums for key, sums in expected(store).items() if key[0] != 14400}
    store.dispose()
