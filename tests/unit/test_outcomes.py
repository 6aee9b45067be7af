"""What a worker's main process keeps of its pool's outcomes, and the ends it writes from them
when the pool process that returned them is gone (the "batched" mode)."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace
from typing import Any

import pytest
from billiard.einfo import ExceptionInfo
from celery.exceptions import Retry, WorkerLostError

from taskjobs.celery.outcomes import Outcomes, Returned, end_of, unwritten
from taskjobs.lifecycle import Event, Note
from taskjobs.model import ERROR, FINISHED, RUNNING, Job
from taskjobs.settings import Settings

POOL_PID = 999_999_999  # no process has it


def request(task_id: str = "t-1", pid: int | None = POOL_PID, retries: int = 0) -> Any:
    """A received request as Celery's main process holds it, its callback recording calls."""
    calls: list[tuple[Any, dict[str, Any]]] = []

    def on_success(outcome: Any, **kwargs: Any) -> str:
        calls.append((outcome, kwargs))
        return "celery's own"

    return SimpleNamespace(
        id=task_id,
        name="tasks.add",
        task=None,
        request_dict={"retries": retries, "taskjobs_delivery": 7},
        worker_pid=pid,
        time_start=1_000.0,
        on_success=on_success,
        calls=calls,
    )


def failure(exception: BaseException) -> ExceptionInfo:
    try:
        raise exception
    except BaseException:  # noqa: BLE001 - whichever the test raised
        return ExceptionInfo()


def returned(request: Any, outcome: tuple[bool, Any, float | None]) -> Returned:
    outcomes = Outcomes()
    outcomes.watch(request, existing_only=False)
    request.on_success(outcome)
    (kept,) = outcomes.take_lost(alive=lambda pid: False)
    return kept


def test_a_watched_request_hands_celery_its_outcome_and_keeps_it_by_pool_process() -> None:
    outcomes = Outcomes()
    first, second = request("t-1"), request("t-2", pid=POOL_PID - 1)
    for each in (first, second):
        outcomes.watch(each, existing_only=False)
    assert first.on_success((False, "42", 0.5), extra=1) == "celery's own"
    second.on_success((False, "'text'", 0.1))
    assert first.calls == [((False, "42", 0.5), {"extra": 1})], "Celery's callback, unchanged"
    lost = outcomes.take_lost(alive=lambda pid: pid != POOL_PID)
    assert [(kept.pid, kept.job_id, kept.value, kept.delivery) for kept in lost] == [
        (POOL_PID, "t-1", "42", 7)
    ]
    assert outcomes.take_lost(alive=lambda pid: pid != POOL_PID) == [], "taken once"
    assert len(outcomes) == 1, "the live process's outcome is still kept"


def test_outcomes_of_live_processes_are_forgotten_after_keep_seconds() -> None:
    outcomes = Outcomes()
    outcomes.watch(watched := request(), existing_only=False)
    watched.on_success((False, "1", 0.1))
    assert outcomes.take_lost(keep=60, alive=lambda pid: True) == [] and len(outcomes) == 1
    assert outcomes.take_lost(keep=0, alive=lambda pid: True) == [] and len(outcomes) == 0
    assert outcomes.take_lost(keep=60, alive=lambda pid: False) == []


@pytest.mark.parametrize(
    ("pid", "outcome"),
    [
        (os.getpid(), (False, "1", 0.1)),  # the pool is this process (solo, threads)
        (None, (False, "1", 0.1)),  # never accepted by a pool process
        (POOL_PID, (True, failure(Retry("again")), None)),  # will run again
        (POOL_PID, (True, failure(WorkerLostError("gone")), None)),  # Celery reports it
        (POOL_PID, (True, failure(SystemExit(1)), None)),  # billiard's report of an exit
        (POOL_PID, "not a pool's outcome"),
    ],
)
def test_what_ends_no_job_or_is_reported_otherwise_is_not_kept(pid: Any, outcome: Any) -> None:
    outcomes = Outcomes()
    outcomes.watch(watched := request(pid=pid), existing_only=False)
    assert watched.on_success(outcome) == "celery's own"
    assert len(outcomes) == 0


def test_a_request_that_takes_no_attributes_is_left_to_celery_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Slotted:
        __slots__ = ("id",)

        def on_success(self, outcome: Any) -> None: ...

    outcomes = Outcomes()
    with caplog.at_level(logging.WARNING, logger="taskjobs"):
        for _ in range(3):
            outcomes.watch(Slotted(), existing_only=False)
    assert [r.getMessage() for r in caplog.records] == [
        "taskjobs: cannot watch the outcomes of Slotted requests: the end of a task whose pool "
        "process is killed before writing it stays unwritten"
    ]


def stored(status: str, retries: int = 0) -> Job:
    return Job(id="t-1", status=status, retries=retries)


def test_an_end_is_unwritten_unless_the_job_ended_at_that_attempt_or_later() -> None:
    kept = returned(request(retries=1), (False, "1", 0.1))
    assert unwritten(kept, None)
    assert unwritten(kept, stored(RUNNING, retries=1))
    assert unwritten(kept, stored(ERROR, retries=0)), "an earlier attempt's end"
    assert not unwritten(kept, stored(FINISHED, retries=1))
    assert not unwritten(kept, stored(ERROR, retries=2))


def test_a_success_is_written_with_its_result_read_back_from_celerys_repr() -> None:
    settings = Settings.load({})
    end, note = end_of(returned(request(), (False, "{'total': 3, 'ok': True}", 0.25)), settings)
    assert isinstance(end, Event) and isinstance(note, Note)
    assert (end.job_id, end.state, end.values["celery_state"]) == ("t-1", FINISHED, "SUCCESS")
    assert end.values["result"] == '{"total": 3, "ok": true}' and end.values["runtime"] == 0.25
    assert end.delivery == 7
    assert note.text == (
        "end written by the worker's main process: pool process 999999999, which ran the "
        "task, was gone before it had written it"
    )

    (opaque, said) = end_of(returned(request(), (False, "<Thing at 0x7f>", 0.25)), settings)
    assert isinstance(opaque, Event) and opaque.values["result"] == '"<Thing at 0x7f>"'
    assert said.text.endswith("(the result as Celery's repr of it: all a pool process hands back)")


def test_a_failure_is_written_with_the_tasks_exception_and_traceback() -> None:
    kept = returned(request(), (True, failure(ValueError("boom")), None))
    end, _ = end_of(kept, Settings.load({}))
    assert isinstance(end, Event)
    assert (end.state, end.values["celery_state"], end.values["exc_type"]) == (
        ERROR,
        "FAILURE",
        "ValueError",
    )
    assert end.message is not None and "ValueError: boom" in end.message
    assert "Traceback" in end.message or 'File "' in end.message
    assert end.values["runtime"] is not None, "from when the pool process accepted it"
