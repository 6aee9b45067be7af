"""Publish N ``bench.noop`` tasks with no worker running, and time it.

Run by ``bench/throughput.py`` as a subprocess, with the same ``BENCH_*`` environment the
worker gets, so that each variant's publisher is a fresh process: taskjobs is imported (and
its ``before_task_publish`` receiver connected) only for the variants that install it.

Usage: ``python -m bench.publisher N IDS_FILE``. Writes the task ids to IDS_FILE, one per
line, and prints one JSON line: ``{"tasks": N, "seconds": ..., "rate": ...}``.
"""

from __future__ import annotations

import json
import sys
import time

from bench import benchapp


def prepare() -> None:
    """Everything a first publish would do once, done before the clock starts: the broker
    connection, the job store's schema, Celery's result tables."""
    app = benchapp.app
    with app.producer_pool.acquire(block=True) as producer:
        producer.connection.ensure_connection(max_retries=3)
    if benchapp.TASKJOBS_URL:
        from taskjobs.config import current_store

        current_store().upgrade()
    backend = app.backend
    if hasattr(backend, "ResultSession"):  # Celery's database backend: create its tables
        backend.ResultSession().close()


def main() -> None:
    tasks = int(sys.argv[1])
    ids_file = sys.argv[2]
    prepare()
    noop = benchapp.noop
    started = time.perf_counter()
    ids = [noop.apply_async().id for _ in range(tasks)]
    seconds = time.perf_counter() - started
    with open(ids_file, "w") as stream:
        stream.write("\n".join(ids) + "\n")
    imported = sys.modules.get("taskjobs")
    print(
        json.dumps(
            {
                "tasks": tasks,
                "seconds": seconds,
                "rate": tasks / seconds,
                "taskjobs_file": getattr(imported, "__file__", None),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
