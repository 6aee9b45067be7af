"""The Celery app the throughput benchmark measures, configured only from the environment.

The same module is imported by the publisher (``python -m bench.publisher``) and by every
``celery -A bench.benchapp worker`` the benchmark starts (with the parent of ``bench/``, the
repository root, on ``PYTHONPATH``):

- ``BENCH_BROKER``: broker URL (default ``redis://127.0.0.1:6379/12``);
- ``BENCH_QUEUE``: the queue (and default exchange) of this measurement;
- ``BENCH_BACKEND``: Celery result backend URL, empty for none;
- ``BENCH_CONF``: extra ``app.conf`` settings as JSON (``task_ignore_result``,
  ``task_track_started``, ``result_extended``, ...);
- ``BENCH_TASKJOBS_URL``: when set, ``taskjobs.install(app)`` with this
  ``taskjobs_database_url``; when unset, taskjobs is not even imported, so its signal
  receivers are not connected and cost nothing;
- ``BENCH_READY_FILE``: the worker writes ``time.time()`` there from the ``worker_ready``
  signal, which Celery sends right before it logs ``celery@host ready.``, with the path of
  the taskjobs package it imported (JSON);
- ``BENCH_SQL_TIMES``: a directory: time every SQL statement of every process into it
  (``bench.sqltimes``);
- ``BENCH_TASK_LOG``: ``1`` keeps Celery's two INFO lines per task ("received",
  "succeeded"); by default they are silenced so that log I/O, a cost shared by every
  variant, does not dilute the differences being measured.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from celery import Celery, signals

BROKER = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/12")
QUEUE = os.environ.get("BENCH_QUEUE", "bench")
BACKEND = os.environ.get("BENCH_BACKEND") or None
TASKJOBS_URL = os.environ.get("BENCH_TASKJOBS_URL") or None
READY_FILE = os.environ.get("BENCH_READY_FILE") or None
TASK_LOG = os.environ.get("BENCH_TASK_LOG") == "1"
# Celery's per-task INFO lines come from these two loggers.
PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")

app = Celery("bench.benchapp")
app.conf.update(
    broker_url=BROKER,
    result_backend=BACKEND,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    **json.loads(os.environ.get("BENCH_CONF") or "{}"),
)

if os.environ.get("BENCH_SQL_TIMES"):
    from bench import sqltimes

    sqltimes.install(os.environ["BENCH_SQL_TIMES"])

if TASKJOBS_URL:
    import taskjobs

    app.conf.taskjobs_database_url = TASKJOBS_URL
    taskjobs.install(app)


@app.task(name="bench.noop")
def noop() -> None:
    """The task measured: does nothing, returns None."""


def _quiet_per_task_logs(**_: Any) -> None:
    if not TASK_LOG:
        for name in PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def _record_ready(**_: Any) -> None:
    if READY_FILE:
        now = time.time()
        imported = sys.modules.get("taskjobs")
        tmp = READY_FILE + ".tmp"
        with open(tmp, "w") as stream:
            json.dump({"at": now, "taskjobs_file": getattr(imported, "__file__", None)}, stream)
        os.replace(tmp, READY_FILE)


_quiet_per_task_logs()
signals.after_setup_logger.connect(_quiet_per_task_logs, weak=False)
signals.worker_process_init.connect(_quiet_per_task_logs, weak=False)
signals.worker_ready.connect(_record_ready, weak=False)
