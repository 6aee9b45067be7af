"""The running aggregates stay exactly what the jobs' rows add up to, whatever writes them
(the lifecycle's upserts, setJob, deletes, purges) and however much of the log is folded."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from taskjobs.api.job import setJob
from taskjobs.model import CELERY_LOST, ERROR, FINISHED, PENDING, RUNNING
from taskjobs.report import build_report
from taskjobs.store import Store, dialects, histogram, stats
from taskjobs.store.tables import STAT_FIGURES, jobs, stat_log
from taskjobs.web.metrics import BUCKETS
from tests.waiting import wait_for
from tests.writes import transition

pytestmark = pytest.mark.usefixtures("store")

MOMENT = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
NAMES = ["a", "b", None]
WORKERS = ["celery@w1", "celery@w2", None]
EXCEPTIONS = ["ValueError", "KeyError", None]


def expected(store: Store) -> dict[stats.Key, tuple[int, float]]:
    """The aggregates the stored jobs add up to, computed from their rows."""
    with store.engine.connect() as connection:
        rows = [dict(row) for row in connection.execute(sa.select(jobs)).mappings()]
    # Each job as if just inserted: a change with nothing before it.
    changes = [
        {"old_status": None, **{f"new_{figure}": row[figure] for figure in STAT_FIGURES},
         "new_celery_state": row["celery_state"] if row["status"] == ERROR else None}
        for row in rows
    ]  # fmt: skip
    return _nonzero(stats.add_up(changes))


def kept(store: Store) -> dict[stats.Key, tuple[int, float]]:
    """The aggregates as a reader finds them: the folded sums plus the changes not folded."""
    with store.engine.connect() as connection:
        folded = {
            (row.width, row.bucket_start, row.kind, row.name, row.label): [row.jobs, row.total]
            for row in connection.execute(sa.select(stats.stats))
        }
        for key, (count, total) in stats.backlog(connection).sums.items():
            entry = folded.setdefault(key, [0, 0.0])
            entry[0] += count
            entry[1] += total
    return _nonzero(folded)


def _nonzero(sums: Mapping[stats.Key, list[Any]]) -> dict[stats.Key, tuple[int, float]]:
    return {
        key: (count, round(total, 6))
        for key, (count, total) in sums.items()
        if count or abs(total) > 1e-9
    }


def unfolded(store: Store) -> int:
    with store.engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).select_from(stat_log)))


def random_values(rng: random.Random, status: str) -> dict[str, Any]:
    created = MOMENT + timedelta(minutes=rng.randrange(0, 180), seconds=rng.random() * 60)
    values: dict[str, Any] = {"name": rng.choice(NAMES), "worker": rng.choice(WORKERS)}
    if status in (RUNNING, FINISHED, ERROR):
        values["started_at"] = created + timedelta(seconds=rng.random() * 30)
    if status in (FINISHED, ERROR):
        values["finished_at"] = values["started_at"] + timedelta(seconds=rng.random() * 5)
        values["runtime"] = rng.choice([rng.random() * 5, None])
    if status == ERROR:
        values["exc_type"] = rng.choice(EXCEPTIONS)
        values["celery_state"] = rng.choice(["FAILURE", CELERY_LOST, "REVOKED"])
    if rng.random() < 0.2:
        values["eta"] = created + timedelta(seconds=rng.random() * 20)
    values["retries"] = rng.randrange(0, 3)
    return {"created": created, "values": values}


def operations(rng: random.Random, store: Store, count: int) -> Iterator[str]:
    """``count`` random writes of every kind a store sees, each named as it is made."""
    ids: list[str] = []
    for step in range(count):
        choice = rng.random()
        if choice < 0.45 or not ids:
            job_id = f"job-{step}"
            status = rng.choice([PENDING, RUNNING, FINISHED, ERROR])
            made = random_values(rng, status)
            transition(job_id, status, made["values"], at=made["created"], seq=1)
            ids.append(job_id)
            yield f"insert {job_id} {status}"
        elif choice < 0.75:
            job_id = rng.choice(ids)
            status = rng.choice([RUNNING, FINISHED, ERROR, PENDING])
            made = random_values(rng, status)
            # A later order key applies; an earlier one is refused by the guard.
            transition(job_id, status, made["values"], at=made["created"], seq=rng.randrange(2, 9))
            yield f"update {job_id} {status}"
        elif choice < 0.82:
            job_id = rng.choice(ids)
            setJob(job_id, {"user": "someone"}, rng.choice([FINISHED, ERROR, "idle"]))
            yield f"setJob {job_id}"
        elif choice < 0.9:
            job_id = ids.pop(rng.randrange(len(ids)))
            store.delete(job_id)
            yield f"delete {job_id}"
        elif choice < 0.95:
            before = MOMENT + timedelta(minutes=rng.randrange(0, 180))
            store.purge(statuses=[FINISHED], before=before, batch_size=3, max_batches=1)
            yield "purge"
        else:
            store.fold_stats(limit=rng.randrange(1, 40))
            yield "fold"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_aggregates_are_what_the_rows_add_up_to_after_any_writes(
    store: Store, seed: int
) -> None:
    rng = random.Random(seed)
    done = []
    for operation in operations(rng, store, 150):
        done.append(operation)
        if len(done) % 25 == 0:
            assert kept(store) == expected(store), done[-25:]
    assert kept(store) == expected(store)
    store.fold_stats()
    assert unfolded(store) == 0
    assert kept(store) == expected(store)


def test_folding_twice_at_once_counts_each_change_once(store: Store) -> None:
    """Two processes' heartbeats may fold together: one does, the other finds it done."""
    for i in range(300):
        transition(f"j{i}", FINISHED, {"name": "t", "runtime": 0.5, "started_at": MOMENT},
                   at=MOMENT, seq=1)  # fmt: skip
    for _ in range(20):
        folders = [threading.Thread(target=store.fold_stats, kwargs={"limit": 7}) for _ in range(3)]
        for folder in folders:
            folder.start()
        for folder in folders:
            folder.join()
        assert kept(store) == expected(store)
    store.fold_stats()
    assert unfolded(store) == 0 and kept(store) == expected(store)


def _folding(store: Store) -> bool:
    """Whether a MySQL/MariaDB session is in one of a fold's writes (which take milliseconds,
    unless they wait for another transaction's locks)."""
    query = sa.text(
        "SELECT COUNT(*) FROM information_schema.processlist "
        "WHERE info LIKE :deleting OR info LIKE :adding"
    )
    writes = {
        "deleting": f"DELETE FROM {stat_log.name}%",
        "adding": "INSERT INTO taskjobs_stats%",
    }
    with store.engine.connect() as connection:
        return bool(connection.scalar(query, writes))


def test_a_fold_that_meets_one_not_yet_committed_counts_nothing_twice(store: Store) -> None:
    """MySQL releases the fold's lock before its commit: the next fold may read the changes
    the first deleted and wait on them; it must then count none of them."""
    for i in range(30):
        transition(f"j{i}", FINISHED, {"name": "t", "runtime": 0.5, "started_at": MOMENT},
                   at=MOMENT, seq=1)  # fmt: skip
    dialect = store.engine.dialect.name
    with store.engine.connect() as first:
        first.begin()
        assert stats.fold(first) == 30
        moved: list[int] = []
        second = threading.Thread(target=lambda: moved.append(store.fold_stats()))
        second.start()
        if dialect == "postgresql":  # the first still holds the lock: the second gives up
            second.join(timeout=30)
        elif dialect != "sqlite":  # (SQLite's second waits to begin until the first commits)
            wait_for(lambda: _folding(store), what="the second fold to wait for the first")
        first.commit()
    second.join(timeout=30)
    assert not second.is_alive()
    assert moved == [0]  # it gave up, rolled back, or found nothing left: it moved nothing
    assert unfolded(store) == 0 and kept(store) == expected(store)


def test_a_report_reads_the_same_before_and_after_a_fold(store: Store) -> None:
    for i in range(40):
        status = [FINISHED, ERROR, RUNNING, PENDING][i % 4]
        made = random_values(random.Random(i), status)
        transition(f"r{i}", status, made["values"], at=made["created"], seq=1)
    window = {"since": MOMENT, "until": MOMENT + timedelta(hours=4)}
    before = build_report(**window)
    assert unfolded(store) > 0
    store.fold_stats()
    assert unfolded(store) == 0
    after = build_report(**window)
    assert dataclass_figures(before) == dataclass_figures(after)
    assert sum(before.totals.values()) == 40


def test_the_metrics_read_the_same_unfolded_half_folded_and_folded(store: Store) -> None:
    """The folded sums and the changes not yet folded add up, counts and totals alike."""
    for i in range(40):
        status = [FINISHED, ERROR, RUNNING, FINISHED][i % 4]
        made = random_values(random.Random(i), status)
        transition(f"m{i}", status, made["values"], at=made["created"], seq=1)

    def read() -> dict[str, Any]:
        """The figures in one order, sums rounded (they are added up in another order)."""
        rows = store.metrics_rows(now=MOMENT + timedelta(hours=4), since=MOMENT, buckets=BUCKETS)
        return {
            key: sorted(tuple(round(v, 9) if isinstance(v, float) else v for v in row)
                        for row in value)
            for key, value in rows.items()
            if key != "unfolded"
        }  # fmt: skip

    unfolded_figures = read()
    store.fold_stats(limit=len(kept_changes(store)) // 2)
    assert unfolded(store) > 0
    half_folded = read()
    store.fold_stats()
    assert unfolded_figures == half_folded == read()
    # Each task's run time sum, the last of its runtime figures before the waits'.
    runtime_sums = [row[len(BUCKETS) + 2] for row in unfolded_figures["histograms"]]
    assert sum(runtime_sums) > 0


def kept_changes(store: Store) -> list[int]:
    with store.engine.connect() as connection:
        return list(connection.scalars(sa.select(stat_log.c.id)))


def test_once_every_job_is_deleted_and_folded_no_aggregate_row_is_left(store: Store) -> None:
    for i in range(30):
        status = [FINISHED, ERROR, RUNNING][i % 3]
        made = random_values(random.Random(i), status)
        transition(f"d{i}", status, made["values"], at=made["created"], seq=1)
    store.fold_stats()
    assert kept(store)
    for i in range(30):
        store.delete(f"d{i}")
    store.fold_stats()
    with store.engine.connect() as connection:
        left = connection.scalar(sa.select(sa.func.count()).select_from(stats.stats))
    assert left == 0


def dataclass_figures(report: Any) -> Any:
    """The report's figures that describe the window (not the age of what waits now)."""
    return (report.totals, report.tasks, report.workers, report.exceptions, report.timeline)


def test_an_update_that_changes_no_figure_logs_nothing(store: Store) -> None:
    """A progress note or a message changes no figure: the log stays as it was."""
    transition("j", RUNNING, {"name": "t", "started_at": MOMENT}, at=MOMENT, seq=1)
    store.fold_stats()
    store.append_message("j", "step 1\n", MOMENT + timedelta(seconds=1))
    transition("j", RUNNING, {"name": "t"}, at=MOMENT + timedelta(seconds=2), message="x\n",
               seq=1)  # fmt: skip
    assert unfolded(store) == 0


def test_a_fold_on_another_database_of_the_server_does_not_hold_this_one_back(
    store: Store, db_kind: str, fresh_url: str
) -> None:
    """Two stores on one server fold each in turn: the fold's lock is the database's, also on
    MySQL, whose named locks are the server's."""
    if db_kind == "sqlite":
        pytest.skip("a SQLite file is a database and its server at once")
    other = Store(fresh_url)
    other.upgrade()
    transition("j", FINISHED, {"name": "t"}, at=MOMENT, seq=1)
    try:
        with (
            other.engine.begin() as connection,
            dialects.try_lock(connection, key=stats.FOLD_LOCK, name=stats.FOLD_LOCK_NAME) as held,
        ):
            assert held, "this test is the other store's fold"
            assert store.fold_stats() == 1
            with (
                store.engine.begin() as mine,
                dialects.try_lock(mine, key=stats.FOLD_LOCK, name=stats.FOLD_LOCK_NAME) as taken,
            ):
                assert taken, "this store's lock is its own"
                with (
                    other.engine.begin() as again,
                    dialects.try_lock(
                        again, key=stats.FOLD_LOCK, name=stats.FOLD_LOCK_NAME
                    ) as twice,
                ):
                    assert not twice, "one fold at a time in one database"
    finally:
        other.dispose()
    assert unfolded(store) == 0


def test_a_read_that_meets_a_long_log_folds_it(store: Store, monkeypatch: Any) -> None:
    monkeypatch.setattr("taskjobs.store.store.FOLD_ON_READ", 5)
    for i in range(10):
        transition(f"j{i}", FINISHED, {"name": "t"}, at=MOMENT, seq=1)
    assert unfolded(store) == 10
    report = build_report(since=MOMENT, until=MOMENT + timedelta(minutes=1))
    assert report.totals[FINISHED] == 10
    assert unfolded(store) == 0


def test_a_duration_counts_in_the_bin_of_the_next_bound_less_than_ten_percent_above() -> None:
    assert [histogram.bin_label(v) for v in (0.1234, 5.0, 0.3, 99.5, 101, 3600, 1e-7)] == [
        "0.1264", "5", "0.3", "100", "105", "3600", "0.0001"
    ]  # fmt: skip
    assert histogram.bin_label(0) == histogram.bin_label(-2.5) == "0"
    assert histogram.bin_label(2e7) == "20000000"  # past the last bound: whole seconds
    bounds = histogram.EDGES
    assert all(upper / lower < 1.1 for lower, upper in itertools.pairwise(bounds))
    # The metrics' bucket bounds are bin bounds: their counts are exact.
    assert set(BUCKETS) <= set(bounds)
    rng = random.Random(3)
    for value in (10 ** rng.uniform(-4, 7) for _ in range(1000)):
        assert value <= histogram.bin_bound(histogram.bin_label(value)) < value * 1.1


def test_a_window_is_covered_by_whole_four_hours_then_hours_ten_minutes_and_minutes() -> None:
    since = datetime(2026, 12, 3, 7, 31, 27, tzinfo=timezone.utc)
    ranges = stats.cover(since, since + timedelta(hours=24))
    at = datetime(2026, 12, 3, 0, 0, tzinfo=timezone.utc)
    assert sorted(ranges) == sorted([
        (14400, at + timedelta(hours=8), at + timedelta(hours=28)),
        (3600, at + timedelta(hours=28), at + timedelta(hours=31)),
        (600, at + timedelta(hours=7, minutes=40), at + timedelta(hours=8)),
        (600, at + timedelta(hours=31), at + timedelta(hours=31, minutes=30)),
        (60, at + timedelta(hours=7, minutes=31), at + timedelta(hours=7, minutes=40)),
        (60, at + timedelta(hours=31, minutes=30), at + timedelta(hours=31, minutes=32)),
    ])  # fmt: skip
    # Every minute of the window is in exactly one range.
    minutes = [
        start + timedelta(minutes=m)
        for width, start, end in ranges
        for m in range(0, int((end - start).total_seconds() // 60))
    ]
    assert len(minutes) == len(set(minutes)) == 24 * 60 + 1


def test_metrics_buckets_that_are_not_bin_bounds_are_refused(store: Store) -> None:
    now = MOMENT + timedelta(hours=1)
    with pytest.raises(ValueError, match=r"\[0\.07\] are not bounds"):
        store.metrics_rows(now=now, since=MOMENT, buckets=(0.05, 0.07, 1.0))
    assert store.metrics_rows(now=now, since=MOMENT, buckets=(0.05, 0.3, 1.0))["histograms"] == []


def test_a_fold_deletes_the_changes_it_moved_in_chunks_every_one(
    store: Store, monkeypatch: Any
) -> None:
    """On MySQL, whose DELETE cannot return its rows; elsewhere one DELETE takes them all."""
    monkeypatch.setattr(stats, "_DELETE_CHUNK", 3)
    for i in range(10):
        transition(f"c{i}", FINISHED, {"name": "t"}, at=MOMENT, seq=1)
    assert store.fold_stats() == 10
    assert unfolded(store) == 0 and kept(store) == expected(store)
