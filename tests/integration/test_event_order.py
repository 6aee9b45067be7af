"""Event order: late, repeated and reordered lifecycle events end a job as the ordered lifecycle
does, on every database (Hypothesis).

One task's lifecycle is the list of events the Celery receivers build for it, built here with
the same builders (``taskjobs.lifecycle``) from the values Celery would hand them. Delivering
those events in any order, with any of them repeated, must end the job as delivering them once,
in order, does. With ``stamped`` the messages carry taskjobs' delivery stamps (a tracked
publisher); without, they come from a publisher that does not stamp them.

The ``store`` fixture empties the tables once per test, so each example empties them itself;
Hypothesis runs inside the test to choose fewer examples on the servers.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from taskjobs import lifecycle
from taskjobs.api.job import findJob
from taskjobs.lifecycle import Event, Lineage
from taskjobs.model import delivery_stamp
from taskjobs.store import Store
from taskjobs.store.tables import jobs, transitions
from taskjobs.store.writes import RUN_COLUMNS

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NAME, USER, QUEUE = "proj.add", "alice", "celery"
REQUEST = '{"args": [2, 3], "kwargs": {}}'
RESULT = '{"sum": 5}'
# How the task's last attempt ends. Attempt-unknown ends come from the worker's main process:
# Celery sends task_failure twice for one hard time limit.
OUTCOMES = ("success", "failure", "revoked", "time-limit", "worker-lost")
# What the README says each outcome leaves: status, celery_state, result, exc_type.
FINAL = {
    "success": ("finished", "SUCCESS", RESULT, None),
    "failure": ("error", "FAILURE", "", "ValueError"),
    "revoked": ("error", "REVOKED", "", None),
    "time-limit": ("error", "FAILURE", "", "TimeLimitExceeded"),
    "worker-lost": ("error", "FAILURE", "", "WorkerLostError"),
}


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )


def end_reason(outcome: str, retries: int) -> str | None:
    """The reason an ending attempt notes in the job's messages (a success notes none)."""
    if outcome in ("failure", "revoked"):
        return f"{outcome} of attempt {retries}"
    return None if outcome == "success" else f"{outcome}: the attempt was killed"


def lifecycle_of(
    job_id: str, retries: int, outcome: str, stamped: bool
) -> tuple[dict[str, Event], tuple[str, ...]]:
    """The events of a task retried ``retries`` times, then ending in ``outcome``, and the order
    Celery sends them in (a hard time limit's failure appears twice)."""
    events: dict[str, Event] = {}
    order: list[str] = []
    stamp: int | None = None
    for attempt in range(retries + 1):
        moment = T0 + timedelta(minutes=attempt)
        # A retry's message is published from inside the attempt before it: stamped after it.
        stamp = delivery_stamp(moment, stamp) if stamped else None
        events[f"publish/{attempt}"] = lifecycle.published(
            job_id, name=NAME, user=USER, request=REQUEST, queue=QUEUE, lineage=Lineage(),
            retries=attempt, eta=None, delivery=stamp, at=moment,
        )  # fmt: skip
        events[f"received/{attempt}"] = lifecycle.received(
            job_id, name=NAME, user=USER, request=REQUEST, queue=QUEUE, lineage=Lineage(),
            retries=attempt, eta=None, worker=f"celery@w{attempt}", redelivered=False,
            delivery=stamp,
            at=moment + timedelta(seconds=1),
        )  # fmt: skip
        events[f"running/{attempt}"] = lifecycle.started(
            job_id, name=NAME, user=USER, request=REQUEST, queue=QUEUE, lineage=Lineage(),
            retries=attempt, worker=f"celery@w{attempt}", pid=100 + attempt, redelivered=False,
            delivery=stamp, at=moment + timedelta(seconds=2),
        )  # fmt: skip
        # Task.retry() publishes the next attempt, then Celery sends task_retry.
        order += [f"publish/{attempt}", f"received/{attempt}", f"running/{attempt}"]
        if attempt < retries:
            events[f"retry/{attempt}"] = lifecycle.retried(
                job_id, retries=attempt, reason=f"boom {attempt}", delivery=stamp,
                at=moment + timedelta(seconds=3),
            )  # fmt: skip
    # publish/N+1 comes before retry/N: move each retry right after the next publish.
    for attempt in range(retries):
        order.insert(order.index(f"publish/{attempt + 1}") + 1, f"retry/{attempt}")
    end = T0 + timedelta(minutes=retries, seconds=4)
    _, celery_state, result, exc_type = FINAL[outcome]
    if outcome == "success":
        events[outcome] = lifecycle.succeeded(
            job_id, name=NAME, result=result, runtime=0.5, retries=retries, delivery=stamp, at=end
        )
    elif outcome in ("failure", "revoked"):
        events[outcome] = lifecycle.ended(
            job_id, what=outcome, celery_state=celery_state, retries=retries,
            reason=end_reason(outcome, retries), exc_type=exc_type,
            runtime=0.5 if outcome == "failure" else None, delivery=stamp, at=end,
        )  # fmt: skip
    else:  # seen in the worker's main process, which knows neither attempt nor message
        events[outcome] = lifecycle.ended(
            job_id, what=outcome, celery_state=celery_state, retries=None,
            reason=end_reason(outcome, retries), exc_type=exc_type, at=end,
        )  # fmt: skip
    order += [outcome, outcome] if outcome == "time-limit" else [outcome]
    return events, tuple(order)


@dataclasses.dataclass(frozen=True)
class Delivery:
    retries: int
    outcome: str
    stamped: bool
    labels: tuple[str, ...]  # the events as delivered, by name


@st.composite
def deliveries(draw: st.DrawFn) -> Delivery:
    """Every event of a lifecycle at least once, some repeated, in any order.

    An end that does not know its attempt (``stage``) ends whatever attempt the row is at, so
    it is delivered after the start of the attempt it ends: the child process records that start
    before the task body runs, and the main process only sees the kill after that.
    """
    retries = draw(st.integers(0, 2))
    outcome = draw(st.sampled_from(OUTCOMES))
    stamped = draw(st.booleans())
    events, order = lifecycle_of("job", retries, outcome, stamped)
    knows_attempt = [label for label in order if events[label].stage is None]
    blind = [label for label in order if events[label].stage is not None]
    repeats = draw(st.lists(st.sampled_from(knows_attempt), max_size=4))
    labels = list(draw(st.permutations(knows_attempt + repeats)))
    if blind:
        start = labels.index(f"running/{retries}")
        for label in blind + draw(st.lists(st.just(blind[0]), max_size=1)):
            labels.insert(draw(st.integers(start + 1, len(labels))), label)
    return Delivery(retries, outcome, stamped, tuple(labels))


def _empty(store: Store) -> None:
    with store.engine.begin() as connection:
        connection.execute(sa.delete(transitions))
        connection.execute(sa.delete(jobs))


def _deliver(store: Store, job_id: str, delivery: Delivery, labels: tuple[str, ...]) -> Any:
    events, _ = lifecycle_of(job_id, delivery.retries, delivery.outcome, delivery.stamped)
    for label in labels:
        store.apply(events[label])
    job, _ = findJob(job_id)
    assert job is not None
    return job.as_dict(), events


COMPARED = ("status", "celery_state", "result", "exc_type", "name", "user", "request", "queue")


def _check_delivery(store: Store, delivery: Delivery, *, retries_always: bool) -> None:
    """Compare the job after ``delivery`` with the job after the events in Celery's order.

    Must be equal: status, celery_state, result, exc_type, and what the events fill in (name,
    user, request, queue). ``retries`` must be equal when the last attempt's start arrives before
    its end, as it always does in Celery (the worker records the start before the task body
    runs); with ``retries_always``, in every order. ``messages`` must hold the same lines in any
    order, plus one more copy of a retry note for each repeat of that task_retry: retry notes are
    appended even when their state is older (so none is lost when the next attempt's publish
    won), hence once per delivery; the end's note is guarded, so it is there exactly once. Not
    compared: worker, pid and the timestamps, which come from whichever event carrying them
    applied last.
    """
    _empty(store)
    in_order = lifecycle_of("in-order", delivery.retries, delivery.outcome, delivery.stamped)[1]
    ordered, events = _deliver(store, "in-order", delivery, in_order)
    delivered, _ = _deliver(store, "delivered", delivery, delivery.labels)

    # The in-order run is what the README says.
    status, celery_state, result, exc_type = FINAL[delivery.outcome]
    assert (ordered["status"], ordered["celery_state"], ordered["result"]) == (
        status,
        celery_state,
        result,
    )
    assert (ordered["exc_type"], ordered["retries"]) == (exc_type, delivery.retries)
    lines = ordered["messages"].splitlines()
    notes = [f"attempt {attempt + 1} failed, retrying: boom {attempt}"
             for attempt in range(delivery.retries)]  # fmt: skip
    reason = end_reason(delivery.outcome, delivery.retries)
    assert [line.split("] ", 1)[1] for line in lines] == notes + ([reason] if reason else [])
    expected_fill = {"name": NAME, "user": USER, "request": REQUEST, "queue": QUEUE}
    assert {key: ordered[key] for key in expected_fill} == expected_fill

    for key in COMPARED:
        assert delivered[key] == ordered[key], key
    # The last attempt's start, once recorded, is older only than the end.
    started = delivery.labels.index(f"running/{delivery.retries}")
    if retries_always or started < delivery.labels.index(delivery.outcome):
        assert delivered["retries"] == ordered["retries"]
    extra = Counter(delivery.labels) - Counter(in_order)
    retry_notes = {
        label: (events[label].message or "").rstrip("\n")
        for label in extra
        if label.startswith("retry/")
    }
    expected_lines = Counter(lines) + Counter(
        {retry_notes[label]: count for label, count in extra.items() if label in retry_notes}
    )
    assert Counter(delivered["messages"].splitlines()) == expected_lines
    _check_history(store, "delivered", events, delivery.labels)


def _check_history(
    store: Store, job_id: str, events: dict[str, Event], labels: tuple[str, ...]
) -> None:
    """The job's history is in time order and holds each publish and receipt delivered exactly
    once, at its time, whenever it landed: one that lands after a later step (queued, as in the
    grouped mode) is still logged, and one delivered twice is logged once."""
    history = store.history(job_id)
    assert [entry.at for entry in history] == sorted(entry.at for entry in history)
    logged = Counter((entry.celery_state, entry.at) for entry in history)
    for label in set(labels):
        event = events[label]
        if event.logged_late:
            assert logged[(event.values["celery_state"], event.at)] == 1, label


def test_any_delivery_order_ends_the_job_as_the_ordered_lifecycle_does(store: Store) -> None:
    # Every delivery is a committed transaction: fewer examples on the servers than on SQLite.
    @_settings(60 if store.engine.dialect.name == "sqlite" else 30)
    @given(delivery=deliveries())
    def check(delivery: Delivery) -> None:
        _check_delivery(store, delivery, retries_always=False)

    check()


# The task ends (attempt 1) before anything else of it is recorded.
END_BEFORE_START = ("success", "publish/0", "received/0", "running/0", "publish/1", "retry/0")
END_BEFORE_START += ("received/1", "running/1")


@_settings(20)
@example(delivery=Delivery(1, "success", False, END_BEFORE_START))
@example(delivery=Delivery(1, "success", True, END_BEFORE_START))
@given(delivery=deliveries())
def test_any_delivery_order_ends_with_the_attempts_the_task_made(
    store: Store, delivery: Delivery
) -> None:
    _check_delivery(store, delivery, retries_always=True)


def test_a_job_an_untracked_publisher_sent_starts_over_when_a_tracked_one_sends_its_id(
    store: Store,
) -> None:
    """A job that ran from an unstamped message, then published again under its id by a tracked
    publisher (``apply_async(task_id=...)``): the stamped message is a later one, so its events
    apply though their order keys are lower, and the job runs again."""
    first, order = lifecycle_of("job", 0, "success", stamped=False)
    for label in order:
        store.apply(first[label])
    assert findJob("job")[1] == "finished"
    again, _ = lifecycle_of("job", 0, "failure", stamped=True)
    later = {label: dataclasses.replace(event, at=event.at + timedelta(hours=1))
             for label, event in again.items()}  # fmt: skip
    store.apply(later["publish/0"])
    assert findJob("job")[1] == "pending"
    store.apply(later["received/0"])
    store.apply(later["running/0"])
    job = store.get("job")
    assert job is not None and (job.status, job.worker) == ("running", "celery@w0")
    store.apply(later["failure"])
    ended = store.get("job")
    assert ended is not None and (ended.status, ended.celery_state) == ("error", "FAILURE")
    assert [h.status for h in store.history("job")] == [
        "pending", "pending", "running", "finished", "pending", "pending", "running", "error",
    ]  # fmt: skip


# What a run of a job sets, when it was published, and what the job's state is: all of it the
# new run's own.
RUN_FIELDS = (*RUN_COLUMNS, "created_at", "status", "celery_state", "retries")
# The outcomes an event of the run's own delivery reports (the worker's main process's ends
# know no delivery, so they end whatever run the row is at).
RUN_OUTCOMES = ("success", "failure", "revoked")


def _runs(outcome: str) -> tuple[dict[str, Event], tuple[str, ...], dict[str, Event]]:
    """A first run that succeeded on ``celery@w0``, and the events of the same id published
    again an hour later, run on ``celery@w9`` and ending in ``outcome`` (labels ``again/...``)."""
    first, order = lifecycle_of("job", 0, "success", stamped=True)
    second, _ = lifecycle_of("job", 0, outcome, stamped=True)
    hour = timedelta(hours=1)
    again: dict[str, Event] = {}
    for label, event in second.items():
        # Another worker and process, only where the event carries them (a receipt has no pid),
        # and its times an hour later.
        other = {"worker": "celery@w9", "pid": 999}
        values = {
            key: value + hour if isinstance(value, datetime) else other.get(key, value)
            for key, value in event.values.items()
        }
        assert event.delivery is not None
        again[f"again/{label}"] = dataclasses.replace(
            event, at=event.at + hour, delivery=event.delivery + 3_600_000_000, values=values
        )
    return first, order, again


def _run_fields(store: Store) -> dict[str, Any]:
    job = store.get("job")
    assert job is not None
    return {field: getattr(job, field) for field in RUN_FIELDS}


def test_an_id_published_again_shows_nothing_of_its_earlier_run(store: Store) -> None:
    """``apply_async(task_id=...)`` with an id that already ran: from its publish on, the job
    is the new run's alone (no earlier worker, result, times or exception); a retry, the same
    run's next attempt, keeps what its attempts set."""
    _empty(store)
    first, order, again = _runs("failure")
    for label in order:
        store.apply(first[label])
    ran = store.get("job")
    assert ran is not None and (ran.result, ran.worker) == (RESULT, "celery@w0")
    created = ran.created_at

    store.apply(again["again/publish/0"])
    pending = _run_fields(store)
    assert pending["status"] == "pending" and pending["celery_state"] == "PENDING"
    assert {field: pending[field] for field in RUN_COLUMNS} == {
        "worker": None, "pid": None, "eta": None, "received_at": None, "started_at": None,
        "finished_at": None, "runtime": None, "result": "", "exc_type": None,
    }  # fmt: skip
    for label in ("again/received/0", "again/running/0", "again/failure"):
        store.apply(again[label])
    failed = store.get("job")
    assert failed is not None
    assert (failed.status, failed.exc_type, failed.worker) == ("error", "ValueError", "celery@w9")
    assert failed.result == "", "the earlier run's result is not this run's"
    # Dated from the new run's publish: its wait, its buckets and its age for retention.
    assert failed.created_at == again["again/publish/0"].at > created
    assert failed.queue_wait == 2.0, "waited from its own publish to its start"
    # A late event of the earlier run dates it no earlier.
    store.apply(first["received/0"])
    job = store.get("job")
    assert job is not None and job.created_at == again["again/publish/0"].at

    # A retry: the next attempt's publish keeps the attempt before it (its worker, its start).
    _empty(store)
    retried, retried_order = lifecycle_of("job", 1, "success", stamped=True)
    for label in retried_order[: retried_order.index("publish/1") + 1]:
        store.apply(retried[label])
    job = store.get("job")
    assert job is not None and (job.status, job.retries) == ("pending", 1)
    assert (job.worker, job.pid) == ("celery@w0", 100)
    assert job.started_at is not None
    assert job.created_at == retried["publish/0"].at, "a retry is dated from the first attempt"


@st.composite
def runs_again(draw: st.DrawFn) -> tuple[str, tuple[str, ...]]:
    """The second run's events, some repeated, with late copies of the first run's, in any
    order."""
    outcome = draw(st.sampled_from(RUN_OUTCOMES))
    _, order, again = _runs(outcome)
    labels = list(again) + draw(st.lists(st.sampled_from(list(again)), max_size=2))
    labels += draw(st.lists(st.sampled_from(order), max_size=4))
    return outcome, tuple(draw(st.permutations(labels)))


def test_a_new_run_ends_the_same_whatever_order_its_and_the_earlier_runs_events_arrive_in(
    store: Store,
) -> None:
    """Late events of the earlier run change nothing of the new one, and the new run's own
    events fill in what it set, in any order: the job ends as when everything arrives in
    order."""

    @_settings(40 if store.engine.dialect.name == "sqlite" else 15)
    @given(delivered=runs_again())
    def check(delivered: tuple[str, tuple[str, ...]]) -> None:
        outcome, labels = delivered
        first, order, again = _runs(outcome)
        _empty(store)
        for label in order:
            store.apply(first[label])
        for label in again:
            store.apply(again[label])
        expected = _run_fields(store)
        _empty(store)
        for label in order:
            store.apply(first[label])
        events = {**first, **again}
        for label in labels:
            store.apply(events[label])
        assert _run_fields(store) == expected

    check()
