"""``taskjobs demo``: a real ``celery worker`` on kombu's filesystem transport (no broker server)
and the configured store, a mixed batch of tasks, their jobs shown as they complete.

This module is also the worker's app (``celery -A taskjobs.celery.demo worker``): the worker
learns its broker folder from ``TASKJOBS_DEMO_DIR``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from celery import Celery

import taskjobs
from taskjobs.celery.launcher import Worker, WorkerStartError, start_worker
from taskjobs.errors import TaskJobsError
from taskjobs.model import FINAL_STATES, utcnow
from taskjobs.store import Store

# The environment variable that tells the worker where the broker's folders are.
DIR_VARIABLE = "TASKJOBS_DEMO_DIR"
# Seconds the whole batch may take before the demo gives up.
BATCH_TIMEOUT = 60
# Seconds the worker may take to start, and to stop after SIGTERM.
WORKER_START_TIMEOUT = 30
WORKER_STOP_TIMEOUT = 15

app = Celery("taskjobs.demo", set_as_current=False)


def configure_app(folder: str) -> None:
    """Point the demo app at a broker made of plain folders, and track its tasks."""
    queue = Path(folder, "queue")
    queue.mkdir(parents=True, exist_ok=True)
    app.conf.update(
        broker_url="filesystem://",
        broker_transport_options={
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "control_folder": str(Path(folder, "control")),
            "polling_interval": 0.05,
        },
        task_ignore_result=True,
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    taskjobs.install(app)


if os.environ.get(DIR_VARIABLE):
    configure_app(os.environ[DIR_VARIABLE])


@app.task(name="demo.resize_image")
def resize_image(name: str, width: int) -> dict[str, Any]:
    time.sleep(0.2)
    return {"image": name, "width": width}


@app.task(name="demo.charge_card", bind=True, max_retries=3)
def charge_card(self: Any, amount: int) -> str:
    if self.request.retries < 2:
        raise self.retry(exc=ConnectionError("payment gateway timed out"), countdown=0.5)
    return f"charged {amount}"


@app.task(name="demo.parse_upload")
def parse_upload(filename: str) -> None:
    raise ValueError(f"{filename}: line 3: expected 4 columns, found 3")


@app.task(name="demo.build_report", bind=True)
def build_report(self: Any, pages: int) -> int:
    for page in range(1, pages + 1):
        time.sleep(0.5)
        taskjobs.progress(f"rendered page {page} of {pages}")
    return pages


def run_demo(store: Store, echo: Callable[[str], None]) -> datetime:
    """Run the demo against ``store``; returns when it started. Raises ``TaskJobsError``."""
    store.upgrade()  # an unreachable or unusable store stops the demo before any worker starts
    started = utcnow()
    with tempfile.TemporaryDirectory(prefix="taskjobs-demo-") as folder:
        configure_app(folder)
        with _start_worker(folder, store):
            echo("Started a Celery worker (prefork, 2 processes) on kombu's filesystem transport.")
            ids = _send_batch()
            echo(f"Sent {len(ids)} tasks; their jobs, as the worker runs them:")
            _follow(store, ids, echo)
    return started


def _send_batch() -> list[str]:
    sent = [
        resize_image.apply_async(
            (f"photo-{i}.jpg", 640), headers={"taskjobs_user": ("alice", "bob")[i % 2]}
        )
        for i in range(12)
    ]
    sent.append(charge_card.apply_async((4200,), headers={"taskjobs_user": "alice"}))
    sent += [parse_upload.apply_async((f"upload-{i}.csv",)) for i in range(3)]
    sent.append(build_report.apply_async((4,), headers={"taskjobs_user": "bob"}))
    return [result.id for result in sent]


def _follow(store: Store, ids: list[str], echo: Callable[[str], None]) -> None:
    """Print the jobs' states whenever they change, until every job has ended."""
    deadline = time.monotonic() + BATCH_TIMEOUT
    shown = ""
    while True:
        states = Counter(job.status if job else "missing" for job in map(store.get, ids))
        line = "  " + "  ".join(
            f"{state} {states[state]}" for state in ("pending", "running", "finished", "error")
        )
        if line != shown:
            echo(line)
            shown = line
        if sum(states[state] for state in FINAL_STATES) == len(ids):
            return
        if time.monotonic() > deadline:
            raise TaskJobsError(f"the demo's jobs did not all end within {BATCH_TIMEOUT}s")
        time.sleep(0.1)


def _start_worker(folder: str, store: Store) -> Worker:
    """The demo's worker, ready; it stops when its ``with`` block ends."""
    worker = start_worker(
        "taskjobs.celery.demo",
        log=Path(folder, "worker.log"),
        concurrency=2,
        hostname="demo@%h",
        without=("mingle", "gossip", "heartbeat"),
        env={
            DIR_VARIABLE: folder,
            "TASKJOBS_DATABASE_URL": store.url.render_as_string(hide_password=False),
        },
        stop_timeout=WORKER_STOP_TIMEOUT,
    )
    try:
        worker.wait_ready(WORKER_START_TIMEOUT)
    except WorkerStartError as exc:
        worker.stop()
        raise WorkerStartError(f"the demo's Celery worker did not start: {exc}") from None
    return worker
