"""The status report against seeded jobs with known timings: exact counts and percentiles."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from taskjobs.model import PENDING, RUNNING, utcnow
from taskjobs.report import SLOW_LIMIT, Bucket, build_report
from taskjobs.store import Store, histogram
from taskjobs.store.tables import jobs
from tests.plans import analyze, plans_of
from tests.writes import transition

pytestmark = pytest.mark.usefixtures("store")


def seed(now: datetime) -> datetime:
    """Jobs with known times; returns the start of the window that holds them."""
    since = now - timedelta(hours=3)
    base = since + timedelta(minutes=1)
    for i in range(1, 11):  # task a: runtimes 1..10 s, queue waits 1..10 s, on w1
        created = base + timedelta(minutes=i)
        started = created + timedelta(seconds=i)
        transition(
            f"a{i}",
            "finished",
            {
                "name": "a",
                "worker": "w1",
                "started_at": started,
                "finished_at": started + timedelta(seconds=i),
                "runtime": float(i),
            },
            at=created,
        )
    for i, exc in enumerate(["ValueError", "ValueError"]):
        transition(
            f"a-err{i}",
            "error",
            {"name": "a", "worker": "w1", "exc_type": exc},
            at=base + timedelta(minutes=20 + i),
        )
    for i, exc in enumerate(["KeyError", "KeyError", "ValueError"]):
        transition(
            f"b-err{i}",
            "error",
            {"name": "b", "worker": "w2", "exc_type": exc},
            at=base + timedelta(minutes=30 + i),
        )
    transition(
        "slow",
        "running",
        {"name": "b", "worker": "w1", "started_at": now - timedelta(hours=1)},
        at=now - timedelta(hours=1, minutes=1),
    )
    transition("waiting", "pending", {"name": "c"}, at=now - timedelta(hours=2))
    transition(
        "too-old",
        "finished",
        {"name": "a", "worker": "w1", "runtime": 99.0},
        at=since - timedelta(minutes=1),
    )
    return since


def test_report_figures_are_exact(store: Store, db_kind: str) -> None:
    now = utcnow()
    since = seed(now)
    store.heartbeat("w1", hostname="h", pid=1, at=now - timedelta(seconds=5))
    report = build_report(since=since, until=now, slow_after=timedelta(minutes=30))

    assert report.totals == {"idle": 0, "pending": 1, "running": 1, "finished": 10, "error": 5}
    tasks = {task.name: task for task in report.tasks}
    assert sorted(tasks) == ["a", "b", "c"]
    a = tasks["a"]
    assert a.counts == {"idle": 0, "pending": 0, "running": 0, "finished": 10, "error": 2}
    assert a.failure_rate == pytest.approx(2 / 12)
    # Nearest rank: p50 of ten values is the 5th, p95 the 10th.
    assert (a.runtime_p50, a.runtime_p95, a.runtime_max) == (5.0, 10.0, 10.0)
    # Waits are the stored times' differences, exact to the microsecond on every database.
    assert (a.wait_p50, a.wait_p95) == (5.0, 10.0)
    # The window is taken to whole minutes, the start down and the end up.
    assert report.since <= since < report.since + timedelta(minutes=1)
    assert report.until - timedelta(minutes=1) < now <= report.until
    assert report.since.second == report.until.second == 0
    minutes = (report.until - report.since).total_seconds() / 60
    assert a.throughput_per_minute == pytest.approx(10 / minutes)
    assert tasks["b"].failure_rate == 1.0 and tasks["b"].runtime_p50 is None
    assert tasks["c"].failure_rate is None

    workers = {w.worker: w for w in report.workers}
    assert (workers["w1"].running, workers["w1"].processed, workers["w1"].failed) == (1, 12, 2)
    assert (workers["w2"].running, workers["w2"].processed, workers["w2"].failed) == (0, 3, 3)
    # "Last seen" is the worker's last heartbeat; w2 never sent one.
    assert workers["w1"].last_seen == now - timedelta(seconds=5)
    assert workers["w2"].last_seen is None

    assert report.oldest_pending_age == pytest.approx(7200, abs=30)
    assert [job.id for job in report.long_running] == ["slow"]
    assert report.exceptions == [("ValueError", 3), ("KeyError", 2)]


def test_report_on_an_empty_store(store: Store) -> None:
    report = build_report()
    assert report.totals == dict.fromkeys(["idle", "pending", "running", "finished", "error"], 0)
    assert report.tasks == [] and report.workers == [] and report.exceptions == []
    assert report.oldest_pending_age is None and report.long_running == []


def test_report_as_json_data() -> None:
    now = utcnow()
    since = seed(now)
    data = build_report(since=since, until=now).as_dict()
    assert data["since"] == since.replace(second=0, microsecond=0).isoformat()
    assert data["tasks"][0]["name"] == "a" and data["tasks"][0]["runtime_p95"] == 10.0
    assert isinstance(data["long_running"], list)


def test_percentiles_with_one_and_two_values() -> None:
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    transition("one", "finished", {"name": "solo", "runtime": 3.0}, at=moment)
    transition("t1", "finished", {"name": "pair", "runtime": 1.0}, at=moment)
    transition("t2", "finished", {"name": "pair", "runtime": 2.0}, at=moment)
    report = build_report(since=moment, until=moment + timedelta(hours=1))
    tasks = {task.name: task for task in report.tasks}
    # Round values are bin bounds: exact.
    assert (tasks["solo"].runtime_p50, tasks["solo"].runtime_p95) == (3.0, 3.0)
    assert (tasks["pair"].runtime_p50, tasks["pair"].runtime_p95) == (1.0, 2.0)


def test_figures_of_tasks_and_workers_with_nothing_of_a_kind() -> None:
    """A task without errors fails at rate 0; one without successes has no throughput; a
    worker without errors failed none; a job without a name counts under ""."""
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    transition("ok", "finished", {"name": "fine", "worker": "w-ok", "runtime": 1.0}, at=moment)
    transition("bad", "error", {"name": "broken", "worker": "w-bad", "exc_type": "KeyError"},
               at=moment)  # fmt: skip
    transition("bad2", "error", {"name": "broken", "exc_type": "IndexError"}, at=moment)
    transition("nameless", "pending", {}, at=moment)
    until = moment + timedelta(minutes=10)
    # Outside the window (created at its end, or before it): none of its figures count them.
    later = {"name": "fine", "worker": "w-ok", "runtime": 9.0, "exc_type": "OSError",
             "started_at": until + timedelta(minutes=5)}  # fmt: skip
    transition("at-end", "error", later, at=until)
    transition("before", "error", {**later, "started_at": moment}, at=moment - timedelta(hours=1))
    report = build_report(since=moment, until=until, slow_after=timedelta(minutes=3))
    assert (report.since, report.until, report.slow_after) == (moment, until, 180.0)
    tasks = {task.name: task for task in report.tasks}
    assert sorted(tasks) == ["", "broken", "fine"]
    assert (tasks["fine"].failure_rate, tasks["fine"].throughput_per_minute) == (0.0, 0.1)
    assert (tasks["broken"].failure_rate, tasks["broken"].throughput_per_minute) == (1.0, 0.0)
    assert tasks[""].counts["pending"] == 1 and report.totals["pending"] == 1
    workers = {w.worker: w for w in report.workers}
    assert (workers["w-ok"].processed, workers["w-ok"].failed) == (1, 0)
    assert workers["w-ok"].last_seen is None  # it sent no heartbeat
    assert (tasks["fine"].runtime_max, tasks["fine"].wait_p95) == (1.0, None)
    assert (workers["w-bad"].processed, workers["w-bad"].failed) == (1, 1)
    # Equally frequent errors are listed by name.
    assert report.exceptions == [("IndexError", 1), ("KeyError", 1)]


def test_a_window_shorter_than_a_minute_is_the_minute_that_holds_it() -> None:
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for job_id, at in (
        ("ok", moment + timedelta(seconds=20)),
        ("next", moment + timedelta(minutes=1)),
    ):
        transition(job_id, "finished", {"name": "fast", "finished_at": at}, at=at)
    report = build_report(
        since=moment + timedelta(seconds=10), until=moment + timedelta(seconds=10.5)
    )
    assert (report.since, report.until) == (moment, moment + timedelta(minutes=1))
    assert report.tasks[0].counts["finished"] == 1
    assert report.tasks[0].throughput_per_minute == 1.0
    # One minute, one stretch of the timeline: what ended in it.
    assert report.timeline == [Bucket(start=moment, finished=1, failed=0)]


def test_long_running_jobs_are_those_started_before_the_threshold_at_most_twenty() -> None:
    now = utcnow()

    def started(i: int) -> None:
        at = now - timedelta(hours=1, minutes=i)
        transition(f"slow{i:02d}", "running", {"started_at": at}, at=at)

    transition("recent", "running", {"started_at": now - timedelta(minutes=5)}, at=now)
    started(0)
    started(1)
    report = build_report(slow_after=timedelta(minutes=30))
    assert [job.id for job in report.long_running] == ["slow01", "slow00"]
    for i in range(2, SLOW_LIMIT + 3):
        started(i)
    report = build_report(slow_after=timedelta(minutes=30))
    oldest_first = [f"slow{i:02d}" for i in reversed(range(SLOW_LIMIT + 3))][:SLOW_LIMIT]
    assert [job.id for job in report.long_running] == oldest_first


def test_the_default_window_is_the_last_day() -> None:
    now = utcnow()
    transition("hour-ago", "finished", {"name": "t"}, at=now - timedelta(hours=1))
    transition("two-days-ago", "finished", {"name": "t"}, at=now - timedelta(days=2))
    report = build_report()
    # A day, taken to whole minutes: the start down, the end up.
    assert report.since <= now - timedelta(days=1) < report.since + timedelta(minutes=1)
    assert report.until - timedelta(minutes=1) < now <= report.until
    assert report.totals["finished"] == 1


def test_percentiles_are_the_nearest_rank_on_every_database() -> None:
    """101 values, 1 to 101: the nearest rank of p50 is the 51st, of p95 the 96th; each read
    as the bound of its bin (round values such as 2, 5 or 100 are bounds themselves)."""
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(1, 102):
        transition(f"r{i}", "finished", {"name": "many", "runtime": float(i)}, at=moment)
    (task,) = build_report(since=moment, until=moment + timedelta(hours=1)).tasks
    bound = {value: histogram.bin_bound(histogram.bin_label(value)) for value in (51, 96, 101)}
    assert (task.runtime_p50, task.runtime_p95, task.runtime_max) == (bound[51], bound[96],
                                                                     bound[101])  # fmt: skip
    assert 51 < task.runtime_p50 < 51 * 1.1 and 101 < task.runtime_max < 101 * 1.1


def test_percentiles_are_never_below_the_exact_ones_and_less_than_ten_percent_above() -> None:
    """The documented error bound, on values of many digits over six orders of magnitude."""
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rng = random.Random(7)
    values = [10 ** rng.uniform(-3, 3) for _ in range(300)]
    for i, value in enumerate(values):
        transition(f"v{i}", "finished", {"name": "wide", "runtime": value}, at=moment)
    (task,) = build_report(since=moment, until=moment + timedelta(hours=1)).tasks
    ordered = sorted(values)
    exact = {"p50": ordered[149], "p95": ordered[284], "max": ordered[-1]}
    found = {"p50": task.runtime_p50, "p95": task.runtime_p95, "max": task.runtime_max}
    for key, value in exact.items():
        assert value <= found[key] < value * 1.1, key


def test_a_workers_last_seen_is_its_heartbeat_not_its_jobs_changes(store: Store) -> None:
    """A worker whose jobs are all old still beats: the report says when it last did. A job
    changed later (a note added by hand) says nothing about its worker."""
    now = utcnow()
    transition("done", "finished", {"name": "t", "worker": "celery@w"}, at=now - timedelta(hours=2))
    store.heartbeat("celery@w", hostname="h", pid=1, at=now - timedelta(hours=1))
    store.heartbeat("celery@w", hostname="h", pid=1, at=now - timedelta(seconds=3))
    transition("done", "finished", {"messages": "looked at"}, at=now - timedelta(seconds=1))
    store.heartbeat("celery@idle", hostname="h", pid=2, at=now)
    (worker,) = build_report(since=now - timedelta(hours=3), until=now).workers
    # Workers are those that ran the window's jobs or run jobs now; an idle one is not listed.
    assert (worker.worker, worker.last_seen) == ("celery@w", now - timedelta(seconds=3))
    assert worker.processed == 1


@pytest.mark.parametrize("folded", [False, True], ids=["as logged", "folded"])
def test_the_timeline_counts_what_ended_in_each_stretch_of_the_window(
    store: Store, folded: bool
) -> None:
    """Three hours in sixty stretches of three minutes, oldest first: the jobs that ended in
    each, whichever minute of it they ended in; a stretch where none ended counts none. The
    same whether the database or the reader adds the minutes up (folded or not yet)."""
    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ends = {
        "f1": ("finished", timedelta(seconds=30)),
        "f2": ("finished", timedelta(minutes=2)),
        "e1": ("error", timedelta(minutes=3)),
        "e2": ("error", timedelta(minutes=5, seconds=59)),
        "f3": ("finished", timedelta(hours=3) - timedelta(seconds=1)),
    }
    for job_id, (state, end) in ends.items():
        transition(job_id, state, {"name": "t", "finished_at": since + end}, at=since)
    if folded:
        assert store.fold_stats() == len(ends)
    report = build_report(since=since, until=since + timedelta(hours=3))
    empty = [
        Bucket(start=since + timedelta(minutes=3 * i), finished=0, failed=0) for i in range(60)
    ]
    assert report.timeline == [
        Bucket(start=since, finished=2, failed=0),
        Bucket(start=since + timedelta(minutes=3), finished=0, failed=2),
        *empty[2:59],
        Bucket(start=since + timedelta(minutes=177), finished=1, failed=0),
    ]


def test_long_running_jobs_are_listed_by_when_they_started_not_when_they_were_published() -> None:
    """A job published early that waited in the queue started after one published later: the
    one that has run longer comes first."""
    now = utcnow()
    transition("queued-long", "running", {"started_at": now - timedelta(minutes=40)},
               at=now - timedelta(hours=3))  # fmt: skip
    transition("started-first", "running", {"started_at": now - timedelta(hours=1)},
               at=now - timedelta(hours=2))  # fmt: skip
    report = build_report(slow_after=timedelta(minutes=30))
    assert [job.id for job in report.long_running] == ["started-first", "queued-long"]


@pytest.mark.parametrize("folded", [False, True], ids=["logged", "folded"])
def test_a_window_with_ragged_edges_counts_exactly_the_jobs_created_in_it(
    store: Store, folded: bool
) -> None:
    """A window from 7 minutes past an hour to 7 minutes before another is read as hour,
    ten-minute and minute buckets: each range keeps to its own bounds, whatever lies beside."""
    hour = (utcnow() - timedelta(hours=8)).replace(minute=0, second=0, microsecond=0)
    since, until = hour + timedelta(minutes=7), hour + timedelta(hours=4, minutes=53)
    inside = [
        since,
        hour + timedelta(minutes=30),
        hour + timedelta(hours=2),
        hour + timedelta(hours=4, minutes=51),
        until - timedelta(seconds=1),
    ]
    outside = [hour - timedelta(hours=2), since - timedelta(seconds=1),
               hour + timedelta(minutes=6), until, hour + timedelta(hours=4, minutes=55),
               hour + timedelta(hours=5, minutes=30)]  # fmt: skip
    for i, created in enumerate(inside + outside):
        transition(f"job{i}", "finished", {"name": "a", "runtime": 1.0}, at=created)
    if folded:
        store.fold_stats()
    report = build_report(since=since, until=until, store=store)
    assert report.totals["finished"] == len(inside)
    assert [task.counts["finished"] for task in report.tasks] == [len(inside)]


def test_an_error_without_an_exception_is_an_error_of_no_listed_exception(store: Store) -> None:
    now = utcnow()
    transition("bare", "error", {"name": "a"}, at=now - timedelta(minutes=5))
    transition(
        "typed", "error", {"name": "a", "exc_type": "KeyError"}, at=now - timedelta(minutes=5)
    )
    report = build_report(store=store)
    assert report.totals["error"] == 2
    assert report.exceptions == [("KeyError", 1)]


def test_the_running_jobs_are_read_from_their_own_index(store: Store, db_kind: str) -> None:
    if db_kind == "mariadb":
        pytest.skip("MySQL and MariaDB have no partial indexes: theirs indexes every job")
    now = utcnow()
    # Enough running jobs that reading them all (and sorting them) costs more than an index.
    rows = [
        {"id": f"job{i:05d}", "status": RUNNING if i % 4 else "finished", "name": "a",
         "worker": f"w{i % 3}", "created_at": now - timedelta(hours=2),
         "started_at": now - timedelta(hours=1, seconds=i), "updated_at": now}
        for i in range(3000)
    ]  # fmt: skip
    with store.engine.begin() as connection:
        connection.execute(jobs.insert(), rows)
    analyze(store)
    plans = plans_of(store, lambda: build_report(store=store), f"'{RUNNING}'")
    assert len(plans) == 2, "the long-running list and the running jobs per worker"
    for plan in plans:
        assert "ix_taskjobs_jobs_running" in plan, plan


def test_the_oldest_pending_job_per_task_is_read_from_the_pending_jobs_index(
    store: Store, db_kind: str
) -> None:
    now = utcnow()
    # Many pending jobs of a few tasks among finished ones: what a backlog looks like.
    rows = [
        {"id": f"job{i:05d}", "status": PENDING if i % 4 else "finished", "name": f"t{i % 3}",
         "created_at": now - timedelta(minutes=30, seconds=i), "eta": None, "updated_at": now}
        for i in range(3000)
    ]  # fmt: skip
    # The oldest of t2 is not due yet, so it does not wait; the oldest of t1 waits from its ETA.
    rows[2999]["eta"] = now + timedelta(hours=1)
    rows[2998]["eta"] = now - timedelta(minutes=1)
    with store.engine.begin() as connection:
        connection.execute(jobs.insert(), rows)

    def read() -> object:
        return store.metrics_rows(now=now, since=now - timedelta(hours=1), buckets=(1.0,))

    oldest = dict(read()["oldest_pending"])
    assert oldest == {
        "t0": rows[2997]["created_at"],
        "t1": rows[2995]["created_at"],  # job02995 waits longer than job02998 from its ETA
        "t2": rows[2993]["created_at"],
    }
    if db_kind == "mariadb":
        return  # MySQL and MariaDB have no partial indexes: theirs indexes every job
    analyze(store)
    plans = plans_of(store, read, f"'{PENDING}'")
    assert len(plans) == 1, plans
    assert "ix_taskjobs_jobs_pending" in plans[0], plans[0]
