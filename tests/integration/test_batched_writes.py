"""Writes applied many at a time (``Store.apply_all``, the batched writer's and the publishes'
way) leave every job and its history exactly as the same changes applied one by one do, on
every database (Hypothesis).

Several tasks' lifecycles, each delivered late, repeated and out of order as in
``test_event_order``, are interleaved into one stream of changes. The stream is applied once
change by change and once in transactions of many changes, each under its own job ids; the
rows and the history of each job must be the same both ways.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from taskjobs.lifecycle import Event, Note
from taskjobs.store import Store
from taskjobs.store.tables import jobs, transitions
from tests.integration.test_event_order import (
    T0,
    Delivery,
    _empty,
    _settings,
    deliveries,
    lifecycle_of,
)
from tests.writes import count_statements

TASKS = ("a", "b", "c")


@dataclasses.dataclass(frozen=True)
class Stream:
    """Changes of several jobs, by task and label, in the order they arrive, and where the
    stream is cut into transactions."""

    arrivals: tuple[tuple[str, str], ...]
    deliveries: dict[str, Delivery]
    cuts: tuple[int, ...]


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    """Each task's delivery (any order, repeats), merged in any interleaving, with notes."""
    chosen = {task: draw(deliveries()) for task in TASKS}
    queues = {task: list(delivery.labels) for task, delivery in chosen.items()}
    for task in TASKS:  # a progress note somewhere after each job exists
        queues[task].insert(draw(st.integers(1, len(queues[task]))), "note")
    arrivals: list[tuple[str, str]] = []
    while any(queues.values()):
        task = draw(st.sampled_from([task for task in TASKS if queues[task]]))
        arrivals.append((task, queues[task].pop(0)))
    cuts = draw(st.lists(st.integers(1, len(arrivals) - 1), max_size=3, unique=True))
    return Stream(tuple(arrivals), chosen, tuple(sorted(cuts)))


def changes_of(stream: Stream, prefix: str) -> list[Event | Note]:
    """The stream's changes, for jobs named ``prefix`` + task."""
    events = {
        task: lifecycle_of(prefix + task, delivery.retries, delivery.outcome, delivery.stamped)[0]
        for task, delivery in stream.deliveries.items()
    }
    return [
        Note(prefix + task, "half way", T0) if label == "note" else events[task][label]
        for task, label in stream.arrivals
    ]


def stored(store: Store, job_id: str) -> tuple[dict[str, Any], list[Any]]:
    """The job's row and history, its id left out."""
    with store.engine.connect() as connection:
        row = connection.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()._asdict()
        history = connection.execute(
            sa.select(*(c for c in transitions.c if c.name not in ("id", "job_id")))
            .where(transitions.c.job_id == job_id)
            .order_by(transitions.c.id)
        ).all()
    del row["id"]
    return row, [tuple(entry) for entry in history]


def test_changes_applied_together_leave_what_they_leave_one_by_one(store: Store) -> None:
    @_settings(40 if store.engine.dialect.name == "sqlite" else 20)
    @given(stream=streams())
    def check(stream: Stream) -> None:
        _empty(store)
        for change in changes_of(stream, "one-"):
            store.apply(change)
        together = changes_of(stream, "all-")
        bounds = (0, *stream.cuts, len(together))
        for start, end in itertools.pairwise(bounds):
            store.apply_all(together[start:end])
        for task in TASKS:
            assert stored(store, "all-" + task) == stored(store, "one-" + task), task

    check()


def test_a_batch_of_many_jobs_writes_each_shape_in_one_statement(store: Store) -> None:
    """A hundred tasks' starts and successes, queued together: two statements per round of
    changes (one on PostgreSQL, whose write logs its own history), not one per change."""
    tasks = [lifecycle_of(f"job-{n}", 0, "success", stamped=True)[0] for n in range(100)]
    changes = [task[label] for task in tasks for label in ("publish/0", "running/0", "success")]
    with count_statements(store) as seen:
        store.apply_all(changes)
    # On PostgreSQL one execution writes all the rows of a shape, and their history.
    per_shape = 1 if store.engine.dialect.name == "postgresql" else 2
    assert len(seen) == 3 * per_shape
    for n in (0, 99):
        history = [entry[1] for entry in stored(store, f"job-{n}")[1]]
        assert history == ["PENDING", "STARTED", "SUCCESS"]


def test_a_batch_stores_every_value_as_given(store: Store) -> None:
    """What a user sees of a job written in a batch is exactly what was written: texts with
    quotes, backslashes, newlines and any Unicode, times of any zone (stored as the same
    instant) with their microseconds, floats to the last bit, big integers. On PostgreSQL a
    batch travels as one JSON parameter; this is what that must not change."""
    _empty(store)
    text = 'a "quoted" \\ back\\slash,\nnew line\ttab, {"json": [1]}, ü, 日本, 🎉, \u2028 end'
    eta = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    at = datetime(2026, 3, 1, 7, 0, 0, 654321, tzinfo=timezone.utc)
    runtime = 0.1 + 0.2
    events = [
        Event(
            f"value-{n}",
            "pending",
            at,
            "test write",
            seq=n,
            delivery=2**62 + n,
            values={"request": text, "user": "ü-ser", "eta": eta, "retries": n},
            fill={"name": "tasks.odd name 'x'"},
        )
        for n in range(3)
    ]
    ended = [
        Event(
            f"value-{n}",
            "finished",
            at + timedelta(seconds=1),
            "test write",
            seq=100 + n,
            delivery=2**62 + n,
            values={"result": text, "runtime": runtime},
        )
        for n in range(3)
    ]
    store.apply_all(events)
    store.apply_all(ended)
    for n in range(3):
        row, history = stored(store, f"value-{n}")
        assert (row["request"], row["result"], row["user"]) == (text, text, "ü-ser")
        assert row["name"] == "tasks.odd name 'x'"
        assert row["eta"] == eta and row["created_at"] == at
        assert row["finished_at"] == at + timedelta(seconds=1)
        assert row["runtime"] == runtime
        assert row["retries"] == n
        assert (row["delivery"], row["seq"]) == (2**62 + n, 100 + n)
        assert [entry[0] for entry in history] == ["pending", "finished"]
