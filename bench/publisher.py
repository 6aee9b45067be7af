"""Publish N ``bench.noop`` tasks, and time it.

Run by ``bench/throughput.py`` as a subprocess, with the same ``BENCH_*`` environment the
worker gets, so that each variant's publisher is a fresh process: taskjobs is imported (and
its ``before_task_publish`` receiver connected) only for the variants that install it.

Usage: ``python -m bench.publisher N IDS_FILE [GROUP]``: a loop of N ``apply_async()``, or with
GROUP > 0, ``group`` publishes of GROUP signatures each. Writes the task ids to IDS_FILE, one
per line, and prints one JSON line: ``{"tasks": N, "seconds": ..., "rate": ..., "first_at":
...}`` (``first_at``: the wall-clock time just before the first publish; ``cpu_seconds``: the
process's CPU time, all its threads, while it publishes). ``seconds`` ends
when the last publish returns; the process then exits as a user's would, writing out what
taskjobs still queues (the async publish mode) at exit.
"""

from __future__ import annotations

import json
import sys
import time

from celery import group

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


def publish(tasks: int, group_size: int) -> list[str]:
    """Publish ``tasks`` tasks, one by one or in groups of ``group_size``; their ids."""
    noop = benchapp.noop
    if group_size <= 0:
        return [noop.apply_async().id for _ in range(tasks)]
    ids: list[str] = []
    while len(ids) < tasks:
        size = min(group_size, tasks - len(ids))
        result = group(noop.s() for _ in range(size)).apply_async()
        ids.extend(member.id for member in result.results)
    return ids


def main() -> None:
    tasks = int(sys.argv[1])
    ids_file = sys.argv[2]
    group_size = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    prepare()
    first_at = time.time()
    started, cpu_started = time.perf_counter(), time.process_time()
    ids = publish(tasks, group_size)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    with open(ids_file, "w") as stream:
        stream.write("\n".join(ids) + "\n")
    imported = sys.modules.get("taskjobs")
    print(
        json.dumps(
            {
                "tasks": tasks,
                "seconds": seconds,
                "rate": tasks / seconds,
                "cpu_seconds": cpu_seconds,
                "first_at": first_at,
                "taskjobs_file": getattr(imported, "__file__", None),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
