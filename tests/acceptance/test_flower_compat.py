"""Flower compatibility, for real: a worker sends Celery's task events while taskjobs tracks
it; Celery's own ``events.state.State`` (exactly what Flower keeps in memory and answers
``/api/tasks`` from, as ``Task.as_dict()``) collects them beside it. For every task, taskjobs'
``/api/tasks`` and ``/api/task/info`` must say what Flower would: the same states, names,
reprs of arguments, results and exceptions, retries, worker, lineage and children, and the
same times to within the gap between the event and the row write. Then a client written the
way Flower API scripts are reads it unchanged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from celery import chain
from celery.events.state import State
from starlette.testclient import TestClient

from taskjobs.model import FINAL_STATES
from taskjobs.store import Store
from taskjobs.web import create_app
from tests.acceptance.conftest import Stack, build_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.slow
TASKS = "tests.celeryapp"

# Fields both must agree on exactly.
EXACT = ("uuid", "name", "state", "args", "kwargs", "result", "exception", "retries",
         "worker", "root_id", "parent_id")  # fmt: skip
# Times, agreeing to within the moment between the event and the row's write.
TIMES = ("received", "started", "succeeded", "failed")
CLOCK_GAP = 1.0


class FlowerState:
    """Celery's event state, fed by a receiver thread: what Flower holds."""

    def __init__(self, stack: Stack) -> None:
        self.state = State()
        self._connection = stack.publisher.connection_for_read()
        self._receiver = stack.publisher.events.Receiver(
            self._connection, handlers={"*": self.state.event}
        )
        self._ready = threading.Event()
        consume_ready = self._receiver.on_consume_ready

        def on_consume_ready(*args: Any, **kwargs: Any) -> None:
            consume_ready(*args, **kwargs)
            self._ready.set()

        self._receiver.on_consume_ready = on_consume_ready  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=lambda: self._receiver.capture(limit=None, timeout=None, wakeup=True),
            daemon=True,
        )

    def __enter__(self) -> FlowerState:
        self._thread.start()
        wait_for(self._ready.is_set, what="the event receiver to consume")
        return self

    def __exit__(self, *exc: object) -> None:
        self._receiver.should_stop = True
        self._thread.join(timeout=10)
        self._connection.release()

    def ended(self, task_id: str) -> bool:
        """Whether the task's success or failure event came (its state may still say
        otherwise: Flower's merge lets a late ``task-retried`` event win)."""
        found = self.task(task_id) or {}
        return bool(found.get("succeeded") or found.get("failed"))

    def task(self, task_id: str) -> dict[str, Any] | None:
        found = self.state.tasks.get(task_id)
        if found is None:
            return None
        fields: dict[str, Any] = found.as_dict()
        worker = fields.get("worker")
        fields["worker"] = getattr(worker, "hostname", worker)  # as Flower's api/tasks.py
        return fields


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for built in build_stack("redis", "postgresql", tmp_path_factory.mktemp("flower")):
        built.start_worker("-E")  # the worker sends task events, as Flower needs
        yield built


def test_every_task_reads_as_flower_shows_it(stack: Stack, tmp_path: Path) -> None:
    store = Store(stack.url)
    with FlowerState(stack) as flower:
        app = stack.publisher
        sent = [
            app.send_task(f"{TASKS}.add", (2, 3)),
            app.send_task(f"{TASKS}.fail", ("the parcel is lost",)),
            app.send_task(f"{TASKS}.retry_twice", ("third time",)),
            app.send_task(f"{TASKS}.echo", (1, "two"), {"three": [3]}),
        ]
        workflow = chain(app.signature(f"{TASKS}.add", (1, 2)),
                         app.signature(f"{TASKS}.add", (10,))).apply_async()  # fmt: skip
        ids = [result.id for result in sent] + [workflow.parent.id, workflow.id]
        retried = sent[2].id

        def all_ended() -> bool:
            jobs = [store.get(task_id) for task_id in ids]
            # Ended, and received: the main process's queued receipt may land just after.
            ours = all(
                job is not None and job.status in FINAL_STATES and job.received_at is not None
                for job in jobs
            )
            theirs = all(flower.ended(task_id) for task_id in ids)
            return ours and theirs

        def progress() -> str:
            ours = {i: getattr(store.get(i), "status", None) for i in ids}
            theirs = {i: (flower.task(i) or {}).get("state") for i in ids}
            return f"every task to end: in the store {ours}, in the events {theirs}"

        wait_for(all_ended, timeout=60, what=progress)
        client = TestClient(create_app(store))
        listed = client.get("/api/tasks").json()
        # What Flower shows, with the retried task as it really ended (below).
        flowers: dict[str, Any] = {}
        for task_id in ids:
            expected = flower.task(task_id)
            assert expected is not None
            ours = listed[task_id]
            if task_id == retried:
                # The retry's ``task-retried`` event comes from the worker's main process and
                # may arrive after the retried delivery's ``task-succeeded``; Flower's state
                # then stays RETRY with the retry's exception. The store orders by attempt.
                assert ours["state"] == "SUCCESS" and ours["exception"] is None
                assert ours["retries"] == 2
                # A retry is published from inside the task, so Celery stamps the task as its
                # own parent (and child); the store keeps the lineage of the first delivery.
                assert expected["parent_id"] == task_id and ours["parent_id"] is None
                expected = {**expected, "state": "SUCCESS", "exception": None, "parent_id": None,
                            "parent": None, "children": [], "traceback": None}  # fmt: skip
            flowers[task_id] = expected
            for field in EXACT:
                assert ours[field] == expected[field], (task_id, field)
            assert sorted(ours["children"]) == sorted(expected["children"]), task_id
            for field in TIMES:
                if expected[field] is None:
                    assert ours[field] is None, (task_id, field)
                else:
                    assert abs(ours[field] - expected[field]) < CLOCK_GAP, (task_id, field)
            if expected["traceback"]:
                last = expected["traceback"].strip().splitlines()[-1]
                assert ours["traceback"].strip().splitlines()[-1] == last
            info = client.get(f"/api/task/info/{task_id}").json()
            assert info["task-id"] == task_id and info["state"] == expected["state"]
        assert flower_style_summary(listed) == flower_style_summary(flowers)
    store.dispose()


def flower_style_summary(tasks: dict[str, Any]) -> list[str]:
    """What a script written against Flower's ``/api/tasks`` typically does with it: failures
    with their exception, successes with their result and run time, times as datetimes."""
    lines = []
    for task_id, task in sorted(tasks.items()):
        received = datetime.fromtimestamp(task["received"], tz=timezone.utc)
        if task["state"] == "FAILURE":
            lines.append(f"{task_id} {task['name']} failed: {task['exception']}")
        elif task["state"] == "SUCCESS":
            lines.append(f"{task_id} {task['name']}{task['args']} = {task['result']}")
        lines.append(f"{task_id} received {received:%Y-%m-%d %H:%M} on {task['worker']}")
    return lines
