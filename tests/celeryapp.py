"""The Celery app the tests track: in-process (memory broker) and in real `celery worker`s.

Configured from the environment so that a worker subprocess builds the same app:
TJ_BROKER, TJ_BACKEND (optional), TJ_QUEUE, TJ_EXTRA_CONF (JSON), TASKJOBS_DATABASE_URL.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from celery import Celery, signals
from sqlalchemy.pool import NullPool

import taskjobs
from taskjobs.store import reads
from taskjobs.store.engine import parse_url
from taskjobs.store.tables import jobs


def make_app(
    broker: str | None = None, backend: str | None = None, queue: str | None = None
) -> Celery:
    """The app, from the arguments or else the environment (which is how a worker gets them)."""
    app = Celery("tests.celeryapp", set_as_current=True)
    app.conf.update(
        broker_url=broker or os.environ.get("TJ_BROKER", "memory://"),
        result_backend=backend or os.environ.get("TJ_BACKEND") or None,
        task_default_queue=queue or os.environ.get("TJ_QUEUE", "taskjobs-tests"),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": 60},
        result_expires=600,
        # The canvas tests replace a task with one taskjobs is told to leave out.
        taskjobs_exclude=["celery.*", "tests.celeryapp.unlisted"],
    )
    app.conf.update(json.loads(os.environ.get("TJ_EXTRA_CONF", "{}")))
    taskjobs.install(app)
    return app


app = make_app()


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(bind=True, max_retries=5)
def retry_twice(self: Any, value: str) -> str:
    if self.request.retries < 2:
        raise self.retry(exc=RuntimeError(f"not yet ({self.request.retries})"), countdown=0)
    return value


@app.task
def own_pid(fail: bool = False) -> int:
    """The pid of the pool process that ran it, returned, or in a ``ValueError`` raised."""
    if fail:
        raise ValueError(os.getpid())
    return os.getpid()


@app.task
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _wait_for_file(path: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    pid_file = Path(path + ".pid")
    pid_file.write_text(str(os.getpid()))
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)
    return "released"


@app.task
def wait_for_file(path: str, timeout: float = 60) -> str:
    """Run until the test creates ``path``: a task that is running for as long as a test needs."""
    return _wait_for_file(path, timeout)


@app.task(acks_late=True, reject_on_worker_lost=True)
def wait_for_file_acks_late(path: str, timeout: float = 60) -> str:
    """The same, acknowledged only once done: a worker's death gives the message back."""
    return _wait_for_file(path, timeout)


@app.task(acks_late=True)
def stored_when_done(path: str) -> str:
    """Returns; then ``_write_stored_status`` notes how the database had its job right after."""
    return "done"


@signals.task_postrun.connect
def _write_stored_status(sender: Any = None, task_id: str | None = None, args: Any = None,
                         **_: Any) -> None:  # fmt: skip
    """After ``stored_when_done`` (task_postrun comes after taskjobs recorded the task's end,
    and before the worker acknowledges an ``acks_late`` message), write to the file it names
    the status and history of its job as a connection of its own reads them from the database:
    what is committed at that moment."""
    if getattr(sender, "name", None) != stored_when_done.name or not args or task_id is None:
        return
    engine = sa.create_engine(parse_url(os.environ["TASKJOBS_DATABASE_URL"]), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            status = connection.execute(
                sa.select(jobs.c.status).where(jobs.c.id == task_id)
            ).scalar()
            # In the order users see it: a publish that landed after the end still comes first.
            history = [step.celery_state for step in reads.history(connection, task_id)]
            Path(args[0]).write_text(json.dumps({"status": status, "history": history}))
    finally:
        engine.dispose()


@app.task(bind=True)
def report_progress(self: Any, steps: int) -> int:
    for step in range(steps):
        taskjobs.progress(f"step {step + 1} of {steps}")
    return steps


@app.task(time_limit=1)
def overrun(seconds: float) -> None:
    time.sleep(seconds)


@app.task(soft_time_limit=0.5)
def soft_overrun(seconds: float) -> None:
    time.sleep(seconds)


@app.task
def collect(values: list[int]) -> int:
    return sum(values)


@app.task
def secret_login(user: str, password: str) -> str:
    return f"logged in {user}"


@app.task(taskjobs_store_args=False, taskjobs_store_results=False)
def private(document: str) -> str:
    """A task whose arguments and result taskjobs must not keep."""
    return document.upper()


@app.task
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@app.task(bind=True, autoretry_for=(RuntimeError,), max_retries=5, default_retry_delay=0)
def flaky(self: Any, failures: int) -> int:
    """Fails its first ``failures`` attempts, then returns how many retries it took."""
    if self.request.retries < failures:
        raise RuntimeError(f"attempt {self.request.retries + 1} fails on purpose")
    return int(self.request.retries)


# Canvas: tasks that replace themselves with every kind of signature.
def _replacement(kind: str) -> Any:
    from celery import chain, chord, group

    return {
        "task": lambda: add.si(20, 22),
        "chain": lambda: chain(add.si(1, 2), add.s(3)),
        "group": lambda: group(add.si(i, i) for i in range(3)),
        "chord": lambda: chord([add.si(1, 1), add.si(2, 2)], collect.s()),
        "chain_with_group": lambda: chain(add.si(1, 1), group(add.si(2, 2), add.si(3, 3))),
        "failing_group": lambda: group(add.si(1, 1), fail.si("member failed")),
        "nested": lambda: replaced_by.si("task"),
        "excluded": lambda: unlisted.si(7),
    }[kind]()


@app.task(bind=True)
def replaced_by(self: Any, kind: str) -> Any:
    """Replace this task with a signature of the kind named."""
    return self.replace(_replacement(kind))


@app.task
def unlisted(value: int) -> int:
    """A task the canvas tests leave out of tracking (``taskjobs_exclude``)."""
    return value


@app.task
def returns_async_result(task_id: str) -> Any:
    from celery.result import AsyncResult

    return AsyncResult(task_id, app=app)


@app.task
def on_error(task_id: str) -> str:
    """An errback (``link_error``), old style so that Celery publishes it: says who failed."""
    return f"{task_id} failed"
