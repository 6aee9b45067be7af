"""The read side on every database: finding jobs, pages, workers and the report, each read from
the store it is given."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import taskjobs
from taskjobs import AmbiguousJobIdError, JobNotFoundError, queries
from taskjobs.errors import InvalidInputError, InvalidStateError
from taskjobs.model import utcnow
from taskjobs.store import Store, Transition
from tests.writes import transition

MOMENT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def put(store: Store, job_id: str, status: str, at: datetime = MOMENT, **values: Any) -> None:
    """Write one job as the documented functions do (no order key), created at ``at``."""
    transition(job_id, status, values, at=at, store=store)


@pytest.fixture
def elsewhere(tmp_path: Path) -> Store:
    """Another store, configured as the default one: reads given a store must not touch it."""
    return taskjobs.configure(f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}")


def test_a_job_is_found_by_its_id_or_a_unique_prefix(store: Store) -> None:
    for job_id in ("a", "ab-1", "cd-2", "ce-3"):
        put(store, job_id, "pending")
    assert queries.find_job("a", store).id == "a"  # an exact id wins over longer ones
    assert queries.find_job("ab", store).id == "ab-1"
    assert queries.find_job("cd", store).id == "cd-2"


def test_an_unknown_id_is_not_found_and_an_ambiguous_prefix_names_the_ids(store: Store) -> None:
    for i in range(5):
        put(store, f"job-{i}", "pending")
    with pytest.raises(JobNotFoundError) as lost:
        queries.find_job("zz", store)
    assert str(lost.value) == "no job with id 'zz' (nor any id starting with it)"
    assert isinstance(lost.value, LookupError)
    with pytest.raises(AmbiguousJobIdError) as caught:
        queries.find_job("job-", store)
    assert str(caught.value) == (
        "job id prefix 'job-' is ambiguous: 'job-0', 'job-1', 'job-2' and more start with it; "
        "give more characters"
    )
    assert isinstance(caught.value, ValueError)
    put(store, "pair-1", "pending")
    put(store, "pair-2", "pending")
    with pytest.raises(AmbiguousJobIdError, match="'pair-1', 'pair-2' start with it"):
        queries.find_job("pair", store)


def test_a_job_with_its_history_is_read_from_the_store_given(
    store: Store, elsewhere: Store
) -> None:
    put(store, "job-1", "pending", MOMENT)
    put(store, "job-1", "running", MOMENT + timedelta(seconds=1), worker="celery@w", retries=0)
    put(elsewhere, "job-1", "finished")  # the same id in the default store
    shown = queries.job_with_history("job-1", store)
    assert (shown.job.id, shown.job.status) == ("job-1", "running")
    assert shown.history == (
        Transition("pending", None, None, None, MOMENT),
        Transition("running", None, "celery@w", 0, MOMENT + timedelta(seconds=1)),
    )
    with pytest.raises(JobNotFoundError):
        queries.job_with_history("only-here", elsewhere)


def test_the_default_store_is_the_configured_one(store: Store) -> None:
    put(store, "configured", "pending")
    assert queries.find_job("configured").id == "configured"
    assert [job.id for job in queries.list_jobs().jobs] == ["configured"]


def test_listings_filter_by_every_field_and_window(store: Store) -> None:
    put(store, "a", "finished", MOMENT, name="t.add", user="alice", worker="celery@1")
    put(store, "b", "error", MOMENT + timedelta(minutes=1), name="t.add", user="bob",
        worker="celery@2")  # fmt: skip
    put(store, "c", "pending", MOMENT + timedelta(minutes=2), name="t.mul", user="alice")
    put(store, "d", "pending", MOMENT + timedelta(minutes=3))

    def ids(**filters: Any) -> list[str]:
        return [job.id for job in queries.list_jobs(store=store, **filters).jobs]

    assert ids() == ["d", "c", "b", "a"]
    assert ids(state="pending") == ["d", "c"]
    assert ids(name="t.add") == ["b", "a"]
    assert ids(user="alice") == ["c", "a"]
    assert ids(user="") == ["d"]  # a job without a user
    assert ids(worker="celery@2") == ["b"]
    assert ids(since=MOMENT + timedelta(minutes=1)) == ["d", "c", "b"]
    assert ids(until=MOMENT + timedelta(minutes=1)) == ["a"]
    window = {"since": MOMENT + timedelta(minutes=1), "until": MOMENT + timedelta(minutes=3)}
    assert ids(**window) == ["c", "b"]
    assert ids(state="pending", user="alice", name="t.mul") == ["c"]
    assert ids(state="running") == []


def test_pages_cover_every_job_once_and_the_last_one_has_no_next(store: Store) -> None:
    for i in range(7):  # equal times: the id breaks the tie
        put(store, f"job-{i}", "pending", MOMENT + timedelta(seconds=i // 3))
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = queries.list_jobs(limit=3, after=after, store=store)
        seen += [job.id for job in page.jobs]
        pages += 1
        if page.next_after is None:
            break
        assert page.next_after == page.jobs[-1].id and len(page.jobs) == 3
        after = page.next_after
    assert pages == 3 and seen == [f"job-{i}" for i in (6, 5, 4, 3, 2, 1, 0)]
    # A page that ends exactly with the last job says so.
    full = queries.list_jobs(limit=7, store=store)
    assert len(full.jobs) == 7 and full.next_after is None
    assert queries.list_jobs(limit=6, store=store).next_after == "job-1"


def test_an_empty_listing_is_an_empty_last_page(store: Store) -> None:
    assert queries.list_jobs(store=store) == queries.Page((), None)


@pytest.mark.parametrize(
    ("filters", "error", "message"),
    [
        ({"state": "done"}, InvalidStateError, "invalid job state 'done'"),
        ({"limit": 0}, InvalidInputError, "invalid limit 0: give a whole number from 1 to"),
        ({"limit": True}, InvalidInputError, "invalid limit True"),
        ({"after": "nope"}, InvalidInputError, "unknown job id 'nope' given as the page cursor"),
    ],
)
def test_bad_listing_arguments_are_refused_naming_them(
    store: Store, filters: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        queries.list_jobs(store=store, **filters)


def test_workers_are_alive_silent_or_stopped_at_the_time_asked(store: Store) -> None:
    now = utcnow()
    store.heartbeat("celery@alive", hostname="h1", pid=1, at=now - timedelta(seconds=60))
    store.heartbeat("celery@silent", hostname="h2", pid=2, at=now - timedelta(seconds=61))
    store.heartbeat("celery@stopped", hostname="h3", pid=3, at=now - timedelta(seconds=1))
    store.reap(silent_since=None, worker="celery@stopped", at=now, reason="shut down")
    put(store, "r1", "running", worker="celery@alive")
    put(store, "r2", "running", worker="celery@alive")
    put(store, "done", "finished", worker="celery@alive")
    put(store, "r3", "running", worker="celery@silent")
    put(store, "elsewhere", "running", worker="celery@no-heartbeat")
    found = queries.list_workers(timeout=60, at=now, store=store)
    assert [(s.worker.name, s.state, s.running, s.silent_for) for s in found] == [
        ("celery@stopped", "stopped", 0, 1.0),
        ("celery@alive", "alive", 2, 60.0),  # silent for exactly the timeout: not over it
        ("celery@silent", "silent", 1, 61.0),
    ]
    assert (found[1].worker.hostname, found[1].worker.pid) == ("h1", 1)
    assert found[0].worker.stopped_at == now
    # A stopped worker that beats again is alive.
    store.heartbeat("celery@stopped", hostname="h3", pid=4, at=now)
    (again,) = [s for s in queries.list_workers(timeout=60, at=now, store=store)
                if s.worker.name == "celery@stopped"]  # fmt: skip
    assert (again.state, again.worker.pid, again.worker.stopped_at) == ("alive", 4, None)


def test_no_heartbeat_no_worker(store: Store) -> None:
    put(store, "r", "running", worker="celery@w")
    assert queries.list_workers(timeout=60, store=store) == []


def test_the_report_is_read_from_the_store_given(store: Store, elsewhere: Store) -> None:
    now = utcnow()
    store.heartbeat("celery@w", hostname="h", pid=1, at=now - timedelta(seconds=2))
    put(store, "ok", "finished", now - timedelta(minutes=1), name="t", worker="celery@w")
    put(elsewhere, "other", "error", now - timedelta(minutes=1), name="t")
    report = queries.report(since=now - timedelta(hours=1), until=now, store=store)
    assert report.totals["finished"] == 1 and report.totals["error"] == 0
    (worker,) = report.workers
    assert (worker.worker, worker.processed, worker.last_seen) == (
        "celery@w", 1, now - timedelta(seconds=2)
    )  # fmt: skip
